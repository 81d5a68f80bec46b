"""Time `gankit eval` on 10k samples on this machine, with a cold and a warm reference cache.

    python bench/eval_time.py RUN_DIR [--n 10000]

Runs `gankit eval RUN --n N` twice in fresh processes with a fresh XDG_CACHE_HOME: the first
computes and caches the reference features of the test set (and the real-data floor's training
features), the second reads them from the cache. Prints wall seconds of each, start-up included.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--n", type=int, default=10000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
        env = {**os.environ, "XDG_CACHE_HOME": cache}
        times = []
        for label in ("cold cache", "warm cache"):
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "gankit", "eval", args.run, "--n", str(args.n),
                                   "--out", os.path.join(out, "metrics.json")], env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if proc.returncode:
                raise SystemExit(proc.stderr)
            print(f"gankit eval --n {args.n} ({label}): {times[-1]:.1f} s", flush=True)
    print(f"{time.strftime('%Y-%m-%d')}, CPU ({torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"Python {platform.python_version()}")


if __name__ == "__main__":
    main()
