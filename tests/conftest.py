"""Shared test helpers: IDX files written by the tests themselves and a tiny dataset root."""
from __future__ import annotations

import gzip
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from shared import shared_folder


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """Write an unsigned-byte IDX file (gzip-compressed when gz)."""
    array = np.asarray(array, dtype=np.uint8)
    raw = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def tiny_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 images of bright rectangles of 10 sizes (the label), on a dark background."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28), np.uint8)
    y = rng.integers(0, 10, n).astype(np.uint8)
    for i in range(n):
        h = 6 + 2 * int(y[i])
        r, c = rng.integers(0, 28 - h + 1, 2)
        x[i, r:r + h, c:c + max(4, h // 2)] = 200 + rng.integers(0, 56)
    return x, y


def write_dataset(root: Path, n: int = 256, gz: bool = False, layout: str = "flat") -> Path:
    """A Fashion-MNIST-shaped dataset of n tiny images under root (flat or torchvision layout)."""
    folder = root / "FashionMNIST" / "raw" if layout == "torchvision" else root
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for split, count in (("train", n), ("t10k", max(n // 4, 16))):
        x, y = tiny_images(count, seed=0 if split == "train" else 1)
        write_idx(folder / f"{split}-images-idx3-ubyte{ext}", x, gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte{ext}", y, gz)
    return root


def png_bomb(path: Path, side: int = 30_000) -> Path:
    """A small PNG whose header claims side x side pixels (30,000 x 30,000: 900 million, over Pillow's
    decompression-bomb limit); its pixel data is a stub, as nothing should ever decode it."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def free_port() -> int:
    """A TCP port nobody listens on now: torchrun's rendezvous in tests that may run beside each
    other (pytest -n), where a port derived from the pid could be taken by the other worker."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("tinydata"), n=256)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    """A short run of the default preset on the real Fashion-MNIST (60 steps, with its EMA), trained
    once per session for every worker; each test module gets its own copy to write studies into."""
    import shutil

    from gankit.config import preset_config
    from gankit.training import train

    def make(folder: Path) -> None:
        train(preset_config("default", out_dir=str(folder), steps=60, log_every=20, eval_every=0), progress=False)
    run = next(p for p in shared_folder(tmp_path_factory, "real-run", make).iterdir() if p.is_dir())
    return Path(shutil.copytree(run, tmp_path_factory.mktemp("real-run") / run.name,
                                ignore=shutil.ignore_patterns(".*")))  # (.*: atomic writes' temporaries)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    # gankit caches under XDG_CACHE_HOME; the tests use their own, one per worker (evaluators that
    # tests train land there), except for the reference features: those depend only on what made
    # them, so every worker of the session (and the gankit processes tests start) shares one folder,
    # and the first to need an entry computes it (the 60,000 training images' features: ~45 s).
    import os
    old = os.environ.get("XDG_CACHE_HOME")
    cache = tmp_path_factory.mktemp("cache")
    reference = shared_folder(tmp_path_factory, "reference-cache", lambda folder: None)
    (cache / "gankit").mkdir()
    (cache / "gankit" / "reference").symlink_to(reference, target_is_directory=True)
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield
    if old is None:
        del os.environ["XDG_CACHE_HOME"]
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.fixture(autouse=True)
def _cpu_unless_cuda_test(request, monkeypatch):
    # The suite checks the CPU path (bit-exact resumes, channels_last's auto rule, the bf16 probe):
    # on a machine with a GPU, `--device auto` must not move it there. tests/test_cuda.py alone
    # runs on the GPU. (The variable also hides it from the gankit processes tests start.)
    if request.node.path.name != "test_cuda.py":
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture(autouse=True)
def _no_env_data_root(monkeypatch):
    # A developer's GANKIT_DATA must not change what the tests read.
    monkeypatch.delenv("GANKIT_DATA", raising=False)


@pytest.fixture(scope="session")
def stand_in_inception(tmp_path_factory):
    """torch-fidelity's InceptionV3 with random weights saved as a state dict: the real Inception
    weights cannot be downloaded here, so this checks the code path, not the numbers."""
    tfe = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    orig_load, orig_url = tfe.FeatureExtractorInceptionV3.load_state_dict, tfe.load_state_dict_from_url
    tfe.load_state_dict_from_url = lambda *a, **k: {}
    tfe.FeatureExtractorInceptionV3.load_state_dict = lambda self, sd, *a, **k: None
    try:
        torch.manual_seed(0)
        model = tfe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    finally:
        tfe.FeatureExtractorInceptionV3.load_state_dict, tfe.load_state_dict_from_url = orig_load, orig_url
    path = tmp_path_factory.mktemp("inception") / "stand_in.pt"
    torch.save(model.state_dict(), path)
    return path
