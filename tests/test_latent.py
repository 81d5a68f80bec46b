"""Latent studies: library contracts and one CLI run of each command on a short real run."""
import json

import numpy as np
import pytest
import torch

from gankit import latent as L
from gankit import sample as S
from gankit.export import load_source
from gankit.cli import main
from gankit.errors import GankitError


@pytest.fixture(scope="module")
def run(real_run):
    """A short real Fashion-MNIST run of `default` (60 steps, with EMA), this module's copy."""
    return real_run


@pytest.fixture(scope="module")
def G(run):
    return load_source(run)[0]


def test_sampling_is_batch_independent_and_seeded(G):
    z = S.z_from_seed(7, 64, G.z_dim)
    alone = S.generate(G, z[5:6])
    batch = S.generate(G, z)
    torch.testing.assert_close(alone[0], batch[5], rtol=0, atol=1e-5)
    assert torch.equal(S.z_from_seed(7, 64, G.z_dim), z)


def test_nudge_with_delta_zero_is_the_base(G):
    z = S.z_from_seed(1, 4, G.z_dim)
    ims = L.nudge(G, z, dim=3, delta=0.0)
    assert ims.shape == (3, 4, 1, 28, 28)
    torch.testing.assert_close(ims[0], ims[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(ims[1], S.generate(G, z), rtol=0, atol=1e-6)


def test_sweep_shape_and_values(G):
    z = S.z_from_seed(0, 1, G.z_dim)[0]
    ims = L.sweep(G, z, [2, 9], [-4.0, 0.0, 4.0])
    assert ims.shape == (2, 3, 1, 28, 28)
    z_mid = z.clone()
    z_mid[9] = 0.0
    torch.testing.assert_close(ims[1, 1], S.generate(G, z_mid[None])[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", ["lerp", "slerp"])
def test_interpolation_endpoints(method):
    z0, z1 = torch.randn(100), torch.randn(100)
    path = L.INTERPOLATIONS[method](z0, z1, 7)
    assert path.shape == (7, 100)
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)


def test_slerp_keeps_the_norm_between_equal_norm_vectors():
    z0 = torch.randn(100)
    z1 = torch.randn(100)
    z1 = z1 / z1.norm() * z0.norm()
    norms = L.slerp(z0, z1, 9).norm(dim=1)
    torch.testing.assert_close(norms, torch.full((9,), z0.norm().item()), rtol=1e-4, atol=1e-4)
    assert L.lerp(z0, z1, 9).norm(dim=1)[4] < z0.norm() * 0.95  # lerp cuts through the ball


def test_rank_returns_every_dimension_sorted(G):
    rows = L.rank_dims(G, n=16, delta=2.0)
    assert sorted(r["dim"] for r in rows) == list(range(G.z_dim))
    changes = [r["mean_abs_change"] for r in rows]
    assert changes == sorted(changes, reverse=True) and changes[0] > 0


def test_read_z_formats_and_errors(tmp_path):
    z = torch.randn(3, 100)
    np.save(tmp_path / "z.npy", z.numpy())
    torch.save(z, tmp_path / "z.pt")
    (tmp_path / "z.json").write_text(json.dumps(z[0].tolist()))
    assert torch.equal(S.read_z(tmp_path / "z.npy", 100), z)
    assert torch.equal(S.read_z(tmp_path / "z.pt", 100), z)
    assert S.read_z(tmp_path / "z.json", 100).shape == (1, 100)
    (tmp_path / "short.json").write_text(json.dumps([0.0] * 99))
    with pytest.raises(GankitError, match=r"short.json: latent vectors of shape \(1, 99\)"):
        S.read_z(tmp_path / "short.json", 100)
    (tmp_path / "nan.json").write_text("[" + ",".join(["NaN"] + ["0"] * 99) + "]")
    with pytest.raises(GankitError, match="non-finite"):
        S.read_z(tmp_path / "nan.json", 100)
    (tmp_path / "z.txt").write_text("1")
    with pytest.raises(GankitError, match="unknown z file type"):
        S.read_z(tmp_path / "z.txt", 100)


def _out(run, command):
    folders = sorted((run / "latent").glob(f"{command}-*"))
    assert folders, f"no {command} folder"
    return folders[-1]


def test_cli_sample_and_repeat_from_saved_z(run, tmp_path, capsys):
    assert main(["sample", str(run), "--n", "8", "--seed", "3", "--out", str(tmp_path / "a")]) == 0
    assert main(["sample", str(run), "--z", str(tmp_path / "a" / "z.npy"), "--out", str(tmp_path / "b")]) == 0
    assert main(["sample", str(run / "generator.safetensors"), "--n", "8", "--seed", "3", "--out", str(tmp_path / "c")]) == 0
    a, b, c = ((tmp_path / k / "samples.png").read_bytes() for k in "abc")
    assert a == b == c  # same seed or same saved z -> same PNG bytes
    rec = json.loads((tmp_path / "a" / "sample.json").read_text())
    assert rec["seed"] == 3 and rec["weights"] == "G_ema" and len(rec["z"]) == 8


def test_cli_nudge_sweep_interpolate_arithmetic_rank(run, capsys):
    assert main(["explore", "nudge", str(run), "--dims", "10", "20", "37", "53", "67", "--deltas", "2", "4",
                 "--n", "8", "--seed", "1"]) == 0
    f = _out(run, "nudge")
    assert (f / "dim037_delta4.png").exists() and (f / "combined_delta2.png").exists()
    rec = json.loads((f / "nudge.json").read_text())
    assert rec["dims"] == [10, 20, 37, 53, 67] and len(rec["measurements"]) == 10

    assert main(["explore", "sweep", str(run), "--seeds", "5", "99", "--dims", "5", "15", "--range", "-4", "4",
                 "--frames", "9"]) == 0
    f = _out(run, "sweep")
    assert (f / "base5.png").exists() and (f / "base99.png").exists()
    assert json.loads((f / "sweep.json").read_text())["values"][0] == -4.0

    assert main(["explore", "interpolate", str(run), "--from", "1", "--to", "2", "--frames", "6", "--gif"]) == 0
    f = _out(run, "interpolate")
    assert (f / "strip.png").exists() and (f / "interpolation.gif").exists()

    assert main(["explore", "arithmetic", str(run), "--a", "1", "2", "--b", "3", "--c", "4"]) == 0
    assert (_out(run, "arithmetic") / "arithmetic.png").exists()

    assert main(["explore", "rank", str(run), "--n", "32"]) == 0
    f = _out(run, "rank")
    lines = (f / "rank.csv").read_text().splitlines()
    assert len(lines) == 101 and lines[0].startswith("dim,mean_abs_change")
    assert (f / "rank.png").exists()
    assert "rank: 100 dimensions" in capsys.readouterr().out


def test_cli_errors_exit_2_and_overwrite_nothing(run, tmp_path, capsys):
    assert main(["explore", "nudge", str(run), "--dims", "100"]) == 2
    assert "out of range: this generator has z_dim=100" in capsys.readouterr().err
    assert main(["sample", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("[1, 2, 3]")
    assert main(["sample", str(run), "--z", str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in capsys.readouterr().err
    keep = tmp_path / "full"
    keep.mkdir()
    (keep / "mine.png").write_bytes(b"precious")
    assert main(["sample", str(run), "--out", str(keep)]) == 2
    assert (keep / "mine.png").read_bytes() == b"precious" and len(list(keep.iterdir())) == 1
    assert main(["sample", str(run), "--no-ema", "--n", "0"]) == 2


@pytest.mark.parametrize("argv", [
    ["explore", "nudge", "--dims", "3", "7", "--deltas", "2", "--n", "4", "--seed", "5"],
    ["explore", "sweep", "--seeds", "5", "--dims", "3", "--frames", "5"],
    ["explore", "interpolate", "--from", "1", "--to", "2", "--frames", "5", "--method", "lerp"],
    ["explore", "arithmetic", "--a", "1", "--b", "2", "--c", "3"],
])
def test_same_arguments_give_the_same_png_bytes(run, tmp_path, argv):
    outs = []
    for k in ("x", "y"):
        assert main(argv[:2] + [str(run)] + argv[2:] + ["--out", str(tmp_path / k)]) == 0
        outs.append({p.name: p.read_bytes() for p in sorted((tmp_path / k).glob("*.png"))})
    assert outs[0] and outs[0] == outs[1]
