"""The small-data study: Fashion-MNIST subsets x augmentation, scored after the same budget.

Every cell trains the `default` preset (fp32) for the same number of steps on a stratified subset
of the training split (--subset), with --augment none / diffaug / ada, from 3 seeds; then scores
10,000 samples of the final generator with gankit's own evaluator against the full test split
(fid_fmnist10k, precision, recall, coverage) and counts near-copies of the cell's training images
(memorised_fmnist10k). `none` is the reference, trained in the same call. Then the leak check: ADA's
p held at its ceiling (P_MAX) for a whole run on 1,000 images, and whether the samples came out
rotated or flipped (the mean sample against the 8 flips and quarter turns of the mean real image).

    python bench/small_data.py --figures docs/results/img     # the whole study (~2 h on 2 cores)
    python bench/small_data.py --sizes 1000 --seeds 0 --steps 200 --runs /tmp/sd --out /tmp/sd.md   # a quick look

Cells whose run folder already holds a finished run of the same settings under --runs are scored
again, not retrained, and resumed to --steps if they trained fewer. Appends to --out
(bench/SMALL_DATA.md) and writes every number beside it (.json), and with --figures draws the
grids side by side and the r_t / p curves there.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from common import append_result, cell_pool, device_name, how_trained, mean_std, plot_r_t_and_p, train_or_reuse

from gankit.config import preset_config
from gankit.data import load_split, to_float
from gankit.metrics import compute_metrics, protocol
from gankit.metrics.reference import feature_network, reference_features, training_features
from gankit.nets.ada import P_MAX
from gankit.runs import read_stats
from gankit.sample import generate, z_from_seed
from gankit.export import load_generator

NAMES = ["fid", "precision", "recall", "coverage", "memorisation"]
SIZES = [1000, 5000, 60000]
TAG = "fmnist10k"  # the protocol of --n samples (set in main)


def set_tag(tag: str) -> None:
    global TAG
    TAG = tag


def cell(job: dict) -> dict:
    """Train one cell, or finish one an earlier call trained (train_or_reuse), and score it (a
    worker process of one thread)."""
    torch.set_num_threads(1)
    kw = dict(subset=job["size"] if job["size"] < 60000 else 0, augment=job["augment"], seed=job["seed"],
              steps=job["steps"], precision="fp32", eval_every=0, out_dir=job["out"], log_every=50, **job.get("extra", {}))
    run, train_s, before = train_or_reuse(preset_config("default", **kw), job["name"], job.get("p_max"))
    scores = compute_metrics(run, "fashion-mnist", NAMES, job["n"], seed=0)
    rows = read_stats(run)
    return {**{k: v for k, v in job.items() if k != "extra"}, "run": str(run), "train_s": train_s,
            "steps_before": before, "img_per_s": round((job["steps"] - before) * 64 / train_s, 1) if train_s else None,
            **{k: v for k, v in scores.items()},
            "r_t": [r["r_t"] for r in rows], "ada_p": [r.get("ada_p") for r in rows],
            "epochs": [r["epoch"] for r in rows], "gap": [r.get("heldout_gap") for r in rows]}


SYMMETRIES = [(flip, k) for flip in (False, True) for k in range(4)]  # the 8 flips and quarter turns


def orientations(x: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(N,) index into SYMMETRIES of the flip/turn of a class-mean real image each image matches best
    (Pearson correlation over pixels): 0 for upright images."""
    x = x.flatten(1)
    x = (x - x.mean(1, keepdim=True)) / x.std(1, keepdim=True)
    best = []
    for flip, k in SYMMETRIES:
        m = torch.rot90(means.flip(-1) if flip else means, k, dims=(-2, -1)).flatten(1)
        m = (m - m.mean(1, keepdim=True)) / m.std(1, keepdim=True)
        best.append((x @ m.T / x.shape[1]).amax(1))  # the best class under this symmetry
    return torch.stack(best, 1).argmax(1)


