"""Class-conditional GANs: models of every family with each way D sees the class, training and
exact resume, per-class metrics, latent studies per class, folders with one class per sub-folder,
and the refusals."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.export import load_generator
from gankit.training.checkpoint import load_checkpoint
from gankit.cli import main
from gankit.nets.conditional import ConditionalDiscriminator, ConditionalGenerator, D_CONDITIONING
from gankit.config import Config, preset_config
from gankit.data import EpochSampler, load_split, training_images, training_labels
from gankit.errors import ConfigError, DataError
from gankit.data.folder import folder_labels, load_folder
from gankit.metrics import METRICS, compute_metrics
from gankit.nets import MODELS, build_models
from gankit.training import train
from shared import first_step_taken
from test_train import assert_same_state, tiny_cfg

FAMILIES = [k for k, v in MODELS.items() if v.size <= 32]  # the 64/128 ones share dcgan32's builder


@pytest.mark.parametrize("model", FAMILIES)
@pytest.mark.parametrize("d_cond", list(D_CONDITIONING))
def test_every_family_takes_the_class_in_g_and_d(model, d_cond):
    size = MODELS[model].size
    # (the label map joined to the image would be reconstructed too: a fastgan D takes it without decoders)
    extra = {"decoder": "none"} if model.startswith("fastgan") and d_cond == "concat" else {}
    cfg = Config(model=model, conditional=True, d_cond=d_cond, image_size=size, **extra).resolved().validate()
    assert cfg.num_classes == 10
    torch.manual_seed(0)
    G, D = build_models(cfg)
    assert isinstance(G, ConditionalGenerator) and isinstance(D, ConditionalDiscriminator)
    assert "Embedding(10, 10)" in str(G)  # print(G) shows the class embedding
    G = first_step_taken(G)  # (the resnet family's G starts flat grey: every class the same image)
    G.eval(), D.eval()
    z = torch.randn(4, 100)
    a, b = torch.tensor([0, 1, 2, 3]), torch.tensor([9, 8, 7, 6])
    x = G(z, a)
    assert x.shape == (4, 1, size, size)
    assert not torch.allclose(x, G(z, b)), "the class must change G's image"
    out = D(x, a)
    if d_cond == "acgan":
        assert out.shape == (4, 11) and "Linear" in str(D.classifier)
    else:
        assert out.shape == (4,) and "Embedding" in str(D)
        assert not torch.allclose(out, D(x, b)), "the class must change D's verdict"
    with pytest.raises(ValueError, match="class-conditional"):
        G(z)


@pytest.mark.parametrize("d_cond, objective, extra", [
    ("projection", "bce", {}),
    ("concat", "hinge", {}),
    ("acgan", "bce", {}),
    ("projection", "wgan-gp", {"d_norm": "layer", "n_critic": 2}),
    ("acgan", "wgan-gp", {"d_norm": "layer"}),
    ("concat", "wgan", {"n_critic": 2}),
])
def test_conditional_training_with_each_d_and_objective(tiny_root, tmp_path, d_cond, objective, extra):
    run = train(tiny_cfg(tiny_root, tmp_path, "cdcgan", steps=6, d_cond=d_cond, objective=objective,
                         precision="fp32", **extra))
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss_D"]) and np.isfinite(r["loss_G"]) for r in rows)
    meta = json.loads((run / "generator.json").read_text())
    assert meta["num_classes"] == 10 and meta["class_names"][7] == "sneaker"
    # The per-epoch grid: one row per z, one column per class (64 z -> 6 rows of 10 classes).
    with Image.open(run / "images" / "step_00000006.png") as im:
        assert im.size == (2 + 10 * 30, 2 + 6 * 30)
    assert "Embedding(10, 10)" in (run / "models.txt").read_text()


def test_conditional_resume_is_exact(tiny_root, tmp_path):
    """The labels of real and fake batches are part of the resumable state: 10 steps straight ==
    5 steps, then resume to 10, bit for bit."""
    kw = dict(steps=10, precision="fp32", ema=0.9, d_cond="acgan")
    full = train(tiny_cfg(tiny_root, tmp_path / "a", "cdcgan", **kw))
    part = train(tiny_cfg(tiny_root, tmp_path / "b", "cdcgan", **kw), stop_after=5)
    resumed = train(tiny_cfg(tiny_root, tmp_path / "b", "cdcgan", **kw), resume=part)
    assert_same_state(load_checkpoint(full / "checkpoints" / "last.pt"),
                      load_checkpoint(resumed / "checkpoints" / "last.pt"))


def test_real_labels_come_with_their_images(tiny_root):
    """training_labels is in training_images' order, so a sampler index picks an image and its own
    label (the tiny images' rectangle height encodes the label)."""
    cfg = tiny_cfg(tiny_root, "unused", "cdcgan")
    x, y = training_images(cfg, progress=False), training_labels(cfg)
    assert torch.equal(y, load_split("fashion-mnist", "train", str(tiny_root))[1])
    idx = EpochSampler(len(x), 16, 0, torch.device("cpu")).indices(3)
    heights = (x[idx, 0] > 100).any(2).sum(1)  # rows of the bright rectangle
    assert torch.equal(heights, 6 + 2 * y[idx])


def test_class_accuracy_and_per_class_fid(tiny_root, tmp_path):
    run = train(tiny_cfg(tiny_root, tmp_path, "cdcgan", steps=2, precision="fp32"))
    # the real test set: 200 per class (memorisation, which embeds all 60,000 training images, is the tour's)
    names = [m for m in METRICS if m != "memorisation"]
    r = compute_metrics(run, "fashion-mnist", n=2000, data_root=None, names=names)
    acc = r["class_accuracy_fmnist2k"]
    assert 0.0 <= acc <= 1.0 and len(r["class_accuracy_per_class_fmnist2k"]) == 10
    assert abs(np.mean(r["class_accuracy_per_class_fmnist2k"]) - acc) < 1e-9  # balanced classes
    assert len(r["fid_per_class_fmnist2k"]) == 10 and all(f > 0 for f in r["fid_per_class_fmnist2k"])
    # A generator that makes each class's real images is right as often as the evaluator is.
    x, y = load_split("fashion-mnist", "test")
    from gankit.data import to_float
    real = compute_metrics(to_float(x[:2000]), "fashion-mnist", n=2000, labels=y[:2000], names=names)
    assert real["class_accuracy_fmnist2k"] > 0.85


def test_sample_per_class_and_samples_npy(tiny_root, tmp_path, capsys):
    run = train(tiny_cfg(tiny_root, tmp_path / "r", "cdcgan", steps=2, precision="fp32"))
    assert main(["sample", str(run), "--class", "sneaker", "--n", "8", "--out", str(tmp_path / "s")]) == 0
    x = np.load(tmp_path / "s" / "samples.npy")
    assert x.dtype == np.uint8 and x.shape == (8, 1, 28, 28)
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["classes"] == ["sneaker"]
    # the saved z and the class make the same images again; another class makes others
    assert main(["sample", str(run), "--z", str(tmp_path / "s" / "z.npy"), "--class", "7", "--out", str(tmp_path / "t")]) == 0
    assert np.array_equal(np.load(tmp_path / "t" / "samples.npy"), x)
    assert main(["sample", str(run), "--z", str(tmp_path / "s" / "z.npy"), "--class", "bag", "--out", str(tmp_path / "u")]) == 0
    assert not np.array_equal(np.load(tmp_path / "u" / "samples.npy"), x)
    # --class all: one row per class, the same z in each row; labels.npy says which
    assert main(["sample", str(run), "--class", "all", "--n", "3", "--out", str(tmp_path / "all")]) == 0
    xa, ya = np.load(tmp_path / "all" / "samples.npy"), np.load(tmp_path / "all" / "labels.npy")
    assert xa.shape == (30, 1, 28, 28) and list(ya[::3]) == list(range(10))
    assert main(["sample", str(run), "--class", "sneaker", "--n", "3", "--out", str(tmp_path / "s3")]) == 0
    assert np.array_equal(xa[21:24], np.load(tmp_path / "s3" / "samples.npy"))  # the sneaker row
    # latent studies within a class, and between two classes at one z
    assert main(["explore", "nudge", str(run), "--class", "bag", "--dims", "1", "--deltas", "2", "--n", "2",
                 "--out", str(tmp_path / "n")]) == 0
    assert main(["explore", "interpolate", str(run), "--from", "3", "--class", "sneaker", "--to-class", "bag",
                 "--frames", "4", "--out", str(tmp_path / "i")]) == 0
    assert (tmp_path / "i" / "strip.png").exists()
    assert main(["explore", "rank", str(run), "--class", "1", "--n", "4", "--out", str(tmp_path / "k")]) == 0
    capsys.readouterr()
    # the real test set; per class by name (every metric but memorisation, the tour's: it embeds all
    # 60,000 training images, which this test would wait for)
    assert main(["eval", str(run), "--n", "300", "--metrics", "fid", "kid", "is", "precision", "recall", "density",
                 "coverage", "classes"]) == 0
    printed = capsys.readouterr().out
    assert "class accuracy" in printed and "ankle boot" in printed and "every class equally often" in printed
    # refusals: one line each, exit 2, nothing written
    for args, msg in ((["--class", "shoe"], "no such class"), (["--class", "10"], "no such class")):
        assert main(["sample", str(run), *args, "--out", str(tmp_path / "x")]) == 2
        assert msg in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["explore", "nudge", str(run), "--dims", "1", "--out", str(tmp_path / "x")]) == 2
    assert "choose the class" in capsys.readouterr().err


