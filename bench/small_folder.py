"""The small-data study on a real RGB folder: the emoji (`make emoji`, 3,781 images at 64x64 in 9
categories) x augmentation, scored after the same budget.

Every cell trains the `faces64` preset at half width (`--g-width 32 --d-width 32`, no x-flips:
emoji hold text and flags), fp32, for the same number of steps on the same seeded --subset of the
folder, with --augment none / diffaug / ada, from 3 seeds. Then it scores --n samples of the final
generator with the emoji evaluator (`gankit evaluator train --dataset folder --data-root data/emoji`,
a CNN trained on the 9 categories; Inception weights are not available offline) against --n images
of the whole folder (fid_emoji..., precision, recall, coverage), and counts near-copies of the
cell's training images against the images --subset left out (memorised_emoji...). `none` is the
reference, trained in the same call.

    python bench/small_folder.py --figures docs/results/img            # the whole study (~75 min on 2 cores)
    python bench/small_folder.py --seeds 0 --steps 20 --runs /tmp/sf --out /tmp/sf.md   # a quick look

Cells whose run folder already holds a finished run of the same settings under --runs are
scored again, not retrained (--train-only trains them and stops). Appends to --out
(bench/SMALL_FOLDER.md) and writes every number beside it (.json).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path

import torch

from common import append_result, device_name, mean_std, plot_r_t_and_p

from gankit.config import preset_config
from gankit.data import training_images
from gankit.metrics import compute_metrics, real_floor
from gankit.runs import read_stats

NAMES = ["fid", "precision", "recall", "coverage", "classes", "memorisation"]
SETTINGS = dict(g_width=32, d_width=32, hflip=False, precision="fp32", eval_every=0, log_every=50)


def config(job: dict):
    return preset_config("faces64", data_root=job["data_root"], subset=job["size"], augment=job["augment"],
                         seed=job["seed"], steps=job["steps"], out_dir=job["out"], **SETTINGS)


def finished(job: dict) -> Path | None:
    """The run folder of a cell trained before with the same settings, if it finished."""
    for run in sorted(Path(job["out"]).glob(f"*-{job['name']}")):
        stats = read_stats(run) if (run / "stats.jsonl").exists() else []
        if (run / "generator.safetensors").exists() and stats and stats[-1]["step"] == job["steps"]:
            saved = json.loads((run / "config.json").read_text())["config"]
            if all(saved[k] == v for k, v in config(job).to_dict().items() if k not in ("out_dir", "data_root")):
                return run
    return None


def cell(job: dict) -> dict:
    """Train one cell (a worker process of one thread), unless it was trained before."""
    torch.set_num_threads(1)
    from gankit.training import train
    run, train_s = finished(job), None
    if run is None:
        t0 = time.perf_counter()
        run = train(config(job), progress=False, run_name=job["name"])
        train_s = round(time.perf_counter() - t0, 1)
    rows = read_stats(run)
    return {**job, "run": str(run), "train_s": train_s, "r_t": [r["r_t"] for r in rows],
            "ada_p": [r.get("ada_p") for r in rows], "steps_logged": [r["step"] for r in rows],
            "gap": [r.get("heldout_gap") for r in rows]}


def table(cells: list[dict], augments, tag: str, floor: dict) -> str:
    metrics = ("precision", "recall", "coverage", "class_entropy")
    head = (f"| augment | fid_{tag} (change vs none) | precision | recall | coverage | class entropy | memorised_{tag} "
            f"| final p | held-out gap at the end |\n|---|---|---|---|---|---|---|---|---|\n")
    lines, base = [], None
    for aug in augments:
        cs = [c for c in cells if c["augment"] == aug]
        if not cs:
            continue
        fid = [c[f"fid_{tag}"] for c in cs]
        base = statistics.mean(fid) if aug == "none" else base
        cut = f" ({100 * (statistics.mean(fid) / base - 1):+.0f} % vs none)" if base and aug != "none" else ""
        p = [c["ada_p"][-1] for c in cs if c["ada_p"][-1] is not None]
        lines.append(f"| {aug} | {mean_std(fid)}{cut} | "
                     + " | ".join(mean_std([c[f"{m}_{tag}"] for c in cs]) for m in (*metrics, "memorised"))
                     + f" | {mean_std(p) if p else '-'} | {mean_std([c['gap'][-1] for c in cs])} |")
    lines.append(f"| real images (the floor: {floor['n']:,} vs the next {floor['n']:,}) | {floor[f'fid_{tag}']:.2f} | "
                 + " | ".join(f"{floor[f'{m}_{tag}']:.2f}" for m in metrics) + " | - | - | - |")
    return head + "\n".join(lines) + "\n"


def figures(cells: list[dict], augments, folder: Path) -> None:
    """emoji-grids.png: each augmentation's last fixed-z grid (seed 0) side by side; emoji-curves.png:
    r_t, p and D's held-out gap over training."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    from gankit.runs import last_grid
    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(augments), figsize=(3.4 * len(augments), 3.6), squeeze=False)
    for ax, aug in zip(axes[0], augments):
        ax.axis("off")
        c = next((c for c in cells if c["augment"] == aug and c["seed"] == 0), None)
        if c and (grid := last_grid(Path(c["run"]))):
            img = Image.open(grid)
            ax.imshow(img.crop((0, 0, img.width, img.height // 2)))  # the first half of the rows
            fid = c[f"fid_{c['tag']}"]
            ax.set_title(f"{c['size']:,} emoji, {aug}\nFID {fid:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "emoji-grids.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    plot_r_t_and_p(axes[0], cells, augments, "steps_logged")
    for aug, colour in zip(augments, ("C0", "C1", "C2")):
        for c in (c for c in cells if c["augment"] == aug and c["seed"] == 0):
            axes[1].plot(c["steps_logged"], c["gap"], color=colour, label=aug)
    axes[0].set_title("r_t and p (seed 0)")
    axes[1].set_title("D(train) - D(held-out), sigmoid (seed 0)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "emoji-curves.png", dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default="data/emoji", help="the folder (default: data/emoji, `make emoji`)")
    ap.add_argument("--evaluator", default="emoji", help="the evaluator's name or .safetensors path (default: emoji)")
    ap.add_argument("--size", type=int, default=1000, help="--subset of every cell (default: 1000)")
    ap.add_argument("--augments", nargs="+", default=["none", "diffaug", "ada"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1000, help="the budget of every cell (D steps at batch 64)")
    ap.add_argument("--workers", type=int, default=2, help="cells trained at once, one thread each")
    ap.add_argument("--n", type=int, default=1500, help="samples (and real images) each cell is scored on")
    ap.add_argument("--runs", default="/tmp/gankit-small-folder", help="where the cells' run folders go")
    ap.add_argument("--train-only", action="store_true", help="train the cells and stop (no evaluator needed)")
    ap.add_argument("--figures", default=None, help="folder for the PNGs (docs/results/img)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "SMALL_FOLDER.md"),
                    help="the Markdown file to append to (its .json beside it gets every number)")
    args = ap.parse_args()

    jobs = [{"size": args.size, "augment": aug, "seed": seed, "steps": args.steps, "out": args.runs,
             "data_root": args.data_root, "name": f"emoji{args.size}-{aug}-s{seed}"}
            for aug in args.augments for seed in args.seeds]
    t0 = time.perf_counter()
    training_images(config(jobs[0]), progress=False)  # decoded and cached here: a pool's worker cannot fork decoders
    with mp.get_context("spawn").Pool(args.workers) as pool:
        cells = []
        for c in pool.imap_unordered(cell, jobs):
            cells.append(c)
            print(f"{c['name']}: " + (f"trained in {c['train_s']:.0f} s" if c["train_s"] else "trained before"),
                  flush=True)
    if args.train_only:
        return
    for c in cells:  # scored one after another in this process: the evaluator's features are cached
        scores = compute_metrics(c["run"], "folder", NAMES, args.n, seed=0, data_root=args.data_root,
                                 evaluator=args.evaluator)
        c["tag"] = next(k[len("fid_"):] for k in scores if k.startswith("fid_"))
        c.update(scores)
        print(f"{c['name']}: fid_{c['tag']} {scores['fid_' + c['tag']]:.2f}, "
              f"memorised {scores.get('memorised_' + c['tag'], float('nan')):.3f}", flush=True)
    tag = cells[0]["tag"]
    floor = {**real_floor("folder", NAMES, args.n, data_root=args.data_root, evaluator=args.evaluator), "n": args.n}
    wall = time.perf_counter() - t0
    cells.sort(key=lambda c: (args.augments.index(c["augment"]), c["seed"]))
    trained = [c["train_s"] for c in cells if c["train_s"]]
    result = {"device": device_name("cpu"), "torch": torch.__version__, "steps": args.steps, "size": args.size,
              "wall_s": round(wall), "date": time.strftime("%Y-%m-%d"), "real_floor": floor, "cells": cells}
    text = (f"\n## {result['date']}: {args.size:,} emoji, {args.steps} steps per cell (batch 64), seeds {args.seeds}, "
            f"`faces64` at half width, fp32\n\n"
            f"Measured by `python bench/small_folder.py --steps {args.steps} --size {args.size}` on {result['device']}, "
            f"torch {torch.__version__}; {args.workers} cells at a time, one thread each"
            + (f", {statistics.mean(trained) / 60:.1f} min of training per cell" if trained else
               ", cells trained by an earlier call") + f"; {wall / 60:.0f} min in this call. Mean ± std over the "
            f"seeds; every score on {args.n:,} samples against {args.n:,} images of the whole folder, memorised "
            f"against the {args.size:,} training images with the images left out as the held-out set.\n\n"
            + table(cells, args.augments, tag, floor))
    print(text)
    if args.figures:
        figures(cells, list(args.augments), Path(args.figures))
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    append_result(out, "Small datasets: the emoji folder x augmentation",
                  "Written by bench/small_folder.py; the results page is docs/results/small-data.md.", text)
    fid = {a: statistics.mean(c[f"fid_{tag}"] for c in cells if c["augment"] == a)
           for a in args.augments if any(c["augment"] == a for c in cells)}
    best = min((a for a in fid if a != "none"), key=fid.get, default=None)
    print(f"wrote {out}: the better augmentation ({best}) changes fid_{tag} by "
          f"{100 * (fid[best] / fid['none'] - 1):+.0f} % against none" if best and "none" in fid else f"wrote {out}")


if __name__ == "__main__":
    main()
