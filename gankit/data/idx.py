"""IDX datasets (Fashion-MNIST, MNIST): a validated parser, where to find the files, and a whole
split as one uint8 tensor.

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

from ..errors import DataError
from ..files import cache_root

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
            import torchvision.datasets as tvd  # (only when the files are nowhere: torchvision takes a second to import)
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
