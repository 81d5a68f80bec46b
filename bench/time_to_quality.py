"""Time to quality: training seconds until the generator reaches a stated FID, for gankit's
default preset and for the labs' loop (bench/labloop.py, the dcgan-report settings), on the same
device in the same run. Evaluation time is not counted; both are judged by the same evaluator,
samples and protocol (fid_fmnist5k: 5000 samples against 5000 test images).

    python bench/time_to_quality.py [--target 60] [--eval-every 117] [--max-epochs 6] [--device cpu]

Appends its result to bench/TIME_TO_QUALITY.md.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import append_result, device_name
from gankit.runs import read_stats
from labloop import LabStep, lab_loader, torchvision_root
from gankit.config import preset_config
from gankit.metrics import make_judge
from gankit.train import train


def gankit_run(target: float, every: int, max_epochs: int, device: str, out: Path, seed: int) -> tuple[float | None, list]:
    """One run, judged every `every` steps; it ends at the first evaluation that meets the target."""
    cfg = preset_config("default", steps=max_epochs * 468, eval_every=every, eval_n=5000, device=device,
                        out_dir=str(out), seed=seed, log_every=every)
    run = train(cfg, progress=False, on_quality=lambda row: row["fid_fmnist5k"] <= target)
    curve = [(r["step"], r["train_time_s"], r["fid_fmnist5k"]) for r in read_stats(run, "quality.jsonl")]
    hit = next((t for _, t, fid in curve if fid <= target), None)
    return hit, curve


def lab_run(target: float, every: int, max_epochs: int, device: str, seed: int) -> tuple[float | None, list]:
    root = torchvision_root()
    judge = make_judge("fashion-mnist", 5000, seed + 2, 100, torch.device(device))
    step = LabStep("dcgan", device, seed)
    loader = lab_loader(root, 128)
    curve, trained, n = [], 0.0, 0
    for _ in range(max_epochs):
        t0 = time.perf_counter()
        for x, _ in loader:
            step(x)
            n += 1
            if n % every == 0:
                trained += time.perf_counter() - t0
                fid = judge(step.G)["fid_fmnist5k"]
                step.G.train()
                curve.append((n, round(trained, 2), fid))
                print(f"labs' loop step {n}: {trained:.1f} s, fid_fmnist5k {fid:.2f}", flush=True)
                if fid <= target:
                    return trained, curve
                t0 = time.perf_counter()
        trained += time.perf_counter() - t0
    return None, curve


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", type=float, default=60.0, help="fid_fmnist5k to reach")
    ap.add_argument("--eval-every", type=int, default=117, help="steps between evaluations (both loops)")
    ap.add_argument("--max-epochs", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("TIME_TO_QUALITY.md")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        g_hit, g_curve = gankit_run(args.target, args.eval_every, args.max_epochs, args.device, Path(tmp), args.seed)
    l_hit, l_curve = lab_run(args.target, args.eval_every, args.max_epochs, args.device, args.seed)
    device = device_name(args.device)
    fmt = lambda hit: f"{hit:.0f} s" if hit is not None else f"not reached in {args.max_epochs} epochs"
    ratio = f"{l_hit / g_hit:.2f}x" if g_hit and l_hit else "n/a"
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device}, torch {torch.__version__}, seed {args.seed}\n\n"
            f"`python bench/time_to_quality.py --target {args.target:g} --eval-every {args.eval_every} "
            f"--max-epochs {args.max_epochs} --device {args.device} --seed {args.seed}`\n\n"
            f"| loop | training seconds to fid_fmnist5k <= {args.target:g} |\n|---|---|\n"
            f"| gankit `default` preset | {fmt(g_hit)} |\n| labs' loop (dcgan-report settings) | {fmt(l_hit)} |\n"
            f"| speed-up | {ratio} |\n\n"
            f"Curves (step, training s, fid): gankit {[(s, t, round(f, 1)) for s, t, f in g_curve]}; "
            f"labs' loop {[(s, t, round(f, 1)) for s, t, f in l_curve]}\n")
    append_result(args.out, "Time to quality", "Training seconds (evaluations excluded) until fid_fmnist5k "
                  "reaches the target, measured by bench/time_to_quality.py.", text)
    print(text)
    print(f"training seconds to fid_fmnist5k <= {args.target:g}: gankit default {fmt(g_hit)}, labs' loop {fmt(l_hit)}; "
          f"gankit is {ratio} sooner")


if __name__ == "__main__":
    main()
