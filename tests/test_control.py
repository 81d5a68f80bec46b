"""Controllable generation: directions in z (SeFa, PCA, class-guided), their files and their use
in nudge and sweep, and projecting real images into z (gankit invert)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gankit.latent import directions as Dn
from gankit.cli import main
from gankit.config import preset_config
from gankit.errors import GankitError
from gankit.export import load_source
from gankit.latent.inversion import best_random, invert
from gankit.metrics.evaluator import load_evaluator
from gankit.data import load_split, to_float
from gankit.training import train


@pytest.fixture(scope="module")
def run(real_run):
    """A short real Fashion-MNIST run of `default` (60 steps, with EMA), this module's copy."""
    return real_run


@pytest.fixture(scope="module")
def G(run):
    return load_source(run)[0]


def test_sefa_is_the_eigenbasis_of_the_first_layer_with_batchnorm_folded(G):
    found = Dn.sefa(G, 5)
    assert found.vectors.shape == (5, G.z_dim)
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.allclose(found.vectors @ found.vectors.T, torch.eye(5), atol=1e-5)  # orthonormal
    assert found.scores == sorted(found.scores, reverse=True)
    A = Dn.first_weight(G)  # the layer's output for z, up to BatchNorm's shift, is A z
    layer, bn = Dn.first_layer(G)
    z = torch.randn(3, G.z_dim)
    with torch.no_grad():
        out = bn(layer(z[:, :, None, None].to(layer.weight.dtype))).flatten(1)
        shift = bn(layer(torch.zeros(1, G.z_dim, 1, 1))).flatten(1)
    assert torch.allclose(out - shift, z @ A.T, atol=1e-4)
    top = found.vectors[0]
    assert (A @ top).norm() ** 2 == pytest.approx(found.scores[0], rel=1e-4)  # its eigenvalue: the stretch


def test_discovered_directions_change_the_image_more_than_coordinates(G):
    found = Dn.sefa(G, 3)
    coords = torch.eye(G.z_dim)[:3]
    moved = [r["change_per_unit"] for r in Dn.measure(G, found.vectors, n=32)]
    plain = [r["change_per_unit"] for r in Dn.measure(G, coords, n=32)]
    assert max(moved) > max(plain)


def test_pca_directions_are_unit_vectors_ranked_by_variance(G):
    found = Dn.pca(G, 4, n=400)
    assert torch.allclose(found.vectors.norm(dim=1), torch.ones(4), atol=1e-5)
    assert found.scores == sorted(found.scores, reverse=True) and 0 < sum(found.scores) <= 1


def test_set_along_sets_the_coordinate_and_keeps_the_rest(G):
    d = Dn.sefa(G, 1).vectors[0]
    z = torch.randn(G.z_dim)
    zs = Dn.set_along(z, d, [-2.0, 0.0, 3.0])
    assert torch.allclose(zs @ d, torch.tensor([-2.0, 0.0, 3.0]), atol=1e-5)
    rest = zs - (zs @ d)[:, None] * d
    assert torch.allclose(rest, (z - (z @ d) * d).expand(3, -1), atol=1e-5)


def test_directions_cli_files_and_their_use_in_nudge_and_sweep(run, tmp_path, capsys):
    out = tmp_path / "sefa"
    assert main(["explore", "directions", str(run), "--k", "4", "--out", str(out)]) == 0
    record = json.loads((out / "directions.json").read_text())
    assert record["method"] == "sefa" and len(record["vectors"]) == 4 and record["fingerprint"]
    assert (out / "directions.png").exists()
    assert main(["explore", "nudge", str(run), "--direction", f"{out}/directions.json:1", "--deltas", "2",
                 "--n", "2", "--out", str(tmp_path / "nudge")]) == 0
    assert (tmp_path / "nudge" / "direction1_delta2.png").exists()
    assert main(["explore", "sweep", str(run), "--direction", f"{out}/directions.json:0", "--frames", "3",
                 "--out", str(tmp_path / "sweep")]) == 0
    capsys.readouterr()
    bad = [(["explore", "directions", str(run), "--k", "101"], "at most 100 directions"),
           (["explore", "directions", str(run), "--method", "class", "--from", "bag", "--to", "bag"], "the same class"),
           (["explore", "directions", str(run), "--method", "class", "--from", "bag", "--to", "hat"], "--to hat: no such class"),
           (["explore", "sweep", str(run), "--direction", f"{out}/directions.json:9"], "direction 9 out of range"),
           (["explore", "sweep", str(run), "--direction", f"{out}/directions.json"], "give FILE:K"),
           (["explore", "sweep", str(run), "--direction", f"{out}/directions.json:0", "--dims", "1"], "not both")]
    for argv, message in bad:
        assert main(argv + ["--out", str(tmp_path / "never")]) == 2, argv
        assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()  # refused before any work


