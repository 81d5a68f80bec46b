"""Image folders: the time to decode a folder of 10k JPEGs into gankit's cache (once), to read the
cache again, and the training images/s of the folder presets from it, in fp32 and in bf16 where the
CPU multiplies in it natively, each against the labs' preset of its size (`faces64` at 64 px,
`faces128` at 128) measured in the same run. With --profile, where a preset's step time goes: the
torch operators taking the most of it (self time, grouped by operator) over a short run.

    python bench/folder.py [--images 10000] [--device cpu] [--steps 12]
    python bench/folder.py --presets faces64 folder64 fastgan64 --profile folder64 fastgan64

The folder is made here: synthetic 178x218 JPEGs (CelebA's aligned size: an ellipse "face" of
random colour on a random background), quality 90. Appends to bench/FOLDER.md.
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

from common import append_result, device_name  # noqa: E402
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


def train_config(preset: str, precision: str, root: Path, out: Path, device: str, steps: int, batch: int | None):
    return preset_config(preset, data_root=str(root), out_dir=str(out), device=device, steps=steps,
                         log_every=max(1, steps // 3), keep=0, precision=precision, eval_every=0,
                         **({"batch_size": batch} if batch else {}))


def train_rate(preset: str, precision: str, root: Path, out: Path, device: str, steps: int, batch: int | None) -> float:
    run = train(train_config(preset, precision, root, out, device, steps, batch), progress=False)
    rows = read_stats(run)
    return statistics.median(r["img_per_s"] for r in rows[1:])


def profile(preset: str, precision: str, root: Path, out: Path, device: str, steps: int, batch: int | None,
            top: int = 8) -> list[tuple[str, float]]:
    """(operator, share of the operators' self time) of the `top` operators of a short run, and
    ('everything else', its share): where a step's time goes. The whole run is profiled: its fixed-z
    grids and checkpoints run operators too (a few G forwards), plots and file writes run none."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        train(train_config(preset, precision, root, out, device, steps, batch), progress=False)
    ops = sorted(((e.key, e.self_cpu_time_total) for e in prof.key_averages()), key=lambda kv: -kv[1])
    total = sum(t for _, t in ops) or 1.0
    shares = [(name, t / total) for name, t in ops[:top]]
    return shares + [("everything else", 1 - sum(s for _, s in shares))]


LABS = {64: "faces64", 128: "faces128"}  # the reference of each size
FOLDER_PRESETS = ["faces64", "faces128", "folder64", "folder128", "fastgan64", "fastgan128"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--batch", type=int, help="training batch (default: each preset's own, 64 for all of these)")
    ap.add_argument("--presets", nargs="+", default=["faces64", "faces128", "folder64", "fastgan64"],
                    choices=FOLDER_PRESETS)
    ap.add_argument("--profile", nargs="*", default=[], choices=FOLDER_PRESETS, help="presets to profile too")
    ap.add_argument("--out", default=str(Path(__file__).with_name("FOLDER.md")))
    args = ap.parse_args()
    presets = list(dict.fromkeys(args.presets))
    for p in list(presets):  # every size measured gets its reference, in the same run
        ref = LABS[preset_config(p, dataset="folder", data_root=".").image_size]
        if ref not in presets:
            presets.insert(0, ref)
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
        for preset in presets:
            for precision in precisions:
                rates[preset, precision] = train_rate(preset, precision, root, runs, args.device, args.steps, args.batch)
                print(f"{preset} {precision}: {rates[preset, precision]:.0f} img/s", flush=True)
        profiles = {p: profile(p, precisions[-1], root, runs, args.device, args.steps, args.batch) for p in args.profile}
    rows = []
    for preset in presets:
        cfg = preset_config(preset, dataset="folder", data_root=".")
        ref = LABS[cfg.image_size]
        cells = " | ".join(f"{rates[preset, p]:.0f} ({rates[preset, p] / rates[ref, 'fp32']:.2f}x)" for p in precisions)
        rows.append(f"| {preset} | {cfg.image_size} | {cfg.model}, widths {cfg.g_width}/{cfg.d_width}, batch "
                    f"{args.batch or cfg.batch_size} | {cells} |")
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device_name(args.device)}, torch {torch.__version__}\n\n"
            f"`python bench/folder.py --images {args.images} --device {args.device} --steps {args.steps}"
            f" --presets {' '.join(args.presets)}" + (f" --profile {' '.join(args.profile)}" if args.profile else "")
            + "`\n\n| what | 64x64 | 128x128 |\n|---|---|---|\n"
            f"| build the cache (decode, resize, crop, save) | {times['build 64']:.1f} s | {times['build 128']:.1f} s |\n"
            f"| read the cache again | {times['reuse 64']:.2f} s | {times['reuse 128']:.2f} s |\n\n"
            "| preset | px | model | " + " | ".join(f"img/s in {p} (x the labs' preset of its size in fp32)"
                                                   for p in precisions)
            + " |\n|---|---|---|" + "---|" * len(precisions) + "\n" + "\n".join(rows) + "\n")
    for preset, shares in profiles.items():
        text += (f"\nWhere {preset}'s time goes ({precisions[-1]}, {args.steps} steps, torch.profiler, operators' self time): "
                 + ", ".join(f"{name} {100 * share:.0f} %" for name, share in shares) + ".\n")
    append_result(args.out, "Image folders: cache and training speed",
                  "Written by bench/folder.py: the folder cache's build and reuse times, and the folder presets' "
                  "training images/s (median of the last 2 of 3 log ticks; the first holds the warm-up) against "
                  "the labs' preset of the same size, measured in the same run.", text)
    print(text)
    print(f"reading the cache is {times['build 64'] / times['reuse 64']:.0f}x (64x64) and "
          f"{times['build 128'] / times['reuse 128']:.0f}x (128x128) faster than decoding the folder")


if __name__ == "__main__":
    main()
