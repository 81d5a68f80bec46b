"""Every picture the README and the user guide show, and who makes it.

    make figures                                  # the guide's pictures from today's code (~20 min, 2-core CPU)
    python bench/figures.py --only latent report  # some of them
    python bench/figures.py --list                # every picture, its maker, the file holding its numbers

The guide's pictures are remade here from small trainings with fixed seeds (in runs/figures/,
git-ignored): the 3-minute demo against the course labs' loop, the demo's grid, its report as
Chromium shows it, its latent studies and the explorer app on it, one epoch of `dcgan-report`.
The numbers their captions quote go to docs/figures.json, with the date and the CPU. The results pages' pictures come
from their studies (an hour or more each); `--list` names the command that made each, and the
file its numbers are in. Nothing saved is overwritten but the pictures and docs/figures.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import device_name
from gankit.runs import Run
from latent_times import latent_commands

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NUMBERS = DOCS / "figures.json"
RUNS = REPO / "runs" / "figures"

# picture (from the repository root) -> (who makes it, the file its caption's numbers are in).
# A maker is one of MAKERS below, or the study command that made a results page's picture.
FIGURES = {
    "docs/demo_vs_labs.png": ("vs_labs", "docs/figures.json"),
    "docs/demo-3min.png": ("demo", "docs/figures.json"),
    "docs/report-screenshot.png": ("report", "docs/figures.json"),
    **{f"docs/latent-{k}.png": ("latent", "docs/figures.json")
       for k in ("sample", "nudge", "sweep", "interpolate", "arithmetic", "rank")},
    "docs/dcgan-report-epoch1.png": ("epoch1", "docs/figures.json"),
    "docs/dcgan-report-milestones.png": ("epoch1", "docs/figures.json"),
    "docs/app.png": ("app", "docs/figures.json"),  # (the explorer on the demo's run)
    "docs/budget30_vs_labs.png": ("python bench/vs_labs.py --presets default best --minutes 30 --precision fp32 "
                                  "--eval-n 10000 --curve-images 300000 --figure docs/budget30_vs_labs.png",
                                  "bench/VS_LABS.md"),
    "docs/cdcgan_vs_default.png": ("python bench/vs_labs.py --presets default cdcgan --minutes 2 --precision fp32 "
                                   "--eval-n 10000 --seeds 0 1 2 --no-labs --figure docs/cdcgan_vs_default.png "
                                   "--out bench/CONDITIONAL.md", "bench/CONDITIONAL.md"),
    **{f"docs/tune_{k}.png": ("python bench/tune_study.py (see bench/TUNE.md)", "bench/TUNE.md")
       for k in ("importances", "balance_trials", "labs_comparison", "history", "balance_sweep")},
    **{f"docs/results/img/{k}.png": ("python bench/small_data.py (see bench/SMALL_DATA.md)", "bench/SMALL_DATA.md")
       for k in ("small-data-curves", "small-data-grids")},
    **{f"docs/results/img/{k}.png": ("python bench/small_data.py --long (see bench/SMALL_DATA_LONG.md)",
                                     "bench/SMALL_DATA_LONG.md")
       for k in ("small-data-long-curves", "small-data-long-grids")},
    **{f"docs/results/img/{k}.png": ("python bench/small_folder.py (see bench/SMALL_FOLDER.md)", "bench/SMALL_FOLDER.md")
       for k in ("emoji-curves", "emoji-grids")},
    "docs/results/img/folder_recipes.png": ("python bench/recipes.py --minutes 10 --seeds 0 1",
                                            "bench/FOLDER_RECIPES.md"),
    "docs/results/img/modern_baseline.png": ("python bench/recipes.py --dataset fashion-mnist --minutes 10 --seeds 0 1 2 "
                                             "--figure docs/results/img/modern_baseline.png", "bench/MODERN_BASELINE.md"),
    "docs/results/img/modern_ablation.png": ("python bench/recipes.py --dataset fashion-mnist --minutes 10 --seeds 0 1 2 "
                                             "--recipes default+rpgan default+rpgan-noR2 default+rpgan-eager "
                                             "--runs runs/ablation --figure docs/results/img/modern_ablation.png",
                                             "bench/MODERN_BASELINE.md"),
    "docs/results/img/folder_recipes_30.png": ("python bench/recipes.py --minutes 30 --seeds 0 "
                                               "--recipes folder64 fastgan64", "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_recipes_30_fp32.png": ("python bench/recipes.py --minutes 30 --seeds 0 --recipes folder64 "
                                                    "fastgan64 --precision fp32 --figure "
                                                    "docs/results/img/folder_recipes_30_fp32.png", "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_recipes_30_s12.png": ("python bench/recipes.py --minutes 30 --seeds 1 2 --recipes folder64 "
                                                   "fastgan64 --pool --figure docs/results/img/folder_recipes_30_s12.png",
                                                   "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder128.png": ("python bench/recipes.py --recipes folder128 fastgan128 --seeds 0 --runs "
                                       "runs/recipes-folder128 --figure docs/results/img/folder128.png",
                                       "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder32.png": ("python bench/recipes.py --recipes folder32 fastgan32 --seeds 0 1 --evaluator "
                                      "emoji32 --runs runs/recipes-folder32 --figure docs/results/img/folder32.png",
                                      "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_smileys.png": ("python bench/recipes.py --recipes folder64 fastgan64 --seeds 0 --data-root "
                                            "data/emoji/smileys-emotion --subset 100 --n 84 --score kid --runs "
                                            "runs/recipes-smileys --figure docs/results/img/folder_smileys.png",
                                            "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_all.png": ("python bench/recipes.py --recipes folder64 fastgan64 --seeds 0 --subset 3500 "
                                        "--runs runs/recipes-emoji3500 --figure docs/results/img/folder_all.png",
                                        "bench/FOLDER_RECIPES.md"),
    "docs/results/img/modern_resnet_zero.png": ("python bench/recipes.py --dataset fashion-mnist --minutes 10 --recipes "
                                                "default resnet+rpgan --figure docs/results/img/modern_resnet_zero.png",
                                                "bench/MODERN_BASELINE.md"),
    "docs/results/img/folder128_seeds12.png": ("python bench/recipes.py --recipes folder128 fastgan128 --seeds 1 2 --runs "
                                              "runs/recipes-folder128 --figure docs/results/img/folder128_seeds12.png",
                                              "bench/FOLDER_RECIPES.md"),
    "docs/results/img/modern_resnet16_dlr.png": ("python bench/recipes.py --dataset fashion-mnist --minutes 10 --recipes "
                                                "resnet16+rpgan resnet16+rpgan-dlr --seeds 0 --runs runs/resnet16-dlr "
                                                "--figure docs/results/img/modern_resnet16_dlr.png",
                                                "bench/MODERN_BASELINE.md"),
    "docs/results/img/modern_resnet30.png": ("python bench/recipes.py --dataset fashion-mnist --recipes default "
                                            "resnet+rpgan --minutes 30 --seeds 0 --runs runs/modern30 --figure "
                                            "docs/results/img/modern_resnet30.png", "bench/MODERN_BASELINE.md"),
    "docs/results/img/modern_resnet_gamma.png": ("python bench/recipes.py --dataset fashion-mnist --recipes "
                                                "resnet+rpgan resnet+rpgan-g1 --minutes 10 --seeds 0 --runs "
                                                "runs/resnet-gamma --figure docs/results/img/modern_resnet_gamma.png",
                                                "bench/MODERN_BASELINE.md"),
    "docs/results/img/modern_resnet_gamma10.png": ("python bench/recipes.py --dataset fashion-mnist --recipes "
                                                  "resnet+rpgan-g1 resnet+rpgan-g10 --minutes 10 --seeds 0 --runs "
                                                  "runs/resnet-gamma --figure docs/results/img/modern_resnet_gamma10.png",
                                                  "bench/MODERN_BASELINE.md"),
    "docs/results/img/modern_resnet16.png": ("python bench/recipes.py --dataset fashion-mnist --minutes 10 --recipes "
                                            "default resnet16+rpgan --runs runs/resnet16 --figure "
                                            "docs/results/img/modern_resnet16.png",
                                            "bench/MODERN_BASELINE.md"),
    "docs/results/img/folder_nobf16.png": ("python bench/recipes.py --recipes folder64 fastgan64 --seeds 0 --figure "
                                          "docs/results/img/folder_nobf16.png",
                                          "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_resnet.png": ("python bench/recipes.py --recipes folder64 resnet64+rpgan --minutes 30 "
                                           "--seeds 0 --figure docs/results/img/folder_resnet.png", "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_resnet_zero.png": ("python bench/recipes.py --recipes folder64 resnet64+rpgan --seeds 0 "
                                                "--figure docs/results/img/folder_resnet_zero.png",
                                                "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_rpgan.png": ("python bench/recipes.py --recipes folder64 folder64+rpgan --minutes 30 "
                                          "--seeds 0 --figure docs/results/img/folder_rpgan.png", "bench/FOLDER_RECIPES.md"),
    "docs/results/img/folder_rpgan_s12.png": ("python bench/recipes.py --recipes folder64 folder64+rpgan --minutes 30 "
                                              "--seeds 1 2 --pool --figure docs/results/img/folder_rpgan_s12.png",
                                              "bench/FOLDER_RECIPES.md"),
}


def gankit(*args: str, cwd: Path = REPO, timeout: float = 1800) -> str:
    """Run the installed CLI as a user types it; its output, or exit naming the command."""
    t0 = time.perf_counter()
    script = Path(sys.executable).with_name("gankit")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gankit"]
    proc = subprocess.run(cmd + list(map(str, args)), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode:
        raise SystemExit(f"gankit {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    print(f"  gankit {' '.join(map(str, args))}: {time.perf_counter() - t0:.0f} s", flush=True)
    return proc.stdout + proc.stderr


def newest_run(parent: Path, preset: str) -> Path:
    return sorted(p for p in parent.iterdir() if p.is_dir() and f"-{preset}-" in p.name)[-1]


def copy(src: Path, name: str) -> None:
    shutil.copyfile(src, REPO / name)
    print(f"  wrote {name}", flush=True)


def demo_run() -> Path:
    """`make demo`'s training as it types it (`gankit train --preset default --minutes 3`), run in
    runs/figures/demo/ and kept for the makers after it."""
    parent = RUNS / "demo" / "runs"
    if parent.exists() and any(parent.glob("*-default-*/generator.safetensors")):
        return newest_run(parent, "default")
    parent.parent.mkdir(parents=True, exist_ok=True)
    gankit("train", "--preset", "default", "--minutes", "3", cwd=parent.parent)
    return newest_run(parent, "default")


def chromium(p):
    """Debian's Chromium (`make browser`) under Playwright, as the tests launch it."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    return p.chromium.launch(executable_path=path, args=["--no-sandbox", "--disable-gpu"])


