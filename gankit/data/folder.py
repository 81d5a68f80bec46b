"""A folder of images (faces, anything) as one uint8 tensor, decoded once and cached.

Decoding every JPEG every epoch is what makes folder training slow, so the folder is decoded,
converted and resized once, in parallel, into `<cache_dir>/folder-<key>.npy` (N, C, S, S), keyed
by the folder's contents (relative paths, sizes, modification times), the image size, the
channels and the crop. Training then reads that file into memory and samples it on the device.

Geometry follows the DCGAN/CelebA convention (torchvision's Resize(S) + CenterCrop(S)): the
shorter side is scaled to S with an antialiasing bilinear filter, then the centre S x S square
is kept. Modes are converted, never refused: L, P, RGBA, LA, CMYK, 16-bit ... become L (1 channel)
or RGB (3 channels); transparent pixels are composited over black.

A folder too large for memory is refused with the size it would need; a streaming loader for
such folders is not built yet.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..errors import DataError
from ..files import atomic_path, cache_root
from .images import open_image

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not reused
MEMORY_SHARE = 0.5  # refuse a folder whose tensor would need more than this share of free memory


def find_images(root: Path) -> list[Path]:
    """Image files under root, recursively, in a stable (sorted) order; hidden folders skipped."""
    files = [p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
             and not any(part.startswith(".") for part in p.relative_to(root).parts)]
    return sorted(files)


def cache_key(root: Path, files: list[Path], size: int, channels: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{size}|{channels}|center-crop".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def images_sha256(x) -> str:
    """A fingerprint of decoded images (a uint8 tensor): what a run's subset.json records of the
    images it trained on, so a later check of the run against the folder knows whether the folder
    still holds them at the same places."""
    return hashlib.sha256(x.cpu().contiguous().numpy().tobytes()).hexdigest()


def decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One image file -> (C, size, size) uint8; raises on anything unreadable."""
    with open_image(path) as im:
        im.draft("RGB" if channels == 3 else "L", (size, size))  # JPEG: decode at a reduced scale >= size
        im.load()  # decode now: a truncated or corrupt file fails here
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            rgba = im.convert("RGBA")
            im = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
        im = im.convert("RGB" if channels == 3 else "L")
        w, h = im.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


