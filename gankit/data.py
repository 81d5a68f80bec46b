"""Datasets: a validated IDX parser, where to find the files, and the whole split as one uint8
tensor on the training device with batches drawn by index.

IDX is LeCun's format for MNIST (http://yann.lecun.com/exdb/mnist/), also used by
Fashion-MNIST (Xiao et al. 2017): a big-endian header (2 zero bytes, a type code, the number of
dimensions, then one 4-byte size per dimension) followed by the data.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataError
from .files import cache_root

IDX_UBYTE = 0x08


def read_idx(path: str | Path, expect_ndim: int, expect_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (gzip-compressed or not, judged by its first bytes).
    Refuses with a DataError naming the file anything that is not exactly a complete IDX file of
    `expect_ndim` dimensions (and trailing dims `expect_shape`)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read or decompress ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    magic = int.from_bytes(raw[:4], "big")
    if zero != 0 or dtype != IDX_UBYTE or ndim != expect_ndim:
        raise DataError(
            f"{path}: bad magic number 0x{magic:08x}; expected 0x{(IDX_UBYTE << 8) | expect_ndim:08x} "
            f"(unsigned bytes, {expect_ndim} dimension{'s' if expect_ndim > 1 else ''}) - is this the right file?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    if expect_shape is not None and tuple(dims[1:]) != tuple(expect_shape):
        raise DataError(f"{path}: items of shape {tuple(dims[1:])}, expected {tuple(expect_shape)}")
    n = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != n:
        what = "truncated" if len(raw) - header < n else "has trailing bytes"
        raise DataError(f"{path}: {what}: header promises {dims[0]} items ({n} data bytes), "
                        f"file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def read_idx_pair(images: Path, labels: Path, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) and labels (N,) from a matching pair of IDX files, cross-checked."""
    x = read_idx(images, 3, (28, 28))
    y = read_idx(labels, 1)
    if len(x) != len(y):
        raise DataError(f"{images} holds {len(x)} images but {labels} holds {len(y)} labels: "
                        "the files do not belong together")
    if len(y) and int(y.max()) >= num_classes:
        raise DataError(f"{labels}: label {int(y.max())} out of range 0..{num_classes - 1}")
    return x, y


# ---- where the files are ------------------------------------------------------------------
@dataclass(frozen=True)
class IdxDataset:
    title: str  # human name
    folder: str  # torchvision's folder name under ROOT (ROOT/<folder>/raw/...)
    system_dirs: tuple[str, ...]  # folders a distribution's package installs the files into
    howto: str  # how to get the files, shown when they are nowhere


SPLIT_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
               "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

DATASETS: dict[str, IdxDataset] = {
    "fashion-mnist": IdxDataset(
        "Fashion-MNIST", "FashionMNIST", ("/usr/share/datasets/fashion-mnist",),
        "On Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist`; elsewhere download the four "
        "files from https://github.com/zalandoresearch/fashion-mnist into a folder and pass "
        "--data-root FOLDER (or set GANKIT_DATA)."),
    "mnist": IdxDataset(
        "MNIST", "MNIST", ("/usr/share/datasets/mnist",),
        "Download the four MNIST IDX files (train-images-idx3-ubyte.gz, ...) into a folder and pass "
        "--data-root FOLDER (or set GANKIT_DATA); with internet access gankit downloads them itself."),
}


def _find_in(root: Path, ds: IdxDataset, split: str) -> tuple[Path, Path] | None:
    for folder in (root / ds.folder / "raw", root):
        pair = []
        for stem in SPLIT_FILES[split]:
            hit = next((folder / (stem + ext) for ext in ("", ".gz") if (folder / (stem + ext)).is_file()), None)
            pair.append(hit)
        if all(pair):
            return pair[0], pair[1]
    return None


