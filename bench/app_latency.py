"""How fast `gankit app` answers a slider move, on this machine.

    python bench/app_latency.py [--presets default dcgan-report cdcgan] [--moves 40] [--runs RUN ...]

For each run (by default: the presets trained for a few steps here on Fashion-MNIST; the weights
do not change the time), it measures
  - server side: App.render for random slider moves, of the main part (the main image alone, the
    8 vectors as one batch, a conditional run's class row) and of every picture (plus lab 4's 15 x 8
    nudge sheet, the 9-step slerp strip and the image at the position), PNG data URLs included;
    p50 and p95;
  - end to end in Chromium (Playwright): from setting the slider's value on the page to the new
    main image shown (the first of the page's three requests to the slider's fast path, see
    gankit/app.py: HOT_JS), and to the last picture shown (the image at the slerp position, in the
    third, after lab 4's sheet); p50 and p95;
  - the reference, the workflow the app replaces: one `gankit sample RUN --z z.npy` command
    (a fresh process: start-up, load, one image, PNG), the median of 3.
The last line is the ratio of the reference to the end-to-end p50.
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import append_result, device_name


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def train_runs(presets: list[str], folder: Path, steps: int) -> list[Path]:
    from gankit.config import preset_config
    from gankit.training import train
    return [train(preset_config(p, out_dir=str(folder / p), steps=steps, log_every=steps, eval_every=0)) for p in presets]


def server_side(run: Path, moves: int) -> tuple[list[float], list[float]]:
    """Seconds of App.render for the main part (main image, the 8, the class row) and for every
    picture of the page (plus lab 4's sheet, the strip and the image at t): the generator passes
    and the PNG data URLs."""
    from gankit.app import App
    from gankit.app.explorer import PARTS
    app = App([str(run)])
    label, e = next(iter(app.explorers.items()))
    dims, _ = e.ranked_dims()
    base = e.seed_vectors(0)
    rng = random.Random(0)
    cls = 0 if e.class_names else None
    times = {("main",): [], PARTS: []}
    for parts, ts in times.items():
        app.render(parts, label, e.weights[0], base, 0, cls, dims[0], 1, 0.5, *[None] * len(dims))  # warm-up
        for _ in range(moves):
            values = [None] * len(dims)
            values[rng.randrange(len(dims))] = round(rng.uniform(-4, 4), 2)
            t0 = time.perf_counter()
            app.render(parts, label, e.weights[0], base, 0, cls, dims[0], 1, 0.5, *values)
            ts.append(time.perf_counter() - t0)
    return times[("main",)], times[PARTS]


def end_to_end(run: Path, moves: int, chromium: str) -> tuple[list[float], list[float]]:
    """Seconds from setting a slider's value in Chromium to the new main image shown, and to the
    last picture (the image at the slerp position, after lab 4's sheet and the strip) shown."""
    from playwright.sync_api import sync_playwright
    from gankit.app import launch
    demo, url = launch([str(run)], block=False)
    first, last = [], []
    changed = ("([sel, old]) => { const i = document.querySelector(sel + ' img'); "
               "return i && i.src !== old && i.complete; }")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#at-t img", timeout=120_000)
            rng = random.Random(1)
            for i in range(moves + 2):
                slider = page.locator(f"#slider{rng.randrange(4)} input[type=range]")
                old = {sel: page.locator(f"{sel} img").first.get_attribute("src") for sel in ("#main", "#at-t")}
                current = float(slider.input_value())
                value = current
                while abs(float(value) - current) < 0.5:  # a real move: the pictures must change
                    value = f"{rng.uniform(-4, 4):.2f}"
                t0 = time.perf_counter()
                slider.fill(value)
                page.wait_for_function(changed, arg=["#main", old["#main"]], timeout=30_000)
                t1 = time.perf_counter()
                page.wait_for_function(changed, arg=["#at-t", old["#at-t"]], timeout=30_000)
                if i >= 2:  # the first two moves warm up the page
                    first.append(t1 - t0)
                    last.append(time.perf_counter() - t0)
            browser.close()
    finally:
        demo.close()
    return first, last


def cli_reference(run: Path, folder: Path) -> list[float]:
    from gankit.app.explorer import Explorer
    e = Explorer(run)
    np.save(folder / "z.npy", e.seed_vectors(0)[:1])
    extra = ["--class", "0"] if e.class_names else []
    times = []
    for i in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gankit", "sample", str(run), "--z", str(folder / "z.npy"),
                        "--out", str(folder / f"cli{run.name}{i}"), *extra], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["default", "dcgan-report", "cdcgan"])
    ap.add_argument("--runs", nargs="*", default=None, help="time these run folders instead of training presets")
    ap.add_argument("--steps", type=int, default=20, help="training steps of each preset's run (default: 20)")
    ap.add_argument("--moves", type=int, default=40, help="slider moves timed per run (default: 40)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("APP_LATENCY.md")))
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    tmp = Path(tempfile.mkdtemp(prefix="app-latency-"))
    runs = [Path(r) for r in args.runs] if args.runs else train_runs(args.presets, tmp, args.steps)
    names = args.runs or args.presets
    import gradio
    import torch
    dev = (f"{device_name('cpu')}, torch {torch.__version__}, Gradio {gradio.__version__}"
           + (f", {subprocess.run([chromium, '--version'], capture_output=True, text=True).stdout.strip()}"
              if chromium else ""))
    lines = [f"\n## {time.strftime('%Y-%m-%d')}, {dev}\n\n",
             "| run | server: main image / every picture, p50 (p95) ms | Chromium: main image / every picture, "
             "p50 (p95) ms | `gankit sample` command (ms) |\n", "|---|---|---|---|\n"]
    last = None
    for name, run in zip(names, runs):
        s_main, s_all = server_side(run, args.moves)
        e_main, e_all = end_to_end(run, args.moves, chromium) if chromium else ([], [])
        cli = statistics.median(cli_reference(run, tmp)) * 1000
        both = lambda a, b: f"{pct(a, 50):.0f} ({pct(a, 95):.0f}) / {pct(b, 50):.0f} ({pct(b, 95):.0f})"  # noqa: E731
        row = f"| {name} | {both(s_main, s_all)} | {both(e_main, e_all) if e_main else 'no chromium'} | {cli:.0f} |"
        print(row, flush=True)
        lines.append(row + "\n")
        last = (name, pct(e_main, 50) if e_main else pct(s_main, 50), cli, bool(e_main))
    text = "".join(lines) + (f"\n{args.moves} random slider moves per run (one of the first 4 sliders to a value in "
                             f"[-4, 4]); Chromium {'(Playwright) on the same machine' if chromium else 'not found'}; "
                             f"the command is the median of 3 fresh processes.\n")
    append_result(args.out, "gankit app: time per slider move",
                  "Written by `python bench/app_latency.py`. Server: App.render (the generator passes and the "
                  "PNG data URLs) of the main image with the 8 (and a conditional run's class row), and of every "
                  "picture of the page; Chromium: from setting the slider's value to the new main image shown, "
                  "and to the last picture (the image at the slerp position) shown; reference: the command a student runs instead, "
                  "`gankit sample RUN --z z.npy`.", text)
    shutil.rmtree(tmp, ignore_errors=True)
    name, p50, ref, browser = last
    print(f"{name}: {'Chromium' if browser else 'server'} p50 {p50:.0f} ms from a slider move to the new main "
          f"image vs the `gankit sample` command {ref:.0f} ms: {ref / p50:.1f}x faster")


if __name__ == "__main__":
    main()