def make_vs_labs(numbers: dict) -> None:
    out = RUNS / "vs_labs.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(REPO / "bench" / "vs_labs.py"), "--presets", "default", "--minutes", "3",
           "--precision", "auto", "--seeds", "0", "--figure", str(DOCS / "demo_vs_labs.png"), "--json", str(out)]
    subprocess.run(cmd, check=True, cwd=REPO)
    record_vs_labs(numbers, json.loads(out.read_text()))


def record_vs_labs(numbers: dict, found: dict) -> None:
    """What the README's caption quotes of vs_labs.py's runs: each one's steps and FID."""
    tag = found["tag"]
    numbers["vs_labs"] = {"minutes": 3, "tag": tag, **{
        ("default" if "default" in who else "labs"): {"steps": r[0]["steps"], f"fid_{tag}": round(r[0][f"fid_{tag}"], 2)}
        for who, r in found["runs"].items()}}


def make_demo(numbers: dict) -> None:
    run = demo_run()
    grid = sorted((run / "images").glob("step_*.png"))[-1]
    copy(grid, "docs/demo-3min.png")
    stats = json.loads((run / "generator.json").read_text())
    numbers["demo"] = {"run": run.name, "grid": f"images/{grid.name}", "steps": stats["step"]}


def make_report(numbers: dict) -> None:
    from playwright.sync_api import sync_playwright
    run = demo_run()
    if not (run / "metrics.json").exists():
        gankit("eval", run, "--n", "10000")
    written = Path(gankit("report", run).split("report: ")[1].split()[0])  # (report.html, or -2 ... if it exists)
    metrics = json.loads((run / "metrics.json").read_text())["fmnist10k"]
    with sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page(viewport={"width": 1000, "height": 1400})
        page.goto((REPO / written).as_uri())  # (the CLI ran in REPO)
        page.wait_for_load_state("load")
        page.screenshot(path=str(DOCS / "report-screenshot.png"))
        browser.close()
    print("  wrote docs/report-screenshot.png", flush=True)
    numbers["report"] = {"run": run.name, "fid_fmnist10k": round(metrics["fid_fmnist10k"], 2)}


