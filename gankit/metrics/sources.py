"""Where the images to score come from: a run folder or generator file (sampled from a seed), a
folder of PNGs, or an .npy/.pt tensor."""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..data import to_float
from ..data.images import ImageTooLarge, open_image
from ..errors import GankitError
from ..export import generator_files, load_generator
from ..sample import balanced_labels, generate, z_from_seed


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_images(source: str | Path, n: int, seed: int = 0, ema: bool | None = None,
                device: str = "cpu") -> torch.Tensor:
    """n images (N, C, H, W) in [-1, 1] from a run folder or generator file (sampled with `seed`),
    a folder of PNGs, or an .npy/.pt tensor (uint8 in [0, 255] or float in [-1, 1])."""
    return load_labelled_images(source, n, seed, ema, device).x


class Labelled(NamedTuple):
    """Images to score: x (N, C, H, W) in [-1, 1]; y the class each was made for (a conditional
    generator, every class equally often; else None); weights the generator's that made them
    ("G_ema" or "G"; None for images read from files)."""
    x: torch.Tensor
    y: torch.Tensor | None
    weights: str | None


def load_labelled_images(source: str | Path, n: int, seed: int = 0, ema: bool | None = None,
                         device: str = "cpu") -> Labelled:
    """load_images, with the classes and the weights that made them (Labelled)."""
    p = Path(source)
    if not p.exists():
        raise GankitError(f"{p}: no such run, generator, image folder or tensor file")
    if p.suffix == ".safetensors" or (p.is_dir() and (p / "generator.safetensors").exists()):
        G = load_generator(p, ema=ema, device=device)
        y = balanced_labels(n, G.num_classes) if G.num_classes else None
        return Labelled(generate(G, z_from_seed(seed, n, G.z_dim), y=y), y, G.weights)
    return Labelled(_load_files(p, n), None, None)


def _load_files(p: Path, n: int) -> torch.Tensor:
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise GankitError(f"{p}: no images (PNG, JPEG, BMP, WebP) and no generator.safetensors in it")
        if len(files) < n:
            raise GankitError(f"{p}: {len(files)} images, fewer than the {n} asked (--n)")
        arrays, mode = [], None
        for f in files[:n]:
            try:
                with open_image(f) as im:
                    if mode is None:  # the first image decides: grayscale stays 1 channel, colour is RGB
                        mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                    arrays.append(np.asarray(im.convert(mode)))
            except ImageTooLarge:
                raise
            except Exception as e:
                raise GankitError(f"{f}: cannot read image ({type(e).__name__})") from None
        if len({a.shape for a in arrays}) > 1:
            raise GankitError(f"{p}: images of different sizes ({sorted({a.shape for a in arrays})[:3]}); "
                              f"metrics need one size")
        x = torch.from_numpy(np.stack(arrays))
        return to_float(x[:, None] if mode == "L" else x.permute(0, 3, 1, 2).contiguous())
    if p.suffix in (".npy", ".pt"):
        x = read_tensor_file(p)
        if len(x) < n:
            raise GankitError(f"{p}: {len(x)} images, fewer than the {n} asked (--n)")
        x = x[:n]
        if x.dtype == torch.uint8:
            return to_float(x.clone())
        x = x.float()
        if not torch.isfinite(x).all():
            raise GankitError(f"{p}: holds non-finite values (nan or inf)")
        if x.min() < -1.001 or x.max() > 1.001:
            raise GankitError(f"{p}: float images must lie in [-1, 1] (got {x.min():.3g}..{x.max():.3g}); "
                              f"save uint8 in [0, 255] otherwise")
        return x
    raise GankitError(f"{p}: not a run folder, generator.safetensors, image folder, .npy or .pt file")


def read_tensor_file(p: Path) -> torch.Tensor:
    """Images (N, C, H, W) or (N, H, W) from an .npy or .pt file of plain numbers, checked: anything
    else (a pickle, text, a truncated file, another shape or type) is refused naming the file."""
    try:
        x = (torch.from_numpy(np.load(p, allow_pickle=False)) if p.suffix == ".npy"
             else torch.load(p, map_location="cpu", weights_only=True))
    except Exception as e:  # numpy and torch raise many kinds for a file that is not an array of numbers
        raise GankitError(f"{p}: not a {p.suffix} file of images ({type(e).__name__})") from None
    if not isinstance(x, torch.Tensor):
        raise GankitError(f"{p}: holds a {type(x).__name__}, not a tensor of images")
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or min(x.shape[2:]) < 1:
        raise GankitError(f"{p}: images must be (N, C, H, W) or (N, H, W) with C 1 or 3, got shape {tuple(x.shape)}")
    if x.dtype not in (torch.uint8, torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise GankitError(f"{p}: images must be uint8 in [0, 255] or float in [-1, 1], got {x.dtype}")
    return x


def source_shape(source: str | Path) -> tuple[int, int, int] | None:
    """(C, H, W) of the images a source holds or makes, read without making them: a generator's
    description, or a folder's first image; None when only loading the source tells."""
    p = Path(source)
    try:
        if p.suffix == ".safetensors" or p.is_dir() and ((p / "generator.json").exists() or (p / "config.json").exists()):
            meta = json.loads(generator_files(p)[1].read_text())
            return tuple(meta["img_shape"])
        if p.is_dir():
            first = next((f for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES), None)
            if first is not None:
                with open_image(first) as im:
                    return (1 if im.mode in ("1", "L", "LA", "I", "I;16", "F") else 3, im.height, im.width)
    except ImageTooLarge:
        raise  # the folder has images, one of which is refused: say that, not "no images"
    except (OSError, ValueError, KeyError, GankitError):
        return None
    return None


class TrainedOn(NamedTuple):
    """What a generator was trained on: its dataset ('folder' for an image folder), the indices of
    its --subset (None: all of it) and, for a folder, the folder's resolved path (None: not known)
    and the sha256 of the subset's decoded images (None: not recorded)."""
    dataset: str | None
    indices: torch.Tensor | None
    data_root: str | None = None
    images_sha256: str | None = None


def training_set(source) -> TrainedOn | None:
    """What a generator was trained on (TrainedOn) for a run folder, a saved generator or a file of
    one; None for images, tensors, or a source that does not say."""
    if isinstance(source, torch.Tensor):
        return None
    p = Path(source)
    try:
        meta = json.loads(generator_files(p)[1].read_text())
    except (OSError, ValueError, GankitError):
        return None
    folder = p if p.is_dir() else p.parent
    subset = folder / "subset.json"
    record = json.loads(subset.read_text()) if subset.exists() else {}
    indices = torch.tensor(record["indices"]) if record else None
    root = None
    if meta.get("dataset") == "folder" and (folder / "config.json").exists():
        saved = json.loads((folder / "config.json").read_text())["config"].get("data_root")
        root = str(Path(saved).expanduser().resolve()) if saved else None
    return TrainedOn(meta.get("dataset"), indices, root, record.get("images_sha256"))


def estimate_bytes(n: int, shape: tuple[int, int, int], feature_dim: int = 128) -> int:
    """Memory an evaluation of n images needs at least: the images as floats and bytes, the
    features and class probabilities of the samples and of the reference."""
    c, h, w = shape
    return n * c * h * w * 5 + 2 * n * (feature_dim + 1008) * 4
