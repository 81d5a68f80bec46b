"""Ablation of the `default` recipe: each ingredient taken out (or a candidate put in) alone,
trained for the same minutes from the same seeds, judged by the same evaluator. Per variant: the
training seconds to reach a target fid_fmnist5k (the labs' 3-epoch quality Q, from
bench/time_to_quality.py), the fid_fmnist5k after the budget, and the steps the budget bought.

    python bench/ablation.py --target Q [--minutes 2] [--seeds 0] [--variants NAME ...]
                             [--precision fp32] [--device cpu] [--out bench/ABLATION.md]

The defaults (two variants, one seed) finish in under 10 minutes on any 2-core CPU; the whole
study is every variant over `--seeds 0 1 2` (about 2 hours there).

Evaluations (every `--eval-images` training images, so every variant is judged as often per image)
are not counted in the training time. Appends its table to bench/ABLATION.md.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import append_result, device_name
from gankit.config import preset_config
from time_to_quality import first_hit, gankit_curve

# name: (what it changes, Config overrides on top of the `default` preset)
VARIANTS: dict[str, tuple[str, dict]] = {
    "default": ("the preset as it is: g_width 32, d_width 32, batch 64, Adam 4e-4, EMA 0.999", {}),
    "wide G": ("G at the labs' width (g_width 64: 512-256-128 channels)", {"g_width": 64}),
    "wide D": ("D at the labs' width (d_width 64: 64-128-256 channels)", {"d_width": 64}),
    "wide G and D": ("both at the labs' width (the labs' DCGAN)", {"g_width": 64, "d_width": 64}),
    "batch 128": ("batch 128 (the labs')", {"batch_size": 128}),
    "batch 32": ("batch 32", {"batch_size": 32}),
    "lr 2e-4": ("Adam lr 2e-4 for G and D (the labs')", {"g_lr": 2e-4, "d_lr": 2e-4}),
    "no EMA": ("samples from G itself, not the EMA of its weights", {"ema": 0.0}),
    "hinge": ("hinge loss instead of BCE", {"objective": "hinge"}),
    "g_width 24": ("a leaner G (g_width 24: 192-96-48 channels)", {"g_width": 24}),
    "g_width 16": ("an even leaner G (g_width 16)", {"g_width": 16}),
}


def mean_std(xs: list[float], fmt: str = ".1f") -> str:
    if not xs:
        return "–"
    return f"{statistics.mean(xs):{fmt}} ± {statistics.stdev(xs):{fmt}}" if len(xs) > 1 else f"{xs[0]:{fmt}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, required=True, help="fid_fmnist5k to reach (Q)")
    ap.add_argument("--minutes", type=float, default=2.0, help="training minutes per run")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--variants", nargs="+", default=["default", "batch 128"], choices=VARIANTS,
                    help=f"of: {', '.join(VARIANTS)}")
    ap.add_argument("--eval-images", type=int, default=30000, help="training images between evaluations")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("ABLATION.md")))
    args = ap.parse_args()
    lines = []
    for name in args.variants:
        what, kw = VARIANTS[name]
        kw = {"precision": args.precision, **kw}
        batch = kw.get("batch_size", preset_config("default").batch_size)
        every = max(1, round(args.eval_images / batch))
        hits, fids, steps = [], [], []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as tmp:
                curve = gankit_curve("default", kw, seed, every, args.minutes, args.device, Path(tmp))
            hit = first_hit(curve, args.target)
            hits += [hit] if hit is not None else []
            fids.append(curve[-1][2])
            steps.append(curve[-1][0])
            print(f"{name} seed {seed}: fid_fmnist5k {curve[-1][2]:.2f} after {curve[-1][0]} steps; "
                  + (f"Q at {hit:.0f} s" if hit is not None else "Q not reached"), flush=True)
        line = (f"| {name} | {what} | {mean_std(hits, '.0f')} s ({len(hits)}/{len(args.seeds)}) | "
                f"{mean_std(fids, '.2f')} | {mean_std([s * batch / 1000 for s in steps], '.0f')}k |")
        print(line, flush=True)
        lines.append(line)
    cmd = (f"python bench/ablation.py --target {args.target:g} --minutes {args.minutes:g} --seeds "
           f"{' '.join(map(str, args.seeds))} --eval-images {args.eval_images} --precision {args.precision} "
           f"--device {args.device} --variants " + " ".join(f"'{v}'" for v in args.variants))
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device_name(args.device)}, torch {torch.__version__}\n\n`{cmd}`\n\n"
            f"| variant | what changes from `default` | training s to fid_fmnist5k <= {args.target:g} (seeds that got "
            f"there) | fid_fmnist5k after {args.minutes:g} min | images seen |\n|---|---|---|---|---|\n"
            + "\n".join(lines) + "\n")
    append_result(args.out, "Ablation of the default recipe", "Mean ± std over seeds, measured by bench/ablation.py; "
                  "evaluations not counted in the training time.", text)
    print(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
