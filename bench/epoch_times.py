"""Time one epoch of every preset on real Fashion-MNIST on this machine.

    python bench/epoch_times.py [--presets default dcgan-report ...] [--epochs 1] [--out bench/EPOCH_TIMES.md]

Each preset runs as `gankit train --preset P --epochs N --eval-every 0` in a fresh process
(training alone: no in-training quality evaluation). Printed and written
per preset: wall time of the whole command, the loop's own training time (stats.jsonl time_s,
without start-up, plots and checkpoints), images/s of the loop, peak resident memory of the
process, and the final losses. The header records device, versions and date.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import device_name  # noqa: E402
from gankit.config import PRESETS  # noqa: E402
from gankit.runs import read_stats  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=[k for k, v in PRESETS.items() if v.get("dataset") != "folder"],
                    help="presets to time (default: every Fashion-MNIST preset; the faces presets need a folder)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead of --epochs (a smoke test)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("EPOCH_TIMES.md")))
    args = ap.parse_args()

    device = device_name(args.device)
    header = (f"# One epoch of each preset on Fashion-MNIST\n\n"
              f"Measured by `python bench/epoch_times.py --epochs {args.epochs} --device {args.device}` on "
              f"{time.strftime('%Y-%m-%d')}: {device}; torch {torch.__version__}, Python {platform.python_version()}.\n"
              f"`loop s` is the training loop alone (stats.jsonl time_s); `wall s` the whole command "
              f"(start-up, data loading, plots, checkpoints).\n\n"
              "| preset | model | objective | precision | epochs | wall s | loop s | img/s | peak RSS MB | loss_D | loss_G |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            cmd = [sys.executable, "-m", "gankit", "train", "--preset", preset, "--epochs", str(args.epochs), "--steps", str(args.steps),
                   "--device", args.device, "--out-dir", tmp, "--log-every", "50", "--eval-every", "0"]
            t0 = time.perf_counter()
            log_path = Path(tmp) / f"{preset}.log"
            with open(log_path, "w") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                # wait4 gives this child's own resource usage (peak RSS in KiB on Linux).
                _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            if os.waitstatus_to_exitcode(status) != 0:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                raise SystemExit(f"{preset}: gankit train exited {os.waitstatus_to_exitcode(status)}")
            peak_mb = usage.ru_maxrss / 1024
            run = sorted(Path(tmp).glob(f"*-{preset}-fashion-mnist"))[-1]
            rows = read_stats(run)
            cfg = json.loads((run / "config.json").read_text())
            loop_s = rows[-1]["time_s"]
            img_s = rows[-1]["images"] / loop_s
            c = cfg["config"]
            line = (f"| {preset} | {c['model']} | {c['objective']} | {cfg['precision']} | {rows[-1]['epoch']:g} | {wall:.0f} | "
                    f"{loop_s:.0f} | {img_s:.0f} | {peak_mb:.0f} | {rows[-1]['loss_D']:.3f} | {rows[-1]['loss_G']:.3f} |")
            print(line, flush=True)
            lines.append(line)
    Path(args.out).write_text(header + "\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
