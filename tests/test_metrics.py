"""Known answers for every metric, and the evaluator's contracts."""

import json

import numpy as np
import pytest
import torch

from gankit.config import preset_config
from gankit.errors import GankitError
from gankit.metrics import METRICS, default_metrics, load_images, protocol, scores
from gankit.metrics.evaluator import Evaluator, embed
from gankit.training import train


def gauss(n, d, mean=0.0, std=1.0, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * std + mean


def test_fid_of_a_set_with_itself_is_zero():
    x = gauss(500, 8)
    assert scores.fid(x, x) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form():
    # For diagonal covariances: ||mu1-mu2||^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) = ... + sum (sqrt s1 - sqrt s2)^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(s1) - np.sqrt(s2)) ** 2).sum()
    assert scores.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    # and estimated from samples it approaches that value
    a = gauss(200000, 3, seed=1) * torch.tensor(np.sqrt(s1)) + torch.tensor(mu1)
    b = gauss(200000, 3, seed=2) * torch.tensor(np.sqrt(s2)) + torch.tensor(mu2)
    assert scores.fid(a, b) == pytest.approx(expected, rel=0.02)


def test_fid_needs_more_samples_than_dimensions():
    with pytest.raises(GankitError, match="more samples than dimensions"):
        scores.fid(gauss(100, 128), gauss(500, 128))


def test_non_finite_and_wrong_shapes_are_refused():
    x = gauss(50, 4)
    x[3, 1] = float("nan")
    with pytest.raises(GankitError, match="non-finite"):
        scores.fid(x, gauss(50, 4))
    with pytest.raises(GankitError, match=r"\(N, D\) feature matrix"):
        scores.kid(gauss(50, 4)[None], gauss(50, 4))


def test_kid_is_unbiased_near_zero_for_identical_distributions():
    a, b = gauss(2000, 16, seed=1), gauss(2000, 16, seed=2)
    mean, std = scores.kid(a, b, subsets=20, subset_size=500)
    assert abs(mean) < 3 * std + 1e-4
    shifted, _ = scores.kid(a, gauss(2000, 16, mean=1.0, seed=3), subsets=20, subset_size=500)
    assert shifted > 10 * max(abs(mean), 1e-4)


def test_kid_of_sets_no_larger_than_a_subset_has_no_spread():
    """At n <= subset_size every subset is the whole set: one value, and no ± made of copies of it."""
    a, b = gauss(300, 16, seed=1), gauss(300, 16, seed=2)
    mean, std = scores.kid(a, b, subsets=20, subset_size=500)
    assert std is None and mean == scores.kid(a, b, subsets=1, subset_size=300)[0]
    assert scores.kid(gauss(600, 16), b, subset_size=300)[1] is not None  # real subsets: a spread


def test_inception_score_extremes():
    uniform = torch.full((1000, 10), 0.1)
    assert scores.inception_score(uniform)[0] == pytest.approx(1.0)
    confident = torch.eye(10).repeat(100, 1)  # perfectly confident, balanced over 10 classes
    mean, std = scores.inception_score(confident)
    assert mean == pytest.approx(10.0, rel=1e-6) and std < 1e-6


def test_precision_recall_density_coverage_of_a_set_against_itself():
    x = gauss(600, 8)
    assert scores.precision_recall(x, x) == (1.0, 1.0)
    density, coverage = scores.density_coverage(x, x)
    assert coverage == 1.0 and density > 0.9


def test_precision_recall_detect_a_missing_mode():
    real = torch.cat([gauss(300, 2, mean=-10.0, seed=1), gauss(300, 2, mean=10.0, seed=2)])
    fake = gauss(600, 2, mean=-10.0, seed=3)  # only one of the two modes
    precision, recall = scores.precision_recall(real, fake)
    assert precision > 0.9 and 0.3 < recall < 0.6
    _, coverage = scores.density_coverage(real, fake)
    assert 0.3 < coverage < 0.6


def test_class_histogram():
    probs = torch.eye(10).repeat(10, 1)
    h = scores.class_histogram(probs)
    assert h["class_entropy"] == pytest.approx(np.log(10)) and h["rarest_class_share"] == pytest.approx(0.1)
    collapsed = scores.class_histogram(torch.eye(10)[[3] * 50])
    assert collapsed["class_entropy"] == 0.0 and collapsed["rarest_class_share"] == 0.0


def test_embedding_is_independent_of_batch_size():
    torch.manual_seed(0)
    model = Evaluator()
    x = torch.rand(300, 1, 28, 28) * 2 - 1
    f1, p1 = embed(model, x, batch=300)
    f2, p2 = embed(model, x, batch=7)
    torch.testing.assert_close(f1, f2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(p1, p2, rtol=1e-4, atol=1e-6)
    assert f1.shape == (300, 128) and p1.shape == (300, 10)


@pytest.mark.parametrize("size", [28, 64])
def test_folding_batchnorm_keeps_the_evaluators_features(size):
    """An evaluator with non-trivial BatchNorm statistics gives the same features and probabilities
    (to float precision) with its norms folded into the convolutions, as load_evaluator returns it."""
    from gankit.metrics.evaluator import fold_batchnorm
    torch.manual_seed(0)
    model = Evaluator(channels=1 if size == 28 else 3, size=size).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2)
            m.weight.data.normal_()
            m.bias.data.normal_()
    x = torch.rand(40, model.channels, size, size) * 2 - 1
    f, p = embed(model, x)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    f2, p2 = embed(folded, x)
    torch.testing.assert_close(f2, f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(p2, p, rtol=1e-4, atol=1e-6)


def test_evaluator_refuses_rgb_and_wrong_sizes():
    with pytest.raises(GankitError, match="grayscale only"):
        embed(Evaluator(), torch.zeros(2, 3, 28, 28))
    with pytest.raises(GankitError, match=r"\(N, 1, 28, 28\)"):
        embed(Evaluator(), torch.zeros(2, 1, 64, 64))
    with pytest.raises(GankitError, match=r"\(N, 3, 64, 64\) images \(or a whole multiple of 64 px"):
        embed(Evaluator(channels=3, size=64), torch.zeros(2, 3, 96, 96))


def test_a_folder_evaluator_averages_larger_images_down_to_its_size():
    """128-px samples scored by a 64-px folder's evaluator: a 2x nearest upscale of an image has the
    same features as the image (averaging 2x2 blocks undoes it)."""
    torch.manual_seed(0)
    model = Evaluator(num_classes=9, channels=3, size=64).eval()
    x = torch.rand(10, 3, 64, 64) * 2 - 1
    f, p = embed(model, x)
    f2, p2 = embed(model, torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    torch.testing.assert_close(f2, f, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(p2, p, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(embed(model, x.flip(-1))[0], f)  # (the features do depend on the image)


def test_fid_is_left_out_of_the_default_metrics_only_where_n_leaves_it_undefined():
    assert "fid" not in default_metrics(128) and "kid" in default_metrics(128)  # 128 features: no covariance
    assert default_metrics(129) == list(METRICS) == default_metrics(84, inception=True)  # (Inception: its own check)


def test_protocol_names():
    assert protocol("fashion-mnist", 10000) == "fmnist10k"
    assert protocol("mnist", 5000) == "mnist5k"
    assert protocol("fashion-mnist", 1234) == "fmnist1234"


def test_image_sources(tmp_path):
    from PIL import Image
    x = torch.randint(0, 256, (12, 28, 28), dtype=torch.uint8)
    np.save(tmp_path / "x.npy", x.numpy())
    torch.save(x.float() / 127.5 - 1, tmp_path / "x.pt")
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(x[i].numpy()).save(folder / f"{i:03d}.png")
    a = load_images(tmp_path / "x.npy", 12)
    b = load_images(tmp_path / "x.pt", 12)
    c = load_images(folder, 12)
    assert a.shape == b.shape == c.shape == (12, 1, 28, 28)
    torch.testing.assert_close(a, c)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    with pytest.raises(GankitError, match="fewer than the 20 asked"):
        load_images(folder, 20)
    rgb = tmp_path / "rgb"  # colour PNGs stay RGB, in channel order
    rgb.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (255, 0, 0)).save(rgb / f"{i}.png")
    r = load_images(rgb, 3)
    assert r.shape == (3, 3, 32, 32) and r[:, 0].min() == 1 and r[:, 1:].max() == -1
    torch.save(x.float(), tmp_path / "bad.pt")
    with pytest.raises(GankitError, match=r"must lie in \[-1, 1\]"):
        load_images(tmp_path / "bad.pt", 12)


@pytest.mark.slow
def test_inception_path_with_a_stand_in_network(stand_in_inception, tmp_path):
    from gankit.metrics import compute_metrics
    x = torch.randint(0, 256, (40, 28, 28), dtype=torch.uint8)
    np.save(tmp_path / "x.npy", x.numpy())
    r = compute_metrics(tmp_path / "x.npy", "fashion-mnist", names=("kid", "is", "precision"), n=40,
                        inception_weights=str(stand_in_inception))
    assert set(r) >= {"kid_inception40", "is_inception40", "precision_inception40"}
    assert not any(k.endswith("fmnist40") for k in r)  # the two scales never mix
    with pytest.raises(GankitError, match="more samples than dimensions"):
        compute_metrics(tmp_path / "x.npy", "fashion-mnist", names=("fid",), n=40,
                        inception_weights=str(stand_in_inception))


def test_inception_weights_file_is_loaded_without_pickles(tmp_path):
    pytest.importorskip("torch_fidelity")  # the file is read only once torch-fidelity is there
    import os
    import pickle

    from gankit.metrics.inception import load_inception

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"w": Exploit()}, protocol=2))
    with pytest.raises(GankitError, match="refused to load as plain tensors"):
        load_inception(bad)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("n, m", [(3000, 2500), (20, 7), (5, 40)])
def test_nearest_distance_and_kth_radius_match_their_definitions(n, m):
    """The blocked nearest distance (cdist's own matrix product, min before the root) and the k-NN
    radius (topk) against torch.cdist(...).min and .kthvalue, on sizes that cross the blocks, and on
    inputs smaller than one block (for which cdist uses its direct formula)."""
    g = torch.Generator().manual_seed(0)
    points, to = torch.randn(n, 128, generator=g).relu(), torch.randn(m, 128, generator=g).relu()
    torch.testing.assert_close(scores.nearest_distance(points, to), torch.cdist(points, to).min(dim=1).values,
                               rtol=1e-6, atol=1e-6)
    radius = torch.cat([torch.cdist(c, points).kthvalue(4, dim=1).values for c in points.split(scores.CHUNK)])
    assert torch.equal(scores._kth_nn_radius(points, 3), radius)


def test_manifold_scores_are_their_definitions_from_shared_distances():
    """Precision, recall, density and coverage from the shared passes equal the same scores written
    out from whole distance matrices and kthvalue (Kynkäänniemi et al. 2019, Naeem et al. 2020)."""
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(700, 16, generator=g), torch.randn(600, 16, generator=g) * 1.2 + 0.3
    rr, ff, fr = torch.cdist(real, real), torch.cdist(fake, fake), torch.cdist(fake, real)
    r3, r5, f3 = rr.kthvalue(4, dim=1).values, rr.kthvalue(6, dim=1).values, ff.kthvalue(4, dim=1).values
    want = {"precision": (fr <= r3[None]).any(1).double().mean().item(),
            "recall": (torch.cdist(real, fake) <= f3[None]).any(1).double().mean().item(),
            "density": (fr <= r5[None]).sum().item() / (5 * len(fake)),
            "coverage": (fr <= r5[None]).any(0).double().mean().item()}
    got = scores.manifold_scores(real, fake)
    assert got == want and 0 < got["recall"] < 1 and 0 < got["coverage"] < 1
    assert scores.precision_recall(real, fake) == (want["precision"], want["recall"])
    assert scores.density_coverage(real, fake) == (want["density"], want["coverage"])


def test_memorisation_catches_a_generator_that_copies_its_training_images():
    """Features of 500 training images and of held-out images from the same distribution: copies of
    the training images (plus a little noise) count as memorised, new draws about 5 % of the time."""
    from gankit.metrics.scores import memorisation
    g = torch.Generator().manual_seed(0)
    train, heldout, new = (torch.randn(n, 16, generator=g) for n in (500, 1000, 1000))
    copies = train[torch.randint(0, 500, (1000,), generator=g)] + 0.01 * torch.randn(1000, 16, generator=g)
    share_copies, threshold = memorisation(train, heldout, copies)
    share_new, same_threshold = memorisation(train, heldout, new)
    assert share_copies > 0.99 and threshold == same_threshold
    assert 0.02 < share_new < 0.09  # 0.05 by construction, up to sampling noise
    with pytest.raises(GankitError, match="non-finite"):
        memorisation(train, heldout, torch.full((4, 16), float("nan")))


def test_eval_scores_memorisation_against_the_runs_subset(tiny_root, tmp_path):
    """A run on a subset: eval compares its samples with the subset's images (subset.json), and
    images copied from that subset count as memorised."""
    from gankit.metrics import compute_metrics
    from gankit.data import load_split, to_float
    run = train(preset_config("default", data_root=str(tiny_root), out_dir=str(tmp_path), batch_size=16, steps=2,
                              eval_every=0, subset=64, precision="fp32"), progress=False)
    indices = torch.tensor(json.loads((run / "subset.json").read_text())["indices"])
    x_train = to_float(load_split("fashion-mnist", "train", str(tiny_root))[0])
    kw = dict(reference="fashion-mnist", names=["memorisation"], n=64, data_root=str(tiny_root))
    copied = compute_metrics(x_train[indices], trained_on=("fashion-mnist", indices), **kw)
    assert copied["memorised_fmnist64"] == 1.0
    other = compute_metrics(x_train[indices], trained_on=("fashion-mnist", torch.arange(192, 256)), **kw)
    assert other["memorised_fmnist64"] < 1.0  # (the same images, judged against another training set)
    sampled = compute_metrics(run, **kw)  # the run folder: its subset read from subset.json
    assert 0 <= sampled["memorised_fmnist64"] <= 1 and sampled["memorised_fmnist64_threshold"] > 0


def test_reference_features_of_a_prefix_come_from_the_cached_entries_of_its_split(tmp_path, monkeypatch):
    """The first 1,000 training images' features read from the cached entry of the first 2,000 (what
    `gankit eval` does for the real-data floor after memorisation embedded the whole split), and the
    first 2,000's made from a cached 1,000 and the next 1,000 embedded, are the same bits as each
    computed on its own, and nothing is embedded twice."""
    from conftest import write_dataset
    from gankit.metrics import reference_features
    from gankit.metrics.reference import feature_network
    root = str(write_dataset(tmp_path / "data", n=2000))
    embed_fn, card, _ = feature_network("fashion-mnist", None, "cpu")
    calls = []

    def counted(x):
        calls.append(len(x))
        return embed_fn(x)

    def features(cache, *counts):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / cache))
        return [reference_features("fashion-mnist", "train", n, counted, card, root) for n in counts]
    alone1, extended = features("a", 1000, 2000)  # 1,000 on their own, then 1,000 more
    alone2, sliced = features("b", 2000, 1000)  # 2,000 on their own, then their first 1,000
    assert calls == [1000, 1000, 2000]
    for a, b in ((alone1, sliced), (alone2, extended)):
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert sliced[0].shape == (1000, 128) and extended[0].shape == (2000, 128)
