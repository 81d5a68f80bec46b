"""Quality of every preset for the same training budget, mean ± std over seeds.

    python bench/quality.py [--presets ...] [--epochs 1] [--seeds 0 1 2] [--n 10000] [--device cpu]
                            [--out bench/QUALITY.md] [--runs DIR]

Each (preset, seed) trains with `gankit train --preset P --epochs E --seed S` in a fresh process
(in-training evaluation off, so its time is training alone), then `gankit.metrics.compute_metrics`
scores n samples of the run's generator (EMA weights where the preset keeps them) against the n
Fashion-MNIST test images with the shipped evaluator. The table gives mean ± std over seeds of
fid_fmnist10k, KID, IS, precision, recall and coverage, the training time, and the real-data floor
(n training images against the n test images) under the same protocol.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gankit.config import PRESETS  # noqa: E402
from gankit.metrics import compute_metrics, protocol, real_floor  # noqa: E402
from gankit.runs import read_stats  # noqa: E402

COLUMNS = [("fid", "FID", 2), ("kid", "KID", 3), ("is", "IS", 2), ("precision", "precision", 3),
           ("recall", "recall", 3), ("coverage", "coverage", 3)]


def fmt(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=[k for k, v in PRESETS.items() if v.get("dataset") != "folder"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead of --epochs (a smoke test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("QUALITY.md")))
    ap.add_argument("--runs", default=None, help="keep the run folders here (default: a temporary folder)")
    args = ap.parse_args()
    tag = protocol("fashion-mnist", args.n)

    def value(r: dict, key: str) -> float:
        return r[f"{key}_{tag}"]

    runs_dir = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="gankit-quality-"))
    results: dict[str, list[dict]] = {}
    for preset in args.presets:
        for seed in args.seeds:
            cmd = [sys.executable, "-m", "gankit", "train", "--preset", preset, "--epochs", str(args.epochs), "--steps", str(args.steps),
                   "--seed", str(seed), "--device", args.device, "--out-dir", str(runs_dir), "--eval-every", "0"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
            run = sorted(runs_dir.glob(f"*-{preset}-fashion-mnist"), key=lambda p: p.stat().st_mtime)[-1]
            stats = read_stats(run)
            t0 = time.perf_counter()
            r = compute_metrics(run, "fashion-mnist", n=args.n, seed=1000 + seed, device=args.device)
            r["train_s"] = stats[-1]["time_s"]
            r["eval_s"] = time.perf_counter() - t0
            results.setdefault(preset, []).append(r)
            print(f"{preset} seed {seed}: " + ", ".join(f"{label} {value(r, k):.3f}" for k, label, _ in COLUMNS)
                  + f", train {r['train_s']:.0f} s, eval {r['eval_s']:.1f} s", flush=True)

    floor = real_floor("fashion-mnist", n=args.n, device=args.device)
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"# Sample quality of each preset after {args.epochs} epoch(s)\n",
             f"Measured by `python bench/quality.py --epochs {args.epochs} --seeds {' '.join(map(str, args.seeds))} "
             f"--n {args.n} --device {args.device}` on {time.strftime('%Y-%m-%d')}: {device}, torch {torch.__version__}, "
             f"Python {platform.python_version()}. Mean ± std over {len(args.seeds)} seeds; {args.n} generated "
             f"images against the {args.n} Fashion-MNIST test images, features and class probabilities of "
             f"gankit's Fashion-MNIST evaluator (so `_{tag}`: not comparable with Inception-based FIDs).\n",
             "| preset | " + " | ".join(f"{label}_{tag}" if k == "fid" else label for k, label, _ in COLUMNS)
             + " | train s/run |", "|---" * (len(COLUMNS) + 2) + "|"]
    for preset, rs in results.items():
        lines.append(f"| `{preset}` | " + " | ".join(fmt([value(r, k) for r in rs], d) for k, _, d in COLUMNS)
                     + f" | {statistics.fmean(r['train_s'] for r in rs):.0f} |")
    lines.append("| real data (train vs test) | " + " | ".join(f"{value(floor, k):.{d}f}" for k, _, d in COLUMNS)
                 + " | - |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    (Path(args.out).with_suffix(".json")).write_text(json.dumps({"results": results, "real_floor": floor}, indent=1))
    print(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