def make_latent(numbers: dict) -> None:
    run = demo_run()
    seconds = {}
    for cmd in latent_commands(str(run)):
        t0 = time.perf_counter()
        gankit(*cmd)
        seconds[cmd[1] if cmd[0] == "explore" else cmd[0]] = round(time.perf_counter() - t0, 1)
    newest = lambda command: sorted((run / "latent").glob(f"{command}-*"))[-1]  # noqa: E731
    for name, command, file in (("sample", "sample", "samples.png"), ("nudge", "nudge", "combined_delta6.png"),
                                ("sweep", "sweep", "base42.png"), ("interpolate", "interpolate", "strip.png"),
                                ("arithmetic", "arithmetic", "arithmetic.png"), ("rank", "rank", "rank.png")):
        copy(newest(command) / file, f"docs/latent-{name}.png")
    from PIL import Image  # the sample grid at 3x its size, as docs/latent.md says
    small = Image.open(DOCS / "latent-sample.png")
    small.resize((small.width * 3, small.height * 3), Image.NEAREST).save(DOCS / "latent-sample.png")
    rows = json.loads((newest("rank") / "rank.json").read_text())["measurements"]
    pick = lambda r: {"dim": r["dim"], "change": round(r["mean_abs_change"], 3),  # noqa: E731
                      "flips": round(r.get("class_flip_rate", 0.0), 2)}
    numbers["latent"] = {"run": run.name, "seconds": seconds, "rank_top": [pick(r) for r in rows[:3]],
                         "rank_bottom": [pick(r) for r in rows[-3:]]}


