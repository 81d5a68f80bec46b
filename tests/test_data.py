from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from gankit.data import EpochSampler, load_split, locate, read_idx, read_idx_pair, to_float, to_uint8
from gankit.errors import DataError

from conftest import tiny_images, write_dataset, write_idx


def test_read_good_and_gzip(tmp_path):
    x, y = tiny_images(10)
    a = read_idx(write_idx(tmp_path / "a", x), 3, (28, 28))
    b = read_idx(write_idx(tmp_path / "b.gz", x, gz=True), 3, (28, 28))
    assert a.shape == (10, 28, 28) and np.array_equal(a, x) and np.array_equal(b, x)
    # compression is judged by content, not by the name
    c = read_idx(write_idx(tmp_path / "c-no-gz-suffix", x, gz=True), 3, (28, 28))
    assert np.array_equal(c, x)


def test_truncated_file_is_refused_with_its_name(tmp_path):
    p = write_idx(tmp_path / "imgs", tiny_images(10)[0])
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"imgs.*truncated"):
        read_idx(p, 3, (28, 28))


def test_truncated_gzip_is_refused(tmp_path):
    p = write_idx(tmp_path / "imgs.gz", tiny_images(10)[0], gz=True)
    p.write_bytes(p.read_bytes()[:-50])
    with pytest.raises(DataError, match="imgs.gz"):
        read_idx(p, 3, (28, 28))


def test_trailing_bytes_are_refused(tmp_path):
    p = write_idx(tmp_path / "imgs", tiny_images(3)[0])
    p.write_bytes(p.read_bytes() + b"\0")
    with pytest.raises(DataError, match="trailing"):
        read_idx(p, 3, (28, 28))


def test_wrong_magic(tmp_path):
    x, y = tiny_images(4)
    labels = write_idx(tmp_path / "labels", y)
    with pytest.raises(DataError, match=r"labels: bad magic number 0x00000801"):
        read_idx(labels, 3, (28, 28))  # a label file where images are expected
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataError, match="bad magic"):
        read_idx(junk, 3, (28, 28))


def test_wrong_item_shape(tmp_path):
    p = write_idx(tmp_path / "imgs", np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"\(32, 32\), expected \(28, 28\)"):
        read_idx(p, 3, (28, 28))


def test_count_mismatch_between_images_and_labels(tmp_path):
    x, y = tiny_images(10)
    xi = write_idx(tmp_path / "imgs", x)
    yl = write_idx(tmp_path / "labels", y[:9])
    with pytest.raises(DataError, match="10 images but .* 9 labels"):
        read_idx_pair(xi, yl)


def test_label_out_of_range(tmp_path):
    x, y = tiny_images(5)
    y[2] = 17
    with pytest.raises(DataError, match="label 17"):
        read_idx_pair(write_idx(tmp_path / "i", x), write_idx(tmp_path / "l", y))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_never_crash(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fuzz") / "f"
    p.write_bytes(data)
    try:
        arr = read_idx(p, 3, (28, 28))
    except DataError:
        return
    assert arr.shape[1:] == (28, 28)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 4), st.integers(1, 40))
def test_fuzz_cut_anywhere(tmp_path_factory, n, cut):
    """A valid file cut at any point is either refused or (cut=0 bytes) read whole."""
    p = write_idx(tmp_path_factory.mktemp("cut") / "f", np.zeros((n, 28, 28), np.uint8))
    raw = p.read_bytes()
    p.write_bytes(raw[:max(0, len(raw) - cut)])
    with pytest.raises(DataError):
        read_idx(p, 3, (28, 28))


@pytest.mark.parametrize("layout", ["flat", "torchvision"])
@pytest.mark.parametrize("gz", [False, True])
def test_locate_layouts(tmp_path, layout, gz):
    write_dataset(tmp_path, n=32, gz=gz, layout=layout)
    images, labels = locate("fashion-mnist", "train", str(tmp_path), download=False)
    assert images.name.startswith("train-images") and labels.name.startswith("train-labels")
    x, y = load_split("fashion-mnist", "train", str(tmp_path))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.uint8 and y.shape == (32,)