@dataclass(frozen=True)
class Survey:
    """What a folder holds, from the headers of (a spread of) its image files, no pixel decoded:
    how many images, their typical shorter side, how many of the surveyed are smaller than a size,
    and whether they are grayscale."""
    count: int
    surveyed: int
    sides: tuple[int, ...]  # the shorter side of each surveyed image, sorted
    gray: int  # surveyed images in a grayscale mode

    @property
    def side(self) -> int:
        """The median shorter side."""
        return self.sides[len(self.sides) // 2] if self.sides else 0

    @property
    def grayscale(self) -> bool:
        return self.surveyed > 0 and self.gray == self.surveyed

    def smaller_than(self, size: int) -> int:
        return sum(s < size for s in self.sides)

    def notes(self, size: int, channels: int) -> list[str]:
        """What training at size x size with `channels` does to these images, one sentence each:
        upscaling, and a conversion between grayscale and colour."""
        out, n = [], self.smaller_than(size)
        if n:
            share = "all" if n == self.surveyed else f"{n} of the {self.surveyed} surveyed"
            out.append(f"{share} images are smaller than {size}x{size} (the smallest {self.sides[0]} px): upscaled, "
                       f"so samples are no sharper than they are")
        if channels == 3 and self.grayscale:
            out.append("the images are grayscale: converted to 3 equal channels (--channels 1 trains in grayscale)")
        elif channels == 1 and self.gray < self.surveyed:
            share = "the" if self.gray == 0 else f"{self.surveyed - self.gray} of the {self.surveyed} surveyed"
            out.append(f"{share} images are in colour: converted to grayscale (--channels 3 keeps their colour)")
        return out


def survey(root: str | Path, files: list[Path] | None = None, at_most: int = 200) -> Survey:
    """The Survey of a folder's images: the headers of at most `at_most` files spread evenly over
    the sorted list (unreadable ones left out: load_folder names them)."""
    root = Path(root).expanduser()
    files = find_images(root) if files is None else files
    picked = files if len(files) <= at_most else [files[i * len(files) // at_most] for i in range(at_most)]
    sides, gray = [], 0
    for path in picked:
        try:
            with open_image(path) as im:
                sides.append(min(im.size))
                gray += im.mode in GRAY_MODES or (im.mode == "P" and _gray_palette(im))
        except (OSError, DataError, ValueError):
            continue
    return Survey(len(files), len(sides), tuple(sorted(sides)), gray)


def _gray_palette(im: Image.Image) -> bool:
    rgb = (im.getpalette() or [])[:768]
    return bool(rgb) and all(rgb[i] == rgb[i + 1] == rgb[i + 2] for i in range(0, len(rgb) - 2, 3))


def _decode_chunk(args) -> list:
    paths, size, channels = args
    out = []
    for p in paths:
        try:
            out.append(decode(Path(p), size, channels))
        except Exception as e:  # every way a file can be bad: report it with its name, go on
            out.append(f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
    return out


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def available_memory() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62  # unknown: do not refuse


def folder_files(root: str | Path | None, size: int, channels: int) -> list[Path]:
    """The image files load_folder would decode, listed without decoding any: refuses (DataError)
    a missing folder, one without images, and one too large for memory at this size."""
    if root is None:
        raise DataError("--dataset folder needs --data-root DIR, the folder of images")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    files = find_images(root)
    if not files:
        others = sum(1 for p in root.rglob("*") if p.is_file())
        raise DataError(f"{root}: no images found (looked recursively for {', '.join(EXTENSIONS)}; "
                        f"{others} other file(s) there)")
    need = len(files) * channels * size * size
    free = available_memory()
    if need > MEMORY_SHARE * free:
        raise DataError(f"{root}: {len(files)} image files at {channels}x{size}x{size} need {_size(need)} "
                        f"in memory, more than half of the {_size(free)} free. Use a smaller "
                        f"--image-size or a subset of the folder; a streaming loader is not built yet")
    return files


def load_folder(root: str | Path | None, size: int, channels: int, bad_files: str = "skip",
                cache_dir: str | Path | None = None, workers: int | None = None,
                progress: bool = True, say=print) -> np.ndarray:
    """All images under `root` as a (N, C, size, size) uint8 array, from the cache in `cache_dir`
    (default ~/.cache/gankit/folders; training uses runs/.cache) when it is current, else decoded
    in parallel (a progress bar on a terminal) and cached. The folder itself is only read. Unreadable files
    are listed by name and skipped (bad_files='skip') or refused ('fail')."""
    root = Path(root).expanduser() if root is not None else None
    files = folder_files(root, size, channels)
    cache = _cache_path(root, files, size, channels, cache_dir)
    record = cache.with_suffix(".json")
    if cache.is_file() and record.is_file():
        info = json.loads(record.read_text())
        x = np.load(cache)
        say(f"{root}: {len(x)} images at {channels}x{size}x{size} from the cache {cache}"
            + (f" ({len(info['bad'])} unreadable file(s) skipped, listed in {record})" if info["bad"] else ""))
        _check_bad(root, info["bad"], bad_files)
        return x

    workers = workers or max(1, min(os.cpu_count() or 1, 16))
    chunk = max(1, min(256, len(files) // (4 * workers) or 1))
    jobs = [([str(p) for p in files[i:i + chunk]], size, channels) for i in range(0, len(files), chunk)]
    results: list = []
    with tqdm(total=len(files), unit="img", desc=f"decoding {root.name}", disable=not progress) as bar:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                results += _decode_chunk(job)
                bar.update(len(job[0]))
        else:
            with ProcessPoolExecutor(workers) as pool:
                for job, out in zip(jobs, pool.map(_decode_chunk, jobs)):
                    results += out
                    bar.update(len(job[0]))
    bad = [{"file": str(p.relative_to(root)), "error": r} for p, r in zip(files, results) if isinstance(r, str)]
    good = [r for r in results if not isinstance(r, str)]
    if not good:
        raise DataError(f"{root}: none of the {len(files)} image files could be read; first: "
                        f"{bad[0]['file']} ({bad[0]['error']})")
    x = np.stack(good)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        np.save(tmp, x)
    record.write_text(json.dumps({"root": str(root), "images": len(x), "size": size, "channels": channels,
                                  "crop": "resize shorter side + centre crop", "bad": bad}, indent=1) + "\n")
    for note in survey(root, files).notes(size, channels):  # said once: a cached folder is not surveyed again
        say(f"{root}: {note}")
    say(f"{root}: decoded {len(x)} images at {channels}x{size}x{size} into the cache {cache}"
        + (f"; skipped {len(bad)} unreadable file(s): " + ", ".join(b["file"] for b in bad[:10])
           + (" ..." if len(bad) > 10 else "") + f" (all listed in {record})" if bad else ""))
    _check_bad(root, bad, bad_files)  # after caching: a later --bad-files skip needs no second decode
    return x


def _cache_path(root: Path, files: list[Path], size: int, channels: int, cache_dir) -> Path:
    folder = Path(cache_dir) if cache_dir else cache_root("folders")
    return folder / f"folder-{cache_key(root, files, size, channels)}.npy"


def class_folders(root: str | Path | None) -> list[Path]:
    """A conditional run's classes: root's sub-folders, sorted by name (torchvision ImageFolder's
    convention: root/CLASS/.../image.png), hidden ones skipped. Refuses a folder that does not
    follow it, naming what is wrong."""
    if root is None:
        raise DataError("--dataset folder needs --data-root DIR, the folder of images")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if loose:
        raise DataError(f"{root}: {len(loose)} image(s) lie directly in it (e.g. {loose[0]}); a conditional run "
                        f"takes its classes from sub-folders (root/CLASS/image.png): move them into one")
    if len(subs) < 2:
        raise DataError(f"{root}: --conditional needs one sub-folder per class (root/CLASS/image.png, as "
                        f"torchvision's ImageFolder) and at least 2 of them; found {len(subs)}")
    empty = [p.name for p in subs if not find_images(p)]
    if empty:
        raise DataError(f"{root}: the class sub-folder(s) {', '.join(empty[:5])} hold no images; every class "
                        f"needs at least one ({', '.join(EXTENSIONS)})")
    return subs


def folder_labels(root: str | Path, size: int, channels: int, cache_dir: str | Path | None = None) -> np.ndarray:
    """The class index (its sub-folder, see class_folders) of each image load_folder returned, in
    the same order: bad files skipped there are skipped here too. Call it after load_folder."""
    root = Path(root).expanduser()
    classes = {p.name: i for i, p in enumerate(class_folders(root))}
    files = find_images(root)
    bad = {b["file"] for b in json.loads(_cache_path(root, files, size, channels, cache_dir)
                                         .with_suffix(".json").read_text())["bad"]}
    kept = [p.relative_to(root) for p in files if str(p.relative_to(root)) not in bad]
    return np.array([classes[p.parts[0]] for p in kept], dtype=np.int64)


def _check_bad(root: Path, bad: list[dict], policy: str) -> None:
    if bad and policy == "fail":
        listed = "; ".join(f"{b['file']} ({b['error']})" for b in bad[:10]) + (" ..." if len(bad) > 10 else "")
        raise DataError(f"{root}: {len(bad)} unreadable image file(s) and --bad-files fail: {listed}. "
                        f"Remove them or use --bad-files skip")