def test_directions_from_other_weights_or_another_z_size_are_refused(run, G, tmp_path):
    found = Dn.sefa(G, 2)
    found.fingerprint = "0" * 16
    path = found.save(tmp_path / "other.json")
    with pytest.raises(GankitError, match="found in other weights"):
        Dn.read_direction(f"{path}:0", G)
    small = Dn.Directions(torch.eye(8)[:2], "sefa", [1.0, 1.0], 8)
    path = small.save(tmp_path / "small.json")
    with pytest.raises(GankitError, match="z of size 8"):
        Dn.read_direction(f"{path}:0", G)
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(GankitError, match="not a directions file"):
        Dn.read_direction(f"{tmp_path / 'junk.json'}:0", G)


def test_inverting_a_generated_image_finds_it_again(G):
    """An image G made has a z that makes it: inversion gets much closer than the best random z."""
    evaluator, _ = load_evaluator("fashion-mnist", "cpu")
    target = G(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(5))).detach()
    found = invert(G, target, evaluator, iterations=60, restarts=2, pool=256)
    baseline = best_random(G, target, evaluator, n=256)
    assert found.pixel_mse.mean() < 0.5 * baseline.pixel_mse.mean()
    assert found.same_class.all()


def test_invert_cli_writes_a_z_file_that_sample_redraws_bit_for_bit(run, tmp_path, capsys):
    out = tmp_path / "inv"
    assert main(["invert", str(run), "--dataset-split", "test", "--n", "3", "--iterations", "5", "--restarts", "1",
                 "--out", str(out)]) == 0
    record = json.loads((out / "invert.json").read_text())
    assert len(record["images"]) == 3 and {"pixel_mse", "feature_distance", "same_class"} <= set(record["images"][0])
    assert main(["sample", str(run), "--z", str(out / "z.npy"), "--out", str(tmp_path / "redraw")]) == 0
    G = load_source(run)[0]
    z = torch.from_numpy(np.load(out / "z.npy"))
    from gankit.latent.inversion import score
    x = to_float(load_split("fashion-mnist", "test")[0][:3])
    redrawn = np.load(tmp_path / "redraw" / "samples.npy")
    from gankit.data import to_uint8
    assert np.array_equal(redrawn, to_uint8(score(G, x, z, None).images).numpy())
    capsys.readouterr()
    (tmp_path / "note.png").write_text("not an image")
    (tmp_path / "empty").mkdir()
    for argv, message in [([str(tmp_path / "note.png")], "not an image that can be read"),
                          ([str(tmp_path / "empty")], "no images in this folder"),
                          (["--dataset-split", "test", "--n", "0"], "--n must be >= 1"),
                          ([], "give images to invert")]:
        assert main(["invert", str(run), *argv, "--out", str(tmp_path / "never")]) == 2, argv
        assert message in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_invert_converts_rgb_and_other_sizes(run, tmp_path):
    from PIL import Image
    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "red.png")
    assert main(["invert", str(run), str(tmp_path / "red.png"), "--iterations", "2", "--restarts", "1",
                 "--out", str(tmp_path / "inv")]) == 0
    assert np.load(tmp_path / "inv" / "z.npy").shape == (1, 100)


def test_the_python_api_finds_directions_edits_and_inverts(run):
    import gankit
    pipe = gankit.load(run, device="cpu")
    found = pipe.directions("sefa", k=3)
    z = pipe.z(seed=0, n=2)
    edited = pipe.edit(z, found.vectors[0], amounts=[-3, 0, 3])
    assert edited.shape == (3, 2, 1, 28, 28) and torch.equal(edited[1], pipe.generate(z))
    x = pipe.sample(2, seed=9)
    result = pipe.invert(x, iterations=5, restarts=1)
    assert torch.equal(pipe.generate(result.z), result.images)  # the z redraws its reconstruction
    with pytest.raises(GankitError, match="this generator makes"):
        pipe.invert(torch.zeros(1, 3, 28, 28))


def test_a_conditional_run_inverts_with_the_class_inferred(tiny_root, tmp_path, capsys):
    run = train(preset_config("cdcgan", data_root=str(tiny_root), out_dir=str(tmp_path / "runs"), batch_size=16,
                              steps=4, eval_every=0), progress=False)
    out = tmp_path / "inv"
    assert main(["invert", str(run), "--dataset-split", "test", "--n", "2", "--iterations", "2", "--restarts", "1",
                 "--out", str(out)]) == 0
    labels = np.load(out / "labels.npy")
    assert labels.shape == (2,) and all(0 <= c < 10 for c in labels)
    record = json.loads((out / "invert.json").read_text())
    assert all("class" in image for image in record["images"])
    assert "labels.npy" in capsys.readouterr().out
    assert main(["explore", "directions", str(run), "--class", "3", "--k", "2", "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "directions.json").read_text())["details"]["class"]
