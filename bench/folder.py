"""Image folders: the time to decode a folder of 10k JPEGs into gankit's cache (once), to read the
cache again, and training images/s of the faces64 and faces128 presets from it.

    python bench/folder.py [--images 10000] [--device cpu] [--steps 30]

The folder is made here: synthetic 178x218 JPEGs (CelebA's aligned size: an ellipse "face" of
random colour on a random background), quality 90. Writes bench/FOLDER.md.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from common import device_name  # noqa: E402
from gankit.config import preset_config  # noqa: E402
from gankit.device import native_bf16  # noqa: E402
from gankit.data.folder import load_folder  # noqa: E402
from gankit.training import train  # noqa: E402
from gankit.runs import read_stats  # noqa: E402


def make_images(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        im = Image.new("RGB", (178, 218), tuple(int(v) for v in rng.integers(0, 256, 3)))
        d = ImageDraw.Draw(im)
        x0, y0 = int(rng.integers(20, 50)), int(rng.integers(30, 70))
        d.ellipse((x0, y0, 178 - x0, 218 - y0 + 20), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        sub = root / f"{i // 1000:02d}"
        sub.mkdir(exist_ok=True)
        im.save(sub / f"{i:06d}.jpg", quality=90)


def train_rate(preset: str, precision: str, root: Path, out: Path, device: str, steps: int, batch: int) -> float:
    cfg = preset_config(preset, data_root=str(root), out_dir=str(out), device=device, steps=steps,
                        log_every=max(1, steps // 3), keep=0, precision=precision, batch_size=batch)
    run = train(cfg, progress=False)
    rows = read_stats(run)
    return statistics.median(r["img_per_s"] for r in rows[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, default=64, help="training batch (the faces presets' 64)")
    ap.add_argument("--presets", nargs="+", default=["faces64", "faces128"], choices=["faces64", "faces128"])
    ap.add_argument("--out", default=str(Path(__file__).with_name("FOLDER.md")))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, cache, runs = Path(tmp) / "faces", Path(tmp) / "cache", Path(tmp) / "runs"
        root.mkdir()
        make_images(root, args.images)
        times = {}
        for size in (64, 128):
            t0 = time.perf_counter()
            load_folder(root, size, 3, cache_dir=cache, progress=False, say=lambda m: None)
            times[f"build {size}"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            load_folder(root, size, 3, cache_dir=cache, progress=False, say=lambda m: None)
            times[f"reuse {size}"] = time.perf_counter() - t0
            print(f"{size}: cache built in {times[f'build {size}']:.1f} s, read again in {times[f'reuse {size}']:.2f} s",
                  flush=True)
        rates = {}
        precisions = ("fp32", "bf16") if native_bf16(torch.device(args.device)) else ("fp32",)
        for preset in args.presets:
            for precision in precisions:
                rates[preset, precision] = train_rate(preset, precision, root, runs, args.device, args.steps, args.batch)
                print(f"{preset} {precision}: {rates[preset, precision]:.0f} img/s", flush=True)
    device = device_name(args.device)
    text = (f"# Image folders: cache and training speed\n\nMeasured by `python bench/folder.py --images {args.images} "
            f"--device {args.device} --steps {args.steps}` on {time.strftime('%Y-%m-%d')}: {device}, torch "
            f"{torch.__version__}. {args.images} synthetic 178x218 JPEGs; decoding uses one process per core.\n\n"
            "| what | 64x64 | 128x128 |\n|---|---|---|\n"
            f"| build the cache (decode, resize, crop, save) | {times['build 64']:.1f} s | {times['build 128']:.1f} s |\n"
            f"| read the cache again | {times['reuse 64']:.2f} s | {times['reuse 128']:.2f} s |\n"
            + "".join(f"| training img/s, faces64 / faces128 preset, batch {args.batch}, precision {p} | "
                      f"{rates.get(('faces64', p), float('nan')):.0f} | {rates.get(('faces128', p), float('nan')):.0f} |\n"
                      for p in precisions)
            + f"\nTraining rates: median of the last 2 of 3 log ticks of {args.steps // 3} steps (the first holds the "
              f"warm-up); bf16 (autocast) only where the device does it natively.\n")
    Path(args.out).write_text(text)
    print(text)
    print(f"reading the cache is {times['build 64'] / times['reuse 64']:.0f}x (64x64) and "
          f"{times['build 128'] / times['reuse 128']:.0f}x (128x128) faster than decoding the folder")


if __name__ == "__main__":
    main()
