"""What augmentation costs: training images/s of `default` (batch 64, fp32) with --augment none,
diffaug and ada, on the whole of Fashion-MNIST, in the same call, rounds interleaved. The share is
the step time the augmentation adds: 1 - (img/s with it) / (img/s without). ADA's p is held near
its ceiling here (target 0.01): every transform runs, as on a dataset small enough to need them.

    python bench/augment_cost.py [--steps 400] [--rounds 2] [--device cpu] [--out bench/SMALL_DATA.md]
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
from gankit.runs import read_stats
from gankit.training import train

VARIANTS = {"none": {}, "diffaug": {"augment": "diffaug"},
            "ada": {"augment": "ada", "ada_target": 0.01, "ada_speed": 1000}}


def images_per_s(device: str, steps: int, extra: dict) -> float:
    """Median img/s of the log ticks after the first (start-up excluded)."""
    with tempfile.TemporaryDirectory() as out:
        run = train(preset_config("default", steps=steps, log_every=50, eval_every=0, precision="fp32",
                                  device=device, out_dir=out, **extra), progress=False)
        rows = read_stats(run)
        return statistics.median(r["img_per_s"] for r in rows[1:] if r["step"] % 50 == 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).parent / "SMALL_DATA.md"), help="the Markdown file to append to")
    args = ap.parse_args()
    seen: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(args.rounds):
        for name, extra in VARIANTS.items():
            seen[name].append(images_per_s(args.device, args.steps, extra))
    base = statistics.mean(seen["none"])
    rows = "\n".join(f"| {name} | {statistics.mean(v):.0f} | "
                     + ("-" if name == "none" else f"{100 * (1 - statistics.mean(v) / base):.1f} %") + " |"
                     for name, v in seen.items())
    text = (f"\n## {time.strftime('%Y-%m-%d')}: what augmentation costs\n\nMeasured by `python bench/augment_cost.py "
            f"--steps {args.steps} --rounds {args.rounds} --device {args.device}` on {device_name(args.device)}, torch "
            f"{torch.__version__}: `default`, batch 64, fp32, the whole training split; median img/s of the log ticks, "
            f"mean over {args.rounds} interleaved rounds; ADA with every transform running (p near its ceiling).\n\n"
            f"| augment | img/s | share of the step |\n|---|---|---|\n{rows}\n")
    print(text)
    append_result(args.out, "Small datasets: subsets x augmentation",
                  "Written by bench/small_data.py and bench/augment_cost.py; the results page is "
                  "docs/results/small-data.md.", text)
    share = {k: 100 * (1 - statistics.mean(v) / base) for k, v in seen.items() if k != "none"}
    print(f"wrote {args.out}: " + ", ".join(f"{k} adds {v:.1f} %" for k, v in share.items())
          + " of the step time against none")


if __name__ == "__main__":
    main()
