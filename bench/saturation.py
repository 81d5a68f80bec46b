"""How far each run's generator drives its output tanh into saturation, where no gradient passes:
the mean and std of the tanh's input over --n samples and the share of pixels beyond ±0.99, for a
fresh G built from the run's config and seed (its initialisation) and for the raw G of the run's
last checkpoint. The first run is the reference.

    python bench/saturation.py runs/recipes-folder/00019-resnet64+rpgan-s0-auto runs/recipes-folder/00018-folder64-s0-auto

Appends to --out (bench/SATURATION.md).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import nn

from common import append_result, device_name

from gankit.config import Config
from gankit.nets import build_models
from gankit.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def tanh_input(G: nn.Module, z: torch.Tensor, *y: torch.Tensor) -> torch.Tensor:
    """What G's last tanh receives for `z` (and a conditional G's classes `y`; eval mode, no gradients)."""
    last = [m for m in G.modules() if isinstance(m, nn.Tanh)][-1]
    seen = []
    handle = last.register_forward_hook(lambda m, args, out: seen.append(args[0].detach().float()))
    try:
        with torch.no_grad():
            G.eval()(z, *y)
    finally:
        handle.remove()
    return seen[-1]


def measure(run: Path, n: int) -> dict:
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    cfg = Config.from_dict(ckpt["config"]).resolved()
    torch.manual_seed(cfg.seed)
    G, _ = build_models(cfg)
    z = torch.randn(n, cfg.z_dim, generator=torch.Generator().manual_seed(0))
    y = (torch.arange(n) % cfg.num_classes,) if cfg.num_classes else ()
    row = {"run": run.name, "model": cfg.model, "step": ckpt["step"]}
    for when in ("init", "end"):
        if when == "end":
            G.load_state_dict(ckpt["G"])
        h = tanh_input(G, z, *y)
        row[when] = (h.mean().item(), h.std().item(), (h.abs() > math.atanh(0.99)).float().mean().item())
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (the first is the reference)")
    ap.add_argument("--n", type=int, default=64, help="samples (fixed z, seed 0)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "SATURATION.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = [measure(run, args.n) for run in args.runs]
    table = "\n".join(
        f"| `{r['run']}` | {r['model']} | {r['step']:,} | "
        + " | ".join(f"{r[w][0]:.2f} ± {r[w][1]:.2f} | {r[w][2]:.1%}" for w in ("init", "end")) + " |" for r in rows)
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {len(rows)} runs\n\n"
            f"Measured by `python bench/saturation.py {' '.join(str(r) for r in args.runs)}` on "
            f"{device_name('cpu')}, torch {torch.__version__}; {args.n} samples (fixed z, seed 0) of each raw G; "
            f"the tanh's input (mean ± std) and the share of pixels beyond ±0.99, for a G freshly built from the "
            f"run's config and seed, and for the run's last checkpoint.\n\n"
            f"| run | model | steps | tanh input at init | saturated at init | tanh input at the end | "
            f"saturated at the end |\n|---|---|---|---|---|---|---|\n{table}\n")
    append_result(args.out, "Saturation of G's output", "Written by bench/saturation.py; newest at the bottom.", text)
    print(text)
    ref = rows[0]
    for r in rows[1:]:
        print(f"{r['run']}: {r['end'][2]:.1%} of pixels saturated at the end ({r['init'][2]:.1%} at initialisation)")
    print(f"{ref['run']} (the reference): {ref['end'][2]:.1%} of pixels saturated at the end "
          f"({ref['init'][2]:.1%} at initialisation)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
