"""Time `gankit eval` on 10k samples on this machine, with a cold and a warm reference cache.

    python bench/eval_time.py RUN_DIR [--n 10000]

Runs `gankit eval RUN --n N` twice in fresh processes with a fresh XDG_CACHE_HOME: the first
computes and caches the reference features of the test set (and the real-data floor's training
features), the second reads them from the cache. Prints wall seconds of each, start-up included,
then where the time of a warm evaluation goes, stage by stage, measured in this process (the
evaluator's features also in batches of 1,000, against embed's 250 on a CPU, and whether the two
are the same bit for bit).
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

import common  # noqa: F401  (puts the repository on sys.path)


def stages(run: str, n: int) -> dict[str, float]:
    """Seconds of each stage of one evaluation with the reference features already cached."""
    from gankit import metrics as M
    from gankit.export import load_generator
    from gankit.sample import generate, z_from_seed
    from gankit.metrics import scores
    from gankit.metrics.evaluator import embed, load_evaluator
    out, t = {}, time.perf_counter()

    def lap(name):
        nonlocal t
        out[name] = time.perf_counter() - t
        t = time.perf_counter()
    G = load_generator(run)
    model, card = load_evaluator("fashion-mnist", "cpu")
    ref, _ = M.reference_features("fashion-mnist", "test", n, lambda x: embed(model, x), card)
    lap("load G, evaluator, cached reference")
    x = generate(G, z_from_seed(0, n, G.z_dim))
    lap(f"generate {n} samples")
    feats, probs = embed(model, x)
    lap("evaluator features (batches of 250 on a CPU, embed's default)")
    same = torch.equal(embed(model, x, batch=1000)[0], feats)
    lap(f"evaluator features in batches of 1,000 ({'the same' if same else 'NOT the same'} features bit for bit)")
    for name, score in (("FID", lambda: scores.fid(feats, ref)), ("KID", lambda: scores.kid(feats, ref)),
                        ("IS", lambda: scores.inception_score(probs)),
                        ("precision, recall, density, coverage (k-NN)", lambda: scores.manifold_scores(ref, feats)),
                        ("class histogram", lambda: scores.class_histogram(probs))):
        score()
        lap(name)
    return out


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
        os.environ["XDG_CACHE_HOME"] = cache  # the warm cache, for the stages
        for name, seconds in stages(args.run, args.n).items():
            print(f"  {name}: {seconds:.2f} s", flush=True)
    print(f"{time.strftime('%Y-%m-%d')}, {common.device_name('cpu')}, torch {torch.__version__}, "
          f"Python {platform.python_version()}")
    print(f"gankit eval --n {args.n}: warm cache {times[1]:.1f} s, {times[1] / times[0]:.2f}x the cold-cache run "
          f"({times[0]:.1f} s)")


if __name__ == "__main__":
    main()