def locate(name: str, split: str = "train", data_root: str | None = None,
           download: bool = True) -> tuple[Path, Path]:
    """Paths of (images, labels) for a dataset split. Looks in `data_root` (or $GANKIT_DATA),
    then the system folders of a distribution package, then tries torchvision's download into
    ~/.cache/gankit. The error says how to get the data when all of that fails."""
    ds = DATASETS[name]
    stems = SPLIT_FILES[split]
    root = data_root or os.environ.get("GANKIT_DATA")
    if root:
        root_p = Path(root).expanduser()
        if not root_p.is_dir():
            src = "--data-root" if data_root else "GANKIT_DATA"
            raise DataError(f"{src} {root}: no such folder")
        found = _find_in(root_p, ds, split)
        if found:
            return found
        raise DataError(f"{ds.title} {split} files not found in {root_p}: looked for {stems[0]}[.gz] and "
                        f"{stems[1]}[.gz] there and in {root_p / ds.folder / 'raw'}. {ds.howto}")
    for d in ds.system_dirs:
        found = _find_in(Path(d), ds, split)
        if found:
            return found
    cache = cache_root()
    found = _find_in(cache, ds, split)
    if found:
        return found
    reason = ""
    if download:
        try:
            import torchvision.datasets as tvd
            cls = {"fashion-mnist": tvd.FashionMNIST, "mnist": tvd.MNIST}[name]
            cls(str(cache), train=(split == "train"), download=True)
        except Exception as e:  # no network, a mirror down: say what happened, then how to fix it
            first_line = (str(e).splitlines() or [""])[0][:200]
            reason = f" (download failed: {type(e).__name__}: {first_line})"
        else:
            found = _find_in(cache, ds, split)
            if found:
                return found
    raise DataError(f"{ds.title} not found: no --data-root/GANKIT_DATA, nothing in "
                    f"{', '.join(ds.system_dirs)} or {cache}{reason}. {ds.howto}")


def load_split(name: str, split: str = "train", data_root: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split as uint8 images (N, 1, 28, 28) and int64 labels (N,), on the CPU."""
    images, labels = locate(name, split, data_root)
    x, y = read_idx_pair(images, labels)
    return torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64))


DATASET_CHOICES = (*DATASETS, "folder")  # "folder": any folder of images (gankit.folder)


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8, bilinear with antialiasing (Fashion-MNIST at
    32 or 64 for comparison with the higher-resolution models)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    out = [torch.nn.functional.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
           for c in x.split(4096)]
    return torch.cat(out)


def training_images(cfg, say=print, progress: bool = True) -> torch.Tensor:
    """The training images a resolved Config asks for, as (N, C, S, S) uint8 on the CPU."""
    if cfg.dataset == "folder":
        from .folder import load_folder
        x = load_folder(cfg.data_root, cfg.image_size, cfg.channels, cfg.bad_files,
                        cache_dir=Path(cfg.out_dir) / ".cache", progress=progress, say=say)
        return torch.from_numpy(x)
    x, _ = load_split(cfg.dataset, "train", cfg.data_root)
    return resize_uint8(x, cfg.image_size)


def training_labels(cfg) -> torch.Tensor:
    """The class of each training image (int64 (N,), in training_images' order) for a conditional
    run: the IDX labels, or for a folder each image's sub-folder. Call it after training_images."""
    if cfg.dataset == "folder":
        from .folder import folder_labels
        return torch.from_numpy(folder_labels(cfg.data_root, cfg.image_size, cfg.channels,
                                              cache_dir=Path(cfg.out_dir) / ".cache"))
    _, y = load_split(cfg.dataset, "train", cfg.data_root)
    return y


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1], on whatever device the batch lives."""
    return x_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding to nearest (the inverse of to_float)."""
    return x.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255).to(torch.uint8)


# ---- batches by index ---------------------------------------------------------------------
class EpochSampler:
    """Index batches for step s: epoch e = s // steps_per_epoch draws a permutation of the
    dataset from (seed, e) alone, so any step's batch is a pure function of (seed, step) and
    resuming needs no sampler state. Under DDP each rank takes a disjoint slice
    perm[rank::world]. Incomplete final batches are dropped, as DataLoader(drop_last=True)."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.device = rank, world_size, device
        self.steps_per_epoch = (n // world_size) // batch_size
        if self.steps_per_epoch < 1:
            raise DataError(f"the dataset has {n} images, fewer than one batch of {batch_size} "
                            f"per process ({world_size} process(es)); lower --batch-size")
        self._epoch, self._perm = -1, None

    def permutation(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[self.rank::self.world_size][: self.steps_per_epoch * self.batch_size]

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, self.permutation(epoch).to(self.device)
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]
