"""Time every latent-study command on a trained run, on this machine.

    python bench/latent_times.py RUN_DIR [--out bench/LATENT_TIMES.md]

Runs `gankit sample` and each `gankit explore` study as the README shows them, in fresh
processes, and prints wall seconds per command (start-up included), plus rank's top and bottom
dimensions. The figures land in RUN_DIR/latent/.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch


def latent_commands(run: str, rank_n: int = 256) -> list[list[str]]:
    """The latent commands docs/latent.md shows (all but the `--z` one), on RUN."""
    return [
        ["sample", run, "--n", "8", "--seed", "42"],
        ["explore", "nudge", run, "--dims", "10", "20", "37", "53", "67", "--deltas", "2", "4", "6", "8", "10",
         "--n", "8", "--seed", "42"],
        ["explore", "sweep", run, "--seeds", "5", "99", "42", "--dims", "5", "15", "25", "--range", "-4", "4",
         "--frames", "9"],
        ["explore", "interpolate", run, "--from", "1", "--to", "2", "--frames", "10", "--method", "slerp", "--gif"],
        ["explore", "arithmetic", run, "--a", "1", "2", "3", "--b", "4", "5", "--c", "6"],
        ["explore", "rank", run, "--n", str(rank_n), "--delta", "2"],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--out", default=str(Path(__file__).with_name("LATENT_TIMES.md")))
    ap.add_argument("--rank-n", type=int, default=256, help="base vectors of `explore rank` (as the README shows it)")
    args = ap.parse_args()
    run = args.run
    commands = latent_commands(run, args.rank_n)
    lines = []
    for cmd in commands:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "gankit", *cmd], capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"gankit {' '.join(cmd)} failed:\n{proc.stderr}")
        line = f"| `gankit {' '.join(c if c != run else 'RUN' for c in cmd)}` | {seconds:.1f} |"
        print(line, flush=True)
        lines.append(line)
    rank = sorted((Path(run) / "latent").glob("rank-*"))[-1] / "rank.json"
    rows = json.loads(rank.read_text())["measurements"]
    top = ", ".join(f"{r['dim']} ({r['mean_abs_change']:.4f})" for r in rows[:5])
    bottom = ", ".join(f"{r['dim']} ({r['mean_abs_change']:.4f})" for r in rows[-5:])
    summary = f"rank: most influential dims {top}; least {bottom}"
    print(summary)
    cfg = json.loads((Path(run) / "config.json").read_text())
    header = (f"# Latent-study commands, wall time\n\nMeasured by `python bench/latent_times.py RUN` on "
              f"{time.strftime('%Y-%m-%d')}, CPU ({torch.get_num_threads()} threads), torch {torch.__version__}, "
              f"Python {platform.python_version()}; RUN = preset {cfg['config']['preset']}, model "
              f"{cfg['config']['model']}, trained {json.loads((Path(run) / 'generator.json').read_text())['step']} steps. "
              f"Seconds include Python and torch start-up (~3 s).\n\n| command | seconds |\n|---|---|\n")
    Path(args.out).write_text(header + "\n".join(lines) + f"\n\n{summary}\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
