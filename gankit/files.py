"""Small file mechanisms used across gankit, each in one place: atomic writes (a temporary file
in the same folder, then `os.replace`, which is atomic on POSIX, so a reader never sees half a
file and a failed write leaves the old one), file hashes, and the user's cache folder."""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Iterator


def cache_root(*parts: str) -> Path:
    """`$XDG_CACHE_HOME/gankit/...` (default ~/.cache/gankit/...): datasets, reference features,
    decoded image folders."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).joinpath("gankit", *parts)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path`; whatever is written there replaces `path` when the
    block ends without error, and is removed when it fails (the previous `path` stays intact).
    The temporary name keeps `path`'s suffix (np.save and safetensors look at it) and holds the
    process id, so two processes writing the same cache file never share a temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if fsync:
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
