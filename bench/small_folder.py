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
scored again, not retrained, and resumed to --steps if they trained fewer (--train-only trains
them and stops). Appends to --out (bench/SMALL_FOLDER.md) and writes every number beside it (.json).
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
from gankit.data import training_images
from gankit.metrics import compute_metrics, real_floor
from gankit.nets.ada import P_MAX
from gankit.runs import read_stats

NAMES = ["fid", "precision", "recall", "coverage", "classes", "memorisation"]
SETTINGS = dict(g_width=32, d_width=32, hflip=False, precision="fp32", eval_every=0, log_every=50)


def config(job: dict):
    return preset_config("faces64", data_root=job["data_root"], subset=job["size"], augment=job["augment"],
                         seed=job["seed"], steps=job["steps"], out_dir=job["out"], **SETTINGS, **job.get("extra", {}))


def cell(job: dict) -> dict:
    """Train one cell, or finish one an earlier call trained (train_or_reuse; a worker process of one
    thread)."""
    torch.set_num_threads(1)
    run, train_s, before = train_or_reuse(config(job), job["name"], job.get("p_max"))
    rows = read_stats(run)
    return {**job, "run": str(run), "train_s": train_s, "steps_before": before, "r_t": [r["r_t"] for r in rows],
            "ada_p": [r.get("ada_p") for r in rows], "steps_logged": [r["step"] for r in rows],
            "gap": [r.get("heldout_gap") for r in rows]}