def leak(run: str, n: int = 10000) -> dict:
    """The share of 10,000 samples that match a flipped or turned class-mean image better than an
    upright one, beside the same share of 10,000 real test images (the baseline: some upright
    images, symmetric ones, match a flip as well): a leaking pipeline makes G turn and flip."""
    x_train, y_train = load_split("fashion-mnist", "train")
    means = torch.stack([to_float(x_train[y_train == c]).mean(0) for c in range(10)])
    G = load_generator(run)
    samples = generate(G, z_from_seed(0, n, G.z_dim))
    real = to_float(load_split("fashion-mnist", "test")[0][:n])
    share = lambda x: float((orientations(x, means) != 0).double().mean())
    return {"samples_not_upright": share(samples), "real_not_upright": share(real)}


def table(cells: list[dict], sizes, augments) -> str:
    head = (f"| images | augment | fid_{TAG} (change vs none) | precision | recall | coverage | memorised_{TAG} | final p "
            f"| held-out gap at the end | train img/s |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for size in sizes:
        base = None
        for aug in augments:
            cs = [c for c in cells if c["size"] == size and c["augment"] == aug]
            if not cs:
                continue
            fid = [c[f"fid_{TAG}"] for c in cs]
            base = statistics.mean(fid) if aug == "none" else base
            cut = f" ({100 * (statistics.mean(fid) / base - 1):+.0f} % vs none)" if base and aug != "none" else ""
            p = [c["ada_p"][-1] for c in cs if c["ada_p"][-1] is not None]
            lines.append(f"| {size:,} | {aug} | {mean_std(fid)}{cut} | "
                         + " | ".join(mean_std([c[f"{m}_{TAG}"] for c in cs]) for m in ("precision", "recall", "coverage",
                                                                                          "memorised"))
                         + f" | {mean_std(p) if p else '-'} | {mean_std([c['gap'][-1] for c in cs])} | {_speed(cs)} |")
    return head + "\n".join(lines) + "\n"


def _speed(cs: list[dict]) -> str:
    """The mean img/s of the cells that trained in this call ('-' if none did)."""
    speeds = [c["img_per_s"] for c in cs if c["img_per_s"]]
    return f"{statistics.mean(speeds):.0f}" if speeds else "-"


def figures(cells: list[dict], sizes, augments, folder: Path, name: str) -> None:
    """<name>-grids.png: each cell's last fixed-z grid (seed 0) side by side; <name>-curves.png: r_t
    and p, and D's held-out gap, through training."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image
    from gankit.runs import last_grid
    folder.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(len(sizes), len(augments), figsize=(3 * len(augments), 3.1 * len(sizes)), squeeze=False)
    for i, size in enumerate(sizes):
        for j, aug in enumerate(augments):
            ax = axes[i][j]
            ax.axis("off")
            c = next((c for c in cells if c["size"] == size and c["augment"] == aug and c["seed"] == 0), None)
            if c and (grid := last_grid(Path(c["run"]))):
                img = Image.open(grid)
                ax.imshow(img.crop((0, 0, img.width, img.height // 2)), cmap="gray")  # the first half of the rows
                ax.set_title(f"{size:,} images, {aug}\nFID {c[f'fid_{TAG}']:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / f"{name}-grids.png", dpi=90)
    plt.close(fig)
    fig, axes = plt.subplots(2, len(sizes), figsize=(4.2 * len(sizes), 6), squeeze=False)
    for ax, gap_ax, size in zip(axes[0], axes[1], sizes):
        plot_r_t_and_p(ax, [c for c in cells if c["size"] == size], augments, "epochs")
        ax.set_title(f"{size:,} images (seed 0)")
        for aug, colour in zip(augments, ("C0", "C1", "C2")):
            for c in (c for c in cells if c["size"] == size and c["augment"] == aug and c["seed"] == 0):
                gap_ax.plot(c["epochs"], c["gap"], color=colour, label=aug)
        gap_ax.set_ylabel("D's held-out gap")
        for a in (ax, gap_ax):
            a.set_xlabel("epoch")
            a.grid(alpha=0.3)
            a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / f"{name}-curves.png", dpi=90)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=SIZES)
    ap.add_argument("--augments", nargs="+", default=["none", "diffaug", "ada"])
    ap.add_argument("--full-augments", nargs="+", default=["none", "ada"], help="augmentations trained on 60,000")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=2000, help="the budget of every cell (D steps at batch 64)")
    ap.add_argument("--workers", type=int, default=2, help="cells trained at once, one thread each")
    ap.add_argument("--n", type=int, default=10000, help="samples (and test images) each cell is scored on")
    ap.add_argument("--runs", default="/tmp/gankit-small-data", help="where the cells' run folders go")
    ap.add_argument("--ada-speed", type=int, default=None, help="--ada-speed of the ada cells (default: the config's)")
    ap.add_argument("--ada-target", type=float, default=None, help="--ada-target of the ada cells (default: the config's, 0.8; the cells documented before "
                         "2026-12-05 used 0.6)")
    ap.add_argument("--ada-p-max", type=float, default=None,
                    help="the ada cells' ceiling of p (default: P_MAX); 0 runs ADA's machinery with no augmentation")
    ap.add_argument("--no-leak", action="store_true", help="skip the leak check")
    ap.add_argument("--leak-p", type=float, nargs="+", default=[P_MAX], help="ceilings of p to run the leak check at")
    ap.add_argument("--leak-only", action="store_true", help="only the leak check (no cells)")
    ap.add_argument("--figures", default=None,
                    help="folder for the PNGs (docs/results/img), named after --out (small-data-grids.png, ...)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "SMALL_DATA.md"),
                    help="the Markdown file to append to (its .json beside it gets every number)")
    args = ap.parse_args()
    global TAG
    TAG = protocol("fashion-mnist", args.n)

    # The evaluator's features of the test split (and of the whole training split, for the cells
    # that train on it), once, before the workers.
    embed_fn, card, _ = feature_network("fashion-mnist", None, "cpu")
    if max(args.sizes) >= 60000:
        training_features("fashion-mnist", embed_fn, card)
    reference_features("fashion-mnist", "test", args.n, embed_fn, card)

    speed = {**({"ada_speed": args.ada_speed} if args.ada_speed else {}),
             **({"ada_target": args.ada_target} if args.ada_target else {})}
    held = f"-pmax{args.ada_p_max:g}" if args.ada_p_max is not None else ""  # the name says it: the config does not
    jobs = [{"size": size, "augment": aug, "seed": seed, "steps": args.steps, "out": args.runs, "n": args.n,
             "name": f"{size}-{aug}{held if aug == 'ada' else ''}-s{seed}", "extra": speed if aug == "ada" else {},
             "p_max": args.ada_p_max if aug == "ada" else None}
            for size in args.sizes for aug in (args.full_augments if size >= 60000 else args.augments)
            for seed in args.seeds] if not args.leak_only else []
    if not args.no_leak:  # p pinned at its ceiling: a target r_t no D reaches, p rising at once
        jobs += [{"size": min(args.sizes), "augment": "ada", "seed": 0, "steps": args.steps, "out": args.runs,
                  "n": args.n, "name": f"leak-check-p{p_max:g}", "leak": True, "p_max": p_max,
                  "extra": {"ada_target": 0.01, "ada_speed": 1000}} for p_max in args.leak_p]
    t0 = time.perf_counter()
    with cell_pool(args.workers, initializer=set_tag, initargs=(TAG,)) as pool:
        cells = []
        for c in pool.imap_unordered(cell, jobs):
            cells.append(c)
            print(f"{c['name']}: fid_{TAG} {c[f'fid_{TAG}']:.2f}, memorised {c[f'memorised_{TAG}']:.3f}, "
                  + (f"{c['train_s']:.0f} s" if c["train_s"] else "trained before"), flush=True)
    wall = time.perf_counter() - t0
    leak_cells = [c for c in cells if c.get("leak")]
    cells = [c for c in cells if not c.get("leak")]
    result = {"device": device_name("cpu"), "torch": torch.__version__, "steps": args.steps, "wall_s": round(wall),
              "date": time.strftime("%Y-%m-%d"), "cells": cells}
    text = (f"\n## {result['date']}: {args.steps} steps per cell (batch 64), seeds {args.seeds}, `default`, fp32"
            + (f", ADA at --ada-speed {args.ada_speed}" if args.ada_speed else "")
            + (f", ADA at --ada-target {args.ada_target:g}" if args.ada_target else "")
            + (f", ADA with p held at most {args.ada_p_max:g} (--ada-p-max)" if args.ada_p_max is not None else "") + "\n\n"
            f"Measured by `python bench/small_data.py --steps {args.steps}"
            + (f" --sizes {' '.join(map(str, args.sizes))}" if args.sizes != SIZES else "")
            + (f" --ada-speed {args.ada_speed}" if args.ada_speed else "")
            + (f" --ada-target {args.ada_target:g}" if args.ada_target else "")
            + (f" --ada-p-max {args.ada_p_max:g}" if args.ada_p_max is not None else "")
            + f"` on {result['device']}, torch {torch.__version__}; {how_trained(cells, args.steps)}; "
            f"{args.workers} cells at a time, one thread each; {wall / 60:.0f} min in this call. Mean ± std over the seeds; "
            f"every score on {args.n:,} samples against the full test split.\n\n"
            + (table(cells, args.sizes, args.augments) if cells else ""))
    if leak_cells:
        same = {aug: next((x for x in cells if x["size"] == min(args.sizes) and x["augment"] == aug and x["seed"] == 0),
                          None)
                for aug in ("none", "ada")}
        shares = {f"ada, p held at {c['p_max']:g} (fid_{TAG} {c[f'fid_{TAG}']:.1f})": leak(c["run"], args.n)
                  for c in sorted(leak_cells, key=lambda c: c["p_max"])}
        shares.update({f"{aug} (seed 0)": leak(x["run"], args.n) for aug, x in same.items() if x})
        result["leak"] = {"not_upright": shares}
        text += (f"\nLeak check on {min(args.sizes):,} images: the share of {args.n:,} samples that match a flipped or "
                 f"quarter-turned class-mean image better than an upright one (real test images: "
                 f"{100 * next(iter(shares.values()))['real_not_upright']:.1f} %): "
                 + "; ".join(f"{k} {100 * v['samples_not_upright']:.1f} %" for k, v in shares.items()) + ".\n")
    print(text)
    if args.figures:
        name = Path(args.out).stem.lower().replace("_", "-")  # SMALL_DATA.md: small-data-grids.png, ...
        figures(cells, args.sizes, list(args.augments), Path(args.figures), name)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    append_result(out, "Small datasets: subsets x augmentation",
                  "Written by bench/small_data.py and bench/augment_cost.py; the results page is "
                  "docs/results/small-data.md.", text)
    size = min(args.sizes)
    fid = {a: statistics.mean(c[f"fid_{TAG}"] for c in cells if c["size"] == size and c["augment"] == a)
           for a in args.augments if any(c["size"] == size and c["augment"] == a for c in cells)}
    best = min((a for a in fid if a != "none"), key=fid.get, default=None)
    if not cells:
        print(f"wrote {out}: leak check only")
        return
    print(f"wrote {out}: at {size:,} images the better augmentation ({best}) changes fid_{TAG} by "
          f"{100 * (fid[best] / fid['none'] - 1):+.0f} % against none" if best and "none" in fid else f"wrote {out}")


if __name__ == "__main__":
    main()