def test_env_var_is_used(tmp_path, monkeypatch):
    write_dataset(tmp_path, n=32)
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path))
    assert locate("mnist", "test", None, download=False)[0].parent == tmp_path


def test_missing_root_and_missing_files_explain(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        locate("fashion-mnist", "train", str(tmp_path / "nope"), download=False)
    with pytest.raises(DataError, match=r"not found in .*apt-get install dataset-fashion-mnist"):
        locate("fashion-mnist", "train", str(tmp_path), download=False)


def test_scaling_roundtrip():
    x = torch.arange(256, dtype=torch.uint8)
    f = to_float(x.clone())
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)


def test_sampler_epochs_are_permutations_and_ranks_disjoint():
    s = EpochSampler(1000, 32, seed=3, device=torch.device("cpu"))
    assert s.steps_per_epoch == 31
    epoch0 = torch.cat([s.indices(i) for i in range(31)])
    assert len(set(epoch0.tolist())) == 31 * 32  # no repeats within an epoch
    epoch1 = torch.cat([s.indices(31 + i) for i in range(31)])
    assert not torch.equal(epoch0, epoch1)  # a fresh order every epoch
    assert torch.equal(s.indices(5), EpochSampler(1000, 32, 3, torch.device("cpu")).indices(5))  # pure in (seed, step)
    r0 = EpochSampler(1000, 32, 3, torch.device("cpu"), rank=0, world_size=2)
    r1 = EpochSampler(1000, 32, 3, torch.device("cpu"), rank=1, world_size=2)
    a = torch.cat([r0.indices(i) for i in range(r0.steps_per_epoch)])
    b = torch.cat([r1.indices(i) for i in range(r1.steps_per_epoch)])
    assert not set(a.tolist()) & set(b.tolist())


def test_sampler_refuses_dataset_smaller_than_a_batch():
    with pytest.raises(DataError, match="fewer than one batch"):
        EpochSampler(10, 32, 0, torch.device("cpu"))


def _no_system_data(monkeypatch, tmp_path):
    """Pretend Debian's package is not installed and the cache is empty."""
    import dataclasses
    from gankit import data
    monkeypatch.setitem(data.DATASETS, "fashion-mnist",
                        dataclasses.replace(data.DATASETS["fashion-mnist"], system_dirs=()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_download_fallback_uses_torchvision_layout(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    _no_system_data(monkeypatch, tmp_path)

    class FakeFashionMNIST:  # writes what torchvision's download leaves: ROOT/FashionMNIST/raw/*
        def __init__(self, root, train, download):
            write_dataset(Path(root), n=32, layout="torchvision")

    monkeypatch.setattr(tvd, "FashionMNIST", FakeFashionMNIST)
    images, _ = locate("fashion-mnist", "train")
    assert images == tmp_path / "cache" / "gankit" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"


def test_failed_download_says_how_to_get_the_data(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    _no_system_data(monkeypatch, tmp_path)

    def offline(*a, **k):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tvd, "FashionMNIST", offline)
    with pytest.raises(DataError, match=r"download failed: RuntimeError.*apt-get install dataset-fashion-mnist.*--data-root"):
        locate("fashion-mnist", "train")


def test_sampler_draws_uniformly_chi_square():
    # Which images land in the first batch of an epoch, over 3000 epochs: every one of the 100
    # images should be there equally often (300 times). A biased sampler fails the chi-square test.
    from scipy.stats import chisquare
    s = EpochSampler(100, 10, seed=0, device=torch.device("cpu"))
    counts = torch.bincount(torch.cat([s.indices(e * s.steps_per_epoch) for e in range(3000)]), minlength=100)
    assert counts.sum() == 30000
    assert chisquare(counts.numpy()).pvalue > 1e-3
    # and the sampler's test has teeth: drawing the first 90 images only is caught
    skewed = counts.clone()
    skewed[:90] += skewed[90:].sum() // 90
    skewed[90:] = 0
    assert chisquare(skewed.numpy()).pvalue < 1e-6