def test_unconditional_runs_refuse_class(tiny_root, tmp_path, capsys):
    run = train(tiny_cfg(tiny_root, tmp_path / "r", steps=2))
    assert main(["sample", str(run), "--class", "sneaker", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unconditional" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()
    G = load_generator(run)
    assert G.num_classes == 0


def test_config_refusals():
    with pytest.raises(ConfigError, match="without --conditional"):
        Config(num_classes=10).resolved().validate()
    with pytest.raises(ConfigError, match="unknown d_cond"):
        Config(conditional=True, d_cond="film").resolved().validate()
    with pytest.raises(ConfigError, match="ac_weight"):
        Config(conditional=True, ac_weight=-1.0).resolved().validate()


def _class_folder(root, classes=("circle", "square"), per_class=10):
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name / "nested").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = np.full((40, 40, 3), 30 + 200 * k, np.uint8)
            a[10:30, 10:30] = rng.integers(0, 256, 3)
            Image.fromarray(a).save(root / name / ("nested" if i % 2 else "") / f"{i}.png")
    (root / classes[0] / "broken.png").write_bytes(b"not a png")  # skipped: labels must stay aligned
    return root


def test_folder_classes_are_its_sub_folders(tmp_path):
    root = _class_folder(tmp_path / "shapes")
    x = load_folder(root, 32, 3, cache_dir=tmp_path / "cache", progress=False, say=lambda m: None)
    y = folder_labels(root, 32, 3, cache_dir=tmp_path / "cache")
    assert len(x) == len(y) == 20 and (y == 0).sum() == 10
    assert np.array_equal(x[:, 0, 0, 0] > 100, y == 1)  # the background encodes the class
    out = tmp_path / "runs"
    assert main(["train", "--preset", "faces64", "--model", "dcgan32", "--image-size", "32", "--conditional",
                 "--data-root", str(root), "--out-dir", str(out), "--steps", "2", "--batch-size", "4"]) == 0
    run = next(out.glob("0*"))
    assert json.loads((run / "generator.json").read_text())["class_names"] == ["circle", "square"]


def test_folder_without_classes_is_refused_before_any_work(tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("RGB", (40, 40)).save(flat / "a.png")
    empty_class = _class_folder(tmp_path / "withempty")
    (empty_class / "triangle").mkdir()
    for root, msg in ((flat, "lie directly in it"), (empty_class, "hold no images")):
        out = tmp_path / ("runs-" + root.name)
        assert main(["train", "--preset", "faces64", "--conditional", "--data-root", str(root),
                     "--out-dir", str(out), "--steps", "1"]) == 2
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1 and not out.exists()
    with pytest.raises(DataError, match="at least 2"):
        only = tmp_path / "one"
        (only / "a").mkdir(parents=True)
        Image.new("RGB", (40, 40)).save(only / "a" / "x.png")
        preset_config("faces64", conditional=True, data_root=str(only))
