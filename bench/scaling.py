"""Data-parallel scaling: training images/s of `torchrun --nproc-per-node N -m gankit train` for
each N, at a fixed batch per process (the global batch grows with N), in the same run.

    python bench/scaling.py [--nprocs 1 2] [--device cpu] [--preset dcgan-report] [--batch 128]

On the CPU (gloo) N processes share the machine's cores (torchrun gives each one thread when
N > 1; N = 1 here runs under torchrun too, with all threads), so expect little. On a GPU machine
`--device cuda --nprocs 1` checks the NCCL path (DDP on one GPU). Appends to bench/SCALING.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import append_result, device_name
from gankit.runs import read_stats

ROOT = Path(__file__).resolve().parents[1]


def images_per_s(nproc: int, args, out: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-port", "29533",
           "-m", "gankit", "train", "--preset", args.preset, "--device", args.device, "--batch-size", str(args.batch),
           "--steps", str(args.steps), "--log-every", str(args.steps // 3), "--eval-every", "0",
           "--out-dir", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"torchrun with {nproc} process(es) failed:\n{res.stderr[-3000:]}")
    run = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    rows = read_stats(run)
    line = next(x for x in (run / "log.txt").read_text().splitlines() if x.startswith("training "))
    return statistics.median(r["img_per_s"] for r in rows[1:]), line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="dcgan-report")
    ap.add_argument("--batch", type=int, default=128, help="per process")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=str(Path(__file__).with_name("SCALING.md")))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nprocs:
            ips, line = images_per_s(n, args, Path(tmp))
            rows.append((n, ips, line))
            print(f"{n} process(es): {ips:.0f} img/s  [{line}]", flush=True)
    base = rows[0][1]
    device = device_name(args.device)
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device}, torch {torch.__version__}\n\n"
            f"`python bench/scaling.py --nprocs {' '.join(map(str, args.nprocs))} --device {args.device} "
            f"--preset {args.preset} --batch {args.batch} --steps {args.steps}`\n\n"
            "| processes | global batch | img/s | vs first row |\n|---|---|---|---|\n"
            + "".join(f"| {n} | {n * args.batch} | {ips:.0f} | {ips / base:.2f}x |\n" for n, ips, _ in rows)
            + "\nThe trainer's own line for the last run: `" + rows[-1][2] + "`\n")
    append_result(args.out, "Data-parallel scaling", "Images/s of `torchrun -m gankit train` by number of "
                  "processes, measured by bench/scaling.py.", text)
    print(text)
    print("images/s against 1 process: " + ", ".join(f"{n} processes {ips / base:.2f}x" for n, ips, _ in rows))


if __name__ == "__main__":
    main()
