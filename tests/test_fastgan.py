"""The fastgan family (gankit.nets.fastgan): its shapes at every size in RGB and grayscale, D's
reconstruction decoders (what they compare, that they learn, that only real images feed them), a
run that resumes bit for bit with DiffAugment and logs the reconstruction, the conditional
(projection) variant, and bad input refused in one line before any work."""
from __future__ import annotations

import json

import pytest
import torch

from gankit.cli import main
from gankit.config import Config, preset_config
from gankit.errors import ConfigError
from gankit.nets import build_models
from gankit.nets.fastgan import _quarters
from gankit.training import train
from gankit.training.checkpoint import load_checkpoint
from test_folder import class_folder
from test_train import assert_same_state


def models(size: int, channels: int = 3, **kw):
    cfg = Config(model=f"fastgan{size}", dataset="folder", data_root="x", channels=channels, g_width=8, d_width=8,
                 **kw).resolved().validate()
    torch.manual_seed(0)
    return build_models(cfg)


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_size_makes_and_judges_its_images(size, channels):
    G, D = models(size, channels)
    x = G(torch.randn(4, 100))
    assert x.shape == (4, channels, size, size) and x.abs().max() <= 1
    assert D(x).shape == (4,)
    assert D.decoders.seen == {}  # nothing kept unless the loop asks (fake images, probes, G's step)
    D.decoders.watching = True
    D(x)
    D.decoders.watching = False
    assert set(D.decoders.seen) == {8, 16}
    loss = D.decoders.loss(x, torch.tensor([0, 1, 2, 3]))
    assert loss.ndim == 0 and loss > 0 and D.decoders.seen == {}


def test_quarters_pick_each_image_its_own_corner():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    q = _quarters(x, 2, torch.tensor([0, 1]), torch.tensor([1, 0]))
    assert torch.equal(q[0], x[0, :, :2, 2:]) and torch.equal(q[1], x[1, :, 2:, :2])


def test_the_decoders_learn_to_reconstruct_what_d_saw():
    """A few Adam steps on the reconstruction alone lower it: the decoders and D's features that
    feed them are trained by it (the crop decoder too: its quarters vary with `corner`)."""
    torch.manual_seed(0)
    _, D = models(32)
    x = torch.nn.functional.interpolate(torch.rand(16, 3, 4, 4) * 2 - 1, size=32, mode="bilinear")  # smooth pictures
    opt = torch.optim.Adam(D.parameters(), 1e-2)
    losses = []
    for step in range(30):
        D.decoders.watching = True
        D(x)
        D.decoders.watching = False
        loss = D.decoders.loss(x, torch.arange(16) % 4)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return class_folder(tmp_path_factory.mktemp("shapes"), per_class=40)


def cfg(folder, out, **kw):
    return preset_config("fastgan32", **{**dict(data_root=str(folder), out_dir=str(out), batch_size=16, log_every=2,
                                                steps=6, epochs=0, minutes=None, precision="fp32", ema=0.9), **kw})


def test_a_run_resumes_bit_for_bit_and_logs_its_reconstruction(folder, tmp_path):
    """DiffAugment and the crop decoder draw from the augmentation stream: 3 steps and a resume to
    6 give what 6 straight give."""
    full = train(cfg(folder, tmp_path / "a"), progress=False)
    part = train(cfg(folder, tmp_path / "b", steps=3), progress=False)
    resumed = train(cfg(folder, tmp_path / "b"), resume=part, progress=False)
    assert_same_state(load_checkpoint(full / "checkpoints" / "last.pt"),
                      load_checkpoint(resumed / "checkpoints" / "last.pt"))
    rows = [json.loads(line) for line in (full / "stats.jsonl").read_text().splitlines()]
    assert all(r["recon"] is not None and r["recon"] > 0 for r in rows)
    none = train(cfg(folder, tmp_path / "c", decoder="none", steps=2), progress=False)
    assert "recon" not in json.loads((none / "stats.jsonl").read_text().splitlines()[0])
    assert not any(k.startswith("decoders.") for k in load_checkpoint(none / "checkpoints" / "last.pt")["D"])


def test_conditional_projection_carries_the_decoders(folder, tmp_path):
    run = train(cfg(folder, tmp_path, conditional=True, d_cond="projection", steps=2), progress=False)
    D = load_checkpoint(run / "checkpoints" / "last.pt")["D"]
    assert any(k.startswith("decoders.image.") for k in D) and any(k.startswith("decoders.crop.") for k in D)
    assert json.loads((run / "stats.jsonl").read_text().splitlines()[-1])["recon"] > 0


@pytest.mark.parametrize("args, message", [
    (["--preset", "default", "--decoder", "image"], "model dcgan has no reconstruction decoder"),
    (["--preset", "fastgan32", "--recon-weight", "-1"], "recon_weight must be a number >= 0"),
    (["--preset", "fastgan32", "--conditional", "--d-cond", "concat"], "use --d-cond projection"),
    (["--preset", "fastgan64", "--image-size", "32"], "model fastgan64 makes 64x64 images, not 32x32"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, folder, tmp_path, capsys):
    code = main(["train", "--data-root", str(folder), "--out-dir", str(tmp_path / "runs"), *args, "--steps", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


def test_r1_with_the_batchnorm_d_is_refused_and_without_it_allowed(folder):
    with pytest.raises(ConfigError, match="BatchNorm discriminator"):
        cfg(folder, "x", objective="rpgan", r1=1.0).resolved().validate()
    cfg(folder, "x", objective="rpgan", r1=1.0, d_norm="none").resolved().validate()
