"""What `make demo` buys against the labs' loop in the same training time: gankit's `default` preset
trained for `--minutes` (as `make demo` runs it), then the labs' loop (bench/labloop.py, the
dcgan-report settings) for the same training seconds; both judged by the same evaluator
(fid_fmnist5k) and drawn from the same 64 latent vectors, side by side in one figure.

    python bench/demo_vs_labs.py [--minutes 3] [--precision auto] [--seed 0] [--device cpu]
                                 [--figure docs/demo_vs_labs.png] [--out bench/DEMO_VS_LABS.md]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from common import append_result, device_name
from gankit.checkpoint import load_generator
from gankit.config import preset_config
from gankit.latent import sample_images
from gankit.metrics import make_judge
from gankit.runs import image_grid, pyplot, read_stats
from gankit.train import train
from labloop import LabStep, lab_loader, torchvision_root


def lab_for(seconds: float, device: str, seed: int) -> tuple[LabStep, int]:
    """The labs' loop trained for `seconds` of training time: (its step, steps taken)."""
    step, n, spent = LabStep("dcgan", device, seed), 0, 0.0
    loader = lab_loader(torchvision_root(), 128)
    while spent < seconds:
        t0 = time.perf_counter()
        for x, _ in loader:
            step(x)
            n += 1
            if spent + time.perf_counter() - t0 >= seconds:
                break
        spent += time.perf_counter() - t0
    return step, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--precision", default="auto", help="gankit's precision (auto: as `make demo` runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--figure", default=str(Path(__file__).resolve().parents[1] / "docs" / "demo_vs_labs.png"))
    ap.add_argument("--out", default=str(Path(__file__).with_name("DEMO_VS_LABS.md")))
    args = ap.parse_args()
    z = torch.randn(64, 100, generator=torch.Generator().manual_seed(1234)).to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        run = train(preset_config("default", minutes=args.minutes, precision=args.precision, seed=args.seed,
                                  device=args.device, out_dir=tmp, keep=0), progress=False)
        last = read_stats(run, "quality.jsonl")[-1]
        seconds, g_steps, g_fid = last["train_time_s"], last["step"], last["fid_fmnist5k"]
        G = load_generator(run / "generator.safetensors", device=args.device)
        with torch.no_grad():
            g_grid = image_grid(sample_images(G, z), 8)
    lab, l_steps = lab_for(seconds, args.device, args.seed)
    l_fid = make_judge("fashion-mnist", 5000, args.seed + 2, 100, torch.device(args.device))(lab.G)["fid_fmnist5k"]
    with torch.no_grad():
        l_grid = image_grid(sample_images(lab.G, z), 8)

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
    for ax, grid, title in ((axes[0], g_grid, f"gankit `default` ({g_steps} steps)\nfid_fmnist5k {g_fid:.1f}"),
                            (axes[1], l_grid, f"labs' loop ({l_steps} steps)\nfid_fmnist5k {l_fid:.1f}")):
        ax.imshow(grid.permute(1, 2, 0).cpu().numpy())
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"{seconds:.0f} s of training each on {device_name(args.device).split(' (')[0]}; the same 64 z")
    fig.tight_layout(rect=(0, 0, 1, 0.94))  # room for the suptitle above the panel titles
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=80)
    plt.close(fig)
    summary = (f"after {seconds:.0f} s of training: gankit `default` ({args.precision}) fid_fmnist5k {g_fid:.2f} "
               f"in {g_steps} steps, labs' loop {l_fid:.2f} in {l_steps} steps")
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device_name(args.device)}, torch {torch.__version__}, seed {args.seed}\n\n"
            f"`python bench/demo_vs_labs.py --minutes {args.minutes:g} --precision {args.precision} --seed {args.seed} "
            f"--device {args.device}`\n\n{summary}; figure: {Path(args.figure).name}\n")
    append_result(args.out, "make demo against the labs' loop", "Same training seconds, same evaluator, same z; "
                  "measured by bench/demo_vs_labs.py.", text)
    print(summary)


if __name__ == "__main__":
    main()
