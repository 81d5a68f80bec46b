"""Time to the labs' quality: the fid_fmnist5k Q that the labs' loop (bench/labloop.py, the
dcgan-report settings) reaches after `--lab-epochs` epochs, and the training seconds gankit's
`default` preset needs to reach that Q, per seed, on the same device in the same run. Evaluations
are not counted; both are judged by the same evaluator and protocol (fid_fmnist5k: 5000 samples
against 5000 test images). gankit trains with `--precision` (fp32 by default, so the figure holds
on CPUs without native bf16), is judged every `--eval-every` steps and stops at the first
evaluation at or below Q, or when the labs' time is spent.

    python bench/time_to_quality.py [--lab-epochs 1] [--seeds 0] [--eval-every 117]
                                    [--precision fp32] [--set KEY=VALUE ...] [--device cpu]

The defaults finish in under 10 minutes on a 2-core CPU without bf16. Issue 15's measurement
(the README's table) is `--lab-epochs 3 --seeds 0 1 2 --eval-every 234`: about 25 minutes on the
AVX-512-BF16 EPYC, over an hour where the labs' loop is slower.

Appends its result to bench/TIME_TO_QUALITY.md; the last line gives gankit's time as a share of
the labs' (the target of issue 15: at most 1/3).
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import append_result, device_name, mean_std
from gankit.runs import read_stats
from labloop import LabStep, lab_loader, torchvision_root
from gankit.config import preset_config
from gankit.metrics import make_judge
from gankit.training import train


def overrides(pairs: list[str]) -> dict:
    """KEY=VALUE pairs as Config overrides; values are read as JSON where they parse (numbers, lists)."""
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def gankit_curve(preset: str, kw: dict, seed: int, every: int, minutes: float, device: str, out: Path,
                 target: float | None = None) -> list[tuple[int, float, float]]:
    """(step, training s, fid_fmnist5k) of one run judged every `every` steps, which ends when
    `minutes` of training are spent or, with a target, at the first evaluation at or below it."""
    cfg = preset_config(preset, **{**dict(epochs=1000, eval_every=every, eval_n=5000, device=device, out_dir=str(out),
                                          seed=seed, log_every=every, minutes=minutes, keep=0), **kw})
    stop = None if target is None else (lambda row: row["fid_fmnist5k"] <= target)
    run = train(cfg, progress=False, on_quality=stop)
    return [(r["step"], r["train_time_s"], r["fid_fmnist5k"]) for r in read_stats(run, "quality.jsonl")]


def first_hit(curve: list, target: float) -> float | None:
    return next((t for _, t, fid in curve if fid <= target), None)


def lab_run(epochs: int, device: str, seed: int, max_steps: int = 0) -> tuple[float, list]:
    """The labs' loop for `epochs` epochs (or `max_steps` steps, if sooner), judged at the end of
    each: (training s, curve)."""
    root = torchvision_root()
    judge = make_judge("fashion-mnist", 5000, seed + 2, 100, torch.device(device))
    step = LabStep("dcgan", device, seed)
    loader = lab_loader(root, 128)
    curve, trained, n = [], 0.0, 0
    for epoch in range(epochs):
        t0 = time.perf_counter()
        for x, _ in loader:
            step(x)
            n += 1
            if n == max_steps:
                break
        trained += time.perf_counter() - t0
        fid = judge(step.G)["fid_fmnist5k"]
        step.G.train()
        curve.append((n, round(trained, 2), fid))
        print(f"labs' loop step {n} (epoch {epoch + 1}): {trained:.1f} s, fid_fmnist5k {fid:.2f}", flush=True)
        if n == max_steps:
            break
    return trained, curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lab-epochs", type=int, default=1, help="epochs of the labs' loop that set Q (issue 15: 3)")
    ap.add_argument("--lab-steps", type=int, default=0, help="stop the labs' loop after this many steps (a smoke test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0], help="issue 15: 0 1 2")
    ap.add_argument("--eval-every", type=int, default=117, help="gankit's steps between evaluations")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--precision", default="fp32", help="gankit's precision (fp32: what a CPU without bf16 runs)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other Config overrides for gankit")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("TIME_TO_QUALITY.md")))
    args = ap.parse_args()
    kw = {"precision": args.precision, **overrides(args.set)}
    rows = []
    for seed in args.seeds:
        lab_s, lab_curve = lab_run(args.lab_epochs, args.device, seed, args.lab_steps)
        q = lab_curve[-1][2]
        with tempfile.TemporaryDirectory() as tmp:
            curve = gankit_curve(args.preset, kw, seed, args.eval_every, lab_s / 60, args.device, Path(tmp), target=q)
        hit = first_hit(curve, q)
        rows.append((seed, q, lab_s, hit, curve, lab_curve))
        print(f"seed {seed}: Q = {q:.2f}; labs' loop {lab_s:.0f} s, gankit {args.preset} "
              + (f"{hit:.0f} s ({hit / lab_s:.2f} of it)" if hit is not None else "did not reach Q in that time"),
              flush=True)
    cmd = (f"python bench/time_to_quality.py --lab-epochs {args.lab_epochs}"
           + (f" --lab-steps {args.lab_steps}" if args.lab_steps else "") + f" --seeds {' '.join(map(str, args.seeds))} "
           f"--eval-every {args.eval_every} --preset {args.preset} --precision {args.precision}"
           + (f" --set {' '.join(args.set)}" if args.set else "") + f" --device {args.device}")
    shares = [hit / lab_s for _, _, lab_s, hit, _, _ in rows if hit is not None]
    table = "".join(f"| {seed} | {q:.2f} | {lab_s:.0f} s | " + (f"{hit:.0f} s | {hit / lab_s:.2f} |" if hit is not None
                                                               else "not reached | > 1 |") + "\n"
                    for seed, q, lab_s, hit, _, _ in rows)
    reached = len(shares) == len(rows)
    summary = (f"gankit `{args.preset}` ({args.precision}) reaches the labs' {args.lab_epochs}-epoch fid_fmnist5k "
               f"(Q = {mean_std([r[1] for r in rows], '.1f')}, {len(rows)} seed(s)) in "
               + (f"{mean_std([r[3] for r in rows], '.1f')} s against the labs' {mean_std([r[2] for r in rows], '.1f')} s: "
                  f"{statistics.mean(shares):.2f}" + (f" ± {statistics.stdev(shares):.2f}" if len(shares) > 1 else "")
                  + " of the labs' time"
                  if reached else f"{len(shares)} of {len(rows)} seeds within the labs' time"))
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device_name(args.device)}, torch {torch.__version__}\n\n`{cmd}`\n\n"
            f"| seed | Q: labs' fid_fmnist5k after {args.lab_epochs} epochs | labs' training time | "
            f"gankit `{args.preset}` to Q | share of the labs' time |\n|---|---|---|---|---|\n{table}\n{summary}\n\n"
            + "".join(f"Curves, seed {seed} (step, training s, fid): gankit {[(s, t, round(f, 1)) for s, t, f in curve]}; "
                      f"labs' loop {[(s, t, round(f, 1)) for s, t, f in lab_curve]}\n\n"
                      for seed, _, _, _, curve, lab_curve in rows))
    append_result(args.out, "Time to quality", "Training seconds (evaluations excluded), measured by "
                  "bench/time_to_quality.py.", text)
    print(text)
    print(summary)


if __name__ == "__main__":
    main()