def make_epoch1(numbers: dict) -> None:
    parent = RUNS / "epoch1"
    shutil.rmtree(parent, ignore_errors=True)
    parent.mkdir(parents=True)
    gankit("train", "--preset", "dcgan-report", "--epochs", "1", cwd=parent)
    run = newest_run(parent / "runs", "dcgan-report")
    copy(sorted((run / "images").glob("epoch_*.png"))[-1], "docs/dcgan-report-epoch1.png")
    copy(run / "milestones.png", "docs/dcgan-report-milestones.png")
    numbers["epoch1"] = {"steps": json.loads((run / "generator.json").read_text())["step"],
                         "seconds": round(Run(run).training_seconds()[0])}


def make_app(numbers: dict) -> None:
    """The explorer as `gankit app RUN` first shows the demo's run (Chromium, as a user opens it)."""
    import re

    from playwright.sync_api import sync_playwright
    run = demo_run()
    script = Path(sys.executable).with_name("gankit")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gankit"]
    proc = subprocess.Popen(cmd + ["app", str(run.relative_to(RUNS / "demo"))], cwd=RUNS / "demo",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, t0 = None, time.time()
        while url is None and time.time() - t0 < 180 and (line := proc.stdout.readline()):
            url = m.group(1) if (m := re.search(r"open (http://\S+)", line)) else None
        if url is None:
            raise SystemExit(f"gankit app did not serve (exit {proc.poll()})")
        with sync_playwright() as p:
            browser = chromium(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector("#main img", timeout=60_000)
            page.wait_for_timeout(2000)  # the lab sheet and the strip below draw after the main image
            page.screenshot(path=str(DOCS / "app.png"), full_page=True)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    print("  wrote docs/app.png", flush=True)
    numbers["app"] = {"run": run.name}


MAKERS = {"demo": make_demo, "report": make_report, "latent": make_latent, "epoch1": make_epoch1,
          "vs_labs": make_vs_labs, "app": make_app}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(MAKERS), help="make only these (default: all of the guide's)")
    ap.add_argument("--list", action="store_true", help="list every picture, its maker and its numbers' file")
    args = ap.parse_args()
    if args.list:
        for picture, (maker, numbers) in FIGURES.items():
            print(f"{picture}\n    made by: {maker if ' ' in maker else f'bench/figures.py --only {maker}'}"
                  f"\n    numbers in: {numbers}")
        return
    numbers = json.loads(NUMBERS.read_text()) if NUMBERS.exists() else {}
    for name in args.only or list(MAKERS):
        print(f"{name}:", flush=True)
        MAKERS[name](numbers)
        numbers[name]["date"], numbers[name]["device"] = time.strftime("%Y-%m-%d"), device_name("cpu")
        NUMBERS.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    print(f"wrote {NUMBERS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
