"""What a training step of each model family costs on this machine: G and D at one image size,
one BCE step as the loop takes it (D on a real and a generated batch, then G), Adam, batch 64,
random images (no data loading), in fp32 and in the precision `auto` picks here (bf16 where the
CPU multiplies in it natively), channels_last on the CPU. Every family's images/s and its ratio
against the DCGAN of the same size (`dcgan` at 28, `dcgan64` at 64 ...), measured in the same run.

    python bench/model_cost.py                                    # 28 and 64 px, both precisions
    python bench/model_cost.py --models resnet64 dcgan64 --width 32 --out bench/MODEL_COST.md

Timing: 3 warm-up steps, then the median of 5 windows of --steps steps. Appends to --out.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import append_result, device_name

from gankit.config import preset_config
from gankit.device import resolve_precision
from gankit.nets import MODELS, build_models

REFERENCE = {28: "dcgan", 32: "dcgan32", 64: "dcgan64", 128: "dcgan128"}


def step_time(model: str, width: int, precision: str, steps: int, batch: int, channels: int) -> float:
    """Seconds per training step (median of 5 windows)."""
    torch.manual_seed(0)
    size = MODELS[model].size
    cfg = preset_config("default", model=model, g_width=width, d_width=width, channels=channels,
                        **({} if size == 28 else {"dataset": "folder", "data_root": "."}))
    G, D = (m.to(memory_format=torch.channels_last) for m in build_models(cfg))
    opt_G = torch.optim.Adam(G.parameters(), 4e-4, betas=(0.5, 0.999), foreach=True)
    opt_D = torch.optim.Adam(D.parameters(), 4e-4, betas=(0.5, 0.999), foreach=True)
    x = (torch.rand(batch, channels, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    z = torch.randn(batch, cfg.z_dim)
    ones, zeros = torch.ones(batch), torch.zeros(batch)

    def one_step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            fake = G(z)
            loss_D = (F.binary_cross_entropy_with_logits(D(x).float(), ones)
                      + F.binary_cross_entropy_with_logits(D(fake.detach()).float(), zeros))
        opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        opt_D.step()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss_G = F.binary_cross_entropy_with_logits(D(fake).float(), ones)
        opt_G.zero_grad(set_to_none=True)
        loss_G.backward()
        opt_G.step()

    for _ in range(3):
        one_step()
    windows = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(steps):
            one_step()
        windows.append((time.perf_counter() - t0) / steps)
    return statistics.median(windows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["dcgan", "resnet", "dcgan64", "resnet64"], choices=list(MODELS))
    ap.add_argument("--width", type=int, default=32, help="g_width = d_width (default: 32, default's)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5, help="steps per timing window")
    ap.add_argument("--channels", type=int, default=3, help="image channels (default: 3)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("MODEL_COST.md")))
    args = ap.parse_args()
    precisions = ["fp32"] + (["bf16"] if resolve_precision("auto", torch.device("cpu")) == "bf16" else [])
    models = list(dict.fromkeys(args.models))
    for m in models:  # every size measured gets its reference, in the same run
        ref = REFERENCE[MODELS[m].size]
        if ref not in models:
            models.insert(0, ref)
    rows, seconds = [], {}
    for precision in precisions:
        for m in models:
            channels = 1 if MODELS[m].size == 28 else args.channels
            seconds[m, precision] = s = step_time(m, args.width, precision, args.steps, args.batch, channels)
            ref = seconds.get((REFERENCE[MODELS[m].size], precision))
            rows.append(f"| {m} | {MODELS[m].size} | {channels} | {precision} | {args.batch / s:.0f} | {s * 1000:.1f} | "
                        f"{ref / s:.2f} |")
            print(rows[-1], flush=True)
    table = "\n".join(["| model | px | channels | precision | images/s | ms per step | speed against the DCGAN of its size |",
                       "|---|---|---|---|---|---|---|", *rows])
    append_result(args.out, "What a training step of each model family costs",
                  "Written by bench/model_cost.py: one BCE step of G and D (Adam, random images, no data loading), "
                  "images/s and the speed against the DCGAN of the same size measured in the same run.",
                  f"\n## {time.strftime('%Y-%m-%d')}: {device_name('cpu')}, torch {torch.__version__}, "
                  f"batch {args.batch}, width {args.width}\n\n{table}\n")
    slowest = min((seconds[REFERENCE[MODELS[m].size], p] / seconds[m, p], m, p) for m, p in seconds)
    print(f"wrote {args.out}; the slowest family runs at {slowest[0]:.2f}x the DCGAN of its size ({slowest[1]}, {slowest[2]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