def transformed(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x through every one of ADA's geometric transforms (p = 1), seeded by gen."""
    from gankit.nets.ada import geometry, resample
    M, _ = geometry(len(x), x.shape[2], x.shape[3], lambda *shape: torch.rand(*shape, generator=gen),
                    torch.tensor(1.0), "cpu")
    return resample(x, M)


def detector(x: torch.Tensor, epochs: int = 6) -> tuple[torch.nn.Module, dict]:
    """A small CNN trained to tell images (N, C, H, W) in [-1, 1] from the same images through ADA's
    geometric transforms (every one applied: flips, turns, shifts, zooms and rotations with
    reflected borders), on all but a held-out fifth (at most 600), seeded; with its accuracy on those
    (how often it calls a real image augmented, how often it catches an augmented one)."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    order = torch.randperm(len(x), generator=gen)
    k = min(600, len(x) // 5)
    test, train = x[order[:k]], x[order[k:]]
    net = torch.nn.Sequential(*[m for c_in, c_out in ((x.shape[1], 32), (32, 64), (64, 128), (128, 128))
                                for m in (torch.nn.Conv2d(c_in, c_out, 4, 2, 1), torch.nn.LeakyReLU(0.2))],
                              torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(128 * 16, 1))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    target = torch.cat([torch.zeros(64), torch.ones(64)])
    for _ in range(epochs):
        batches = torch.randperm(len(train), generator=gen)
        for i in range(0, len(train) - 63, 64):
            xb = train[batches[i:i + 64]]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(torch.cat([xb, transformed(xb, gen)]))[:, 0],
                                                                        target)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return net, {"held_out": k, "real_called_augmented": called_augmented(net, test),
                 "augmented_caught": called_augmented(net, transformed(test, gen))}


def called_augmented(net: torch.nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((torch.cat([net(b) for b in x.split(500)]) > 0).double().mean())


def leak_check(cells: list[dict], leak_cells: list[dict], cfg, n: int) -> tuple[dict, str]:
    """The share of each cell's n samples the detector calls augmented, against real images: a
    pipeline that leaks makes G draw what its transforms draw (turned, mirrored, zoomed-out
    pictures with reflected borders). `cfg`: a cell's config (the folder, at the size it trained)."""
    from gankit.data import to_float
    from gankit.data.folder import load_folder
    from gankit.export import load_generator
    from gankit.sample import generate, z_from_seed
    x = to_float(torch.from_numpy(load_folder(cfg.data_root, cfg.image_size, cfg.channels, progress=False,
                                              say=lambda m: None)))
    net, real = detector(x)
    gen = torch.Generator().manual_seed(1)
    for c in cells + leak_cells:
        G = load_generator(c["run"])
        samples = generate(G, z_from_seed(0, n, G.z_dim))
        c["called_augmented"] = called_augmented(net, samples)
        if c["augment"] == "none":  # the control: generated images put through the transforms are caught too
            c["transformed_caught"] = called_augmented(net, transformed(samples, gen))
    caught = [c["transformed_caught"] for c in cells if "transformed_caught" in c]
    rows = [f"| {aug} | {mean_std([c['called_augmented'] for c in cells if c['augment'] == aug])} |"
            for aug in dict.fromkeys(c["augment"] for c in cells)]
    rows += [f"| ada, p held at {c['p_max']:g} (fid_{c['tag']} {c[f'fid_' + c['tag']]:.1f}) | "
             f"{c['called_augmented']:.2f} |" for c in leak_cells]
    text = (f"\nLeak check: a CNN trained to tell the folder's images from the same images through ADA's "
            f"geometric transforms (all of them) calls {100 * real['real_called_augmented']:.1f} % of "
            f"{real['held_out']} held-out images augmented and catches {100 * real['augmented_caught']:.1f} % of "
            f"them put through the transforms; "
            + (f"of the `none` cells' samples put through them, it catches {100 * statistics.mean(caught):.1f} % "
               f"(its sensitivity on generated images)" if caught else "no `none` cells to measure its sensitivity "
               "on generated images")
            + f". The share of {n:,} samples it calls augmented:\n\n| cells | called augmented |\n|---|---|\n"
            + "\n".join(rows) + "\n")
    return {**real, "transformed_samples_caught": caught,
            "cells": {c["name"]: c["called_augmented"] for c in cells + leak_cells}}, text


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
    ap.add_argument("--no-leak", action="store_true", help="skip the leak check")
    ap.add_argument("--leak-p", type=float, nargs="+", default=[P_MAX], help="ceilings of p to run the leak check at")
    ap.add_argument("--figures", default=None, help="folder for the PNGs (docs/results/img)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "SMALL_FOLDER.md"),
                    help="the Markdown file to append to (its .json beside it gets every number)")
    args = ap.parse_args()

    jobs = [{"size": args.size, "augment": aug, "seed": seed, "steps": args.steps, "out": args.runs,
             "data_root": args.data_root, "name": f"emoji{args.size}-{aug}-s{seed}"}
            for aug in args.augments for seed in args.seeds]
    if not args.no_leak:  # p pinned at its ceiling: a target r_t no D reaches, p rising at once
        jobs += [{"size": args.size, "augment": "ada", "seed": 0, "steps": args.steps, "out": args.runs,
                  "data_root": args.data_root, "name": f"emoji{args.size}-leak-check-p{p_max:g}", "leak": True,
                  "p_max": p_max, "extra": {"ada_target": 0.01, "ada_speed": 1000}} for p_max in args.leak_p]
    t0 = time.perf_counter()
    training_images(config(jobs[0]), progress=False)  # decoded and cached here: a pool's worker cannot fork decoders
    with cell_pool(args.workers) as pool:
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
    leak_cells = [c for c in cells if c.get("leak")]
    cells = [c for c in cells if not c.get("leak")]
    floor = {**real_floor("folder", NAMES, args.n, data_root=args.data_root, evaluator=args.evaluator), "n": args.n}
    wall = time.perf_counter() - t0
    cells.sort(key=lambda c: (args.augments.index(c["augment"]), c["seed"]))
    trained = [c["train_s"] for c in cells if c["train_s"]]
    result = {"device": device_name("cpu"), "torch": torch.__version__, "steps": args.steps, "size": args.size,
              "wall_s": round(wall), "date": time.strftime("%Y-%m-%d"), "real_floor": floor, "cells": cells}
    text = (f"\n## {result['date']}: {args.size:,} emoji, {args.steps} steps per cell (batch 64), seeds {args.seeds}, "
            f"`faces64` at half width, fp32\n\n"
            f"Measured by `python bench/small_folder.py --steps {args.steps} --size {args.size}` on {result['device']}, "
            f"torch {torch.__version__}; {how_trained(cells, args.steps)}; {args.workers} cells at a time, one thread "
            f"each" + (f", {statistics.mean(trained) / 60:.1f} min of training per cell in this call" if trained else "")
            + f"; {wall / 60:.0f} min in this call. Mean ± std over the "
            f"seeds; every score on {args.n:,} samples against {args.n:,} images of the whole folder, memorised "
            f"against the {args.size:,} training images with the images left out as the held-out set.\n\n"
            + table(cells, args.augments, tag, floor))
    if not args.no_leak:
        result["leak"], leak_text = leak_check(cells, leak_cells, config(jobs[0]).resolved(), args.n)
        text += leak_text
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
