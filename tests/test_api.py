"""The Python API: gankit.train -> Run, gankit.load -> GANPipeline (sample, generate, z, studies,
save_pretrained / from_pretrained), gankit.evaluate; and that every name in gankit.__all__ is typed
and documented."""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest
import torch

import gankit
from gankit.cli import main
from gankit.data import to_uint8
from gankit.errors import GankitError
from gankit.sample import generate, z_from_seed


@pytest.fixture(scope="module")
def run(tiny_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("api-runs")
    return gankit.train("cdcgan", data_root=str(tiny_root), out_dir=str(out), batch_size=16, log_every=2, steps=6,
                        eval_every=0, precision="fp32", progress=False)


def test_train_returns_a_run(run):
    assert isinstance(run, gankit.Run) and (run.path / "config.json").is_file()
    assert os.fspath(run) == str(run.path)
    assert run.config.preset == "cdcgan" and run.config.steps == 6
    assert run.stats[-1]["step"] == 6


def test_load_samples_as_the_cli_does(run, tmp_path):
    G = gankit.load(run, device="cpu")
    assert isinstance(G, gankit.GANPipeline) and G.num_classes == 10 and G.weights == "G_ema"
    x = G.sample(4, seed=3, classes="sneaker")
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(G.z(3, 4), z_from_seed(3, 4, G.z_dim))
    assert torch.equal(x, generate(G.G, z_from_seed(3, 4, G.z_dim), y=torch.full((4,), 7)))
    # The CLI's `sample` from the same seed and class draws the same pixels (uint8 of the same floats).
    assert main(["sample", str(run.path), "--seed", "3", "--n", "4", "--class", "sneaker", "--out",
                 str(tmp_path / "s")]) == 0
    saved = np.load(tmp_path / "s" / "samples.npy")
    assert np.array_equal(saved, to_uint8(x).numpy())


def test_studies_as_methods(run):
    G = gankit.load(run, device="cpu")
    z = G.z(0, 2)
    assert G.nudge(z, dim=5, delta=2.0, cls=1).shape == (3, 2, 1, 28, 28)
    assert G.sweep(z[0], dims=[0, 1], values=[-2, 0, 2], cls=0).shape == (2, 3, 1, 28, 28)
    assert G.interpolate(z[0], z[1], frames=5, cls=2).shape == (5, 1, 28, 28)
    with pytest.raises(GankitError, match="no such class"):
        G.sample(2, classes="unicorn")
    with pytest.raises(GankitError, match="out of range"):
        G.nudge(z, dim=100, delta=1.0)


def test_a_study_saved_from_python_is_in_the_run_and_its_report(run, tmp_path):
    G = gankit.load(run, device="cpu")
    z = G.z(0, 4)
    folder = G.save_study("nudge", G.nudge(z, dim=3, delta=2.0, cls=1), z=z, dims=[3], deltas=[2])
    assert folder.parent == run.path / "latent" and (folder / "nudge.png").is_file()
    saved = [st for st in gankit.Run(run.path).studies if st.folder == folder]
    assert saved and saved[0].command == "nudge" and saved[0].record["dims"] == [3]
    assert saved[0].record["weights"] == "G_ema" and len(saved[0].record["z"]) == 4
    from gankit.report import build_report
    html = build_report([run.path], tmp_path / "r.html").read_text()
    assert "nudge: dims 3, deltas 2" in html
    with pytest.raises(GankitError, match="expected"):
        G.save_study("nudge", torch.zeros(3, 28, 28))


def test_save_pretrained_round_trip_offline(run, tmp_path):
    G = gankit.load(run, device="cpu")
    folder = G.save_pretrained(tmp_path / "exported")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    again = gankit.GANPipeline.from_pretrained(folder, device="cpu")
    assert torch.equal(again.sample(3, seed=1, classes=[0, 1, 2]), G.sample(3, seed=1, classes=[0, 1, 2]))
    raw = gankit.load(folder, ema=False, device="cpu")
    assert raw.weights == "G" and not torch.equal(raw.sample(2), G.sample(2))
    with pytest.raises(GankitError, match="already holds a saved generator"):
        G.save_pretrained(folder)
    # Every command reads the exported folder like a run folder.
    assert main(["sample", str(folder), "--n", "2", "--out", str(tmp_path / "from-export")]) == 0


def test_evaluate_a_pipeline_and_a_run(run):
    G = gankit.load(run, device="cpu")
    a = gankit.evaluate(G, n=300, metrics=["fid"])  # against the real test images
    b = gankit.evaluate(run, n=300, metrics=["fid"])
    assert a["fid_fmnist300"] == pytest.approx(b["fid_fmnist300"], rel=1e-5)


def test_train_resume_and_config_overrides(tiny_root, tmp_path):
    cfg = gankit.preset_config("lab04-mlp", data_root=str(tiny_root), out_dir=str(tmp_path), batch_size=16,
                               log_every=2, eval_every=0, steps=4)
    run = gankit.train(cfg, progress=False)
    more = gankit.train(resume=run.path, steps=8, progress=False)
    assert more.path == run.path and more.stats[-1]["step"] == 8


def test_everything_exported_is_typed_and_documented():
    for name in gankit.__all__:
        obj = getattr(gankit, name)
        if name.startswith("__") or isinstance(obj, dict):
            continue
        assert inspect.getdoc(obj), f"gankit.{name} has no docstring"
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            untyped = [p for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty
                       and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
            assert not untyped and sig.return_annotation is not inspect.Signature.empty, name
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                fn = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                if callable(fn) and not attr.startswith("_"):
                    assert inspect.getdoc(fn), f"gankit.{name}.{attr} has no docstring"
