"""Does bf16 cost quality? The same preset trained in fp32 and in bf16 autocast for the same
number of steps, over several seeds, judged by gankit's evaluator (FID of 10k samples against the
10k test images, the fmnist10k protocol). bf16 passes when its mean lies within the seed-to-seed
spread (mean +- std) of fp32.

    python bench/precision.py [--preset default] [--epochs 1] [--seeds 0 1 2] [--device cpu]

Writes bench/PRECISION.md and PRECISION.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import device_name
from gankit.config import preset_config
from gankit.device import bf16_warning
from gankit.metrics import compute_metrics
from gankit.training import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead (a smoke test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("PRECISION.md")))
    args = ap.parse_args()
    why = bf16_warning(torch.device(args.device.split(":")[0] if args.device != "auto" else "cpu"))
    if why:  # emulated bf16 would take hours and say nothing about the hardware this question is for
        raise SystemExit(f"bench/precision.py compares fp32 with native bf16, and {why.split(';')[0]}; "
                         f"run it on a CPU with AVX-512-BF16/AMX or a GPU")
    results: dict[str, list] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for precision in ("fp32", "bf16"):
                cfg = preset_config(args.preset, epochs=args.epochs, steps=args.steps, precision=precision, seed=seed,
                                    device=args.device, eval_every=0, out_dir=tmp, keep=0)
                run = train(cfg, progress=False)
                m = compute_metrics(str(run), names=["fid"], n=args.n, device=args.device)
                key = next(k for k in m if k.startswith("fid_"))
                results[precision].append(m[key])
                print(f"seed {seed} {precision}: {key} {m[key]:.2f}", flush=True)
    stats = {p: (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0) for p, v in results.items()}
    lo, hi = stats["fp32"][0] - stats["fp32"][1], stats["fp32"][0] + stats["fp32"][1]
    verdict = "within" if lo <= stats["bf16"][0] <= hi else "OUTSIDE"
    device = device_name(args.device)
    text = (f"# fp32 against bf16: quality at equal steps\n\n"
            f"Measured by `python bench/precision.py --preset {args.preset} --epochs {args.epochs} --seeds "
            f"{' '.join(map(str, args.seeds))} --n {args.n} --device {args.device}` on {time.strftime('%Y-%m-%d')}: "
            f"{device}, torch {torch.__version__}. {key} of the exported generator (EMA where the preset has it), "
            f"mean +- std over {len(args.seeds)} seeds (speed is measured by bench/throughput.py, not here).\n\n"
            f"| precision | {key} per seed | mean +- std |\n|---|---|---|\n"
            + "".join(f"| {p} | {', '.join(f'{v:.2f}' for v in results[p])} | {stats[p][0]:.2f} +- {stats[p][1]:.2f} |\n"
                      for p in ("fp32", "bf16"))
            + f"\nbf16's mean is {verdict} fp32's seed-to-seed spread [{lo:.2f}, {hi:.2f}].\n")
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps({"results": results,
                                                               "key": key, "verdict": verdict}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
