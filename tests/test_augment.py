"""Small data: DiffAugment and ADA (every transform differentiable, randomness from the run's noise
stream, ADA's p adapting to r_t and saved in checkpoints), --subset (stratified, the same images for
every seed, refused when it cannot be) and the overfitting monitor (r_t, the held-out gap)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from gankit.cli import main
from gankit.config import preset_config
from gankit.data import subset_indices
from gankit.errors import ConfigError, DataError
from gankit.nets.ada import P_MAX, _rotation, _scaling, _translation, ada_augment, adjust, resample
from gankit.nets.augment import FILL, POLICIES, diffaugment, parse_policy
from gankit.runs import read_stats
from gankit.training import train
from gankit.training.checkpoint import load_checkpoint


def whole_and_resumed(tmp_path, kw: dict, stop_after: int):
    """Train `default` with kw whole, and stopped at `stop_after` then resumed: (the whole run's folder,
    its last checkpoint, the resumed run's), after checking that G and D came out bit for bit the same."""
    full = train(preset_config("default", out_dir=str(tmp_path / "a"), **kw), progress=False)
    part = train(preset_config("default", out_dir=str(tmp_path / "b"), **kw), progress=False, stop_after=stop_after)
    resumed = train(preset_config("default", out_dir=str(tmp_path / "b"), **kw), resume=part, progress=False)
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (full, resumed))
    for net in ("G", "D"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
    return full, a, b


def rand_from(seed: int):
    g = torch.Generator().manual_seed(seed)
    return lambda *shape: torch.rand(*shape, generator=g)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "color,translation,cutout"])
def test_diffaugment_is_differentiable_and_keeps_shape(policy, channels):
    x = (torch.rand(6, channels, 28, 28) * 2 - 1).requires_grad_(True)
    y = diffaugment(x, rand_from(0), parse_policy(policy))
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G learns through it
    assert torch.equal(diffaugment(x, rand_from(0), parse_policy(policy)), y)  # the same draws, the same images


def test_translation_and_cutout_fill_with_the_background():
    x = torch.ones(4, 1, 16, 16)
    moved = POLICIES["translation"][0](x, lambda *s: torch.zeros(*s))  # the largest shift up and left
    assert (moved == FILL).any() and (moved == 1).any()
    cut = POLICIES["cutout"][0](x, lambda *s: torch.full(s, 0.5))
    assert (cut == FILL).sum() == 4 * 8 * 8  # a square of half the side, in each image


def test_unknown_policy_and_bad_subsets_are_refused_before_any_work(tiny_root, tmp_path, capsys):
    with pytest.raises(ConfigError, match="unknown DiffAugment policy saturation"):
        preset_config("default", augment="diffaug", diffaug_policy="saturation").validate()
    with pytest.raises(ConfigError, match="at least one batch"):
        preset_config("default", subset=10).validate()
    for target in ("0", "1", "1.5"):
        assert main(["train", "--augment", "ada", "--ada-target", target, "--dry-run"]) == 2
        assert "ada_target must be between 0 and 1" in capsys.readouterr().err
    assert main(["train", "--augment", "ada", "--ada-speed", "0", "--dry-run"]) == 2
    assert "ada_speed must be a positive number" in capsys.readouterr().err
    assert main(["train", "--data-root", str(tiny_root), "--subset", "100000", "--steps", "1", "--out-dir",
                 str(tmp_path)]) == 2
    assert "--subset 100000: the dataset has 256 images" in capsys.readouterr().err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # no run folder was made


@pytest.mark.parametrize("shape", [(1, 28), (3, 64)])
def test_ada_is_differentiable_exact_at_p_0_and_draws_the_same_numbers_for_every_p(shape):
    C, S = shape
    x = (torch.rand(8, C, S, S) * 2 - 1).requires_grad_(True)
    assert torch.equal(ada_augment(x, rand_from(0), torch.tensor(0.0)), x)  # p = 0: every image untouched
    y = ada_augment(x, rand_from(0), torch.tensor(P_MAX))
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert (y - x).abs().flatten(1).amax(1).gt(1e-3).sum() >= 6  # at P_MAX nearly every image is changed
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G learns through it
    assert torch.equal(ada_augment(x, rand_from(0), torch.tensor(P_MAX)), y)
    counts = []  # the stream advances by the same amount whatever p is (resume and DDP stay in step)
    for p in (0.0, 0.5):
        g = torch.Generator().manual_seed(0)
        ada_augment(x.detach(), lambda *s: torch.rand(*s, generator=g), torch.tensor(p))
        counts.append(torch.rand(1, generator=g))
    assert torch.equal(*counts)


def test_ada_flips_quarter_turns_and_pixel_shifts_move_pixels_exactly():
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    for k in range(4):
        turn = _rotation(torch.tensor([k * math.pi / 2])) @ _scaling(torch.tensor([-1.0]), torch.tensor([1.0]))
        assert torch.allclose(resample(x, turn), torch.rot90(x.flip(-1), -k, dims=(-2, -1)), atol=1e-5)
    shifted = resample(x, _translation(torch.tensor([2 * 2 / 8]), torch.tensor([0.0])))  # two pixels
    assert torch.allclose(shifted[..., :6], x[..., 2:], atol=1e-5)


def test_ada_p_rises_above_the_target_falls_below_and_stays_in_its_range():
    p = torch.tensor(0.0)
    assert adjust(p, torch.tensor(0.9), 0.6, 256, 50_000) == pytest.approx(256 / 50_000)
    assert adjust(p, torch.tensor(0.1), 0.6, 256, 50_000) == 0  # never below 0
    assert adjust(torch.tensor(P_MAX), torch.tensor(1.0), 0.6, 256, 50_000) == pytest.approx(P_MAX)  # nor past P_MAX


def test_training_with_ada_resumes_exactly_and_logs_p_and_the_held_out_gap(tiny_root, tmp_path):
    kw = dict(data_root=str(tiny_root), batch_size=16, log_every=4, steps=24, eval_every=0, precision="fp32",
              augment="ada", ada_speed=500, subset=128)
    full, a, b = whole_and_resumed(tmp_path, kw, stop_after=10)
    assert torch.equal(a["ada"], b["ada"]) and 0 < float(a["ada"][0]) <= P_MAX + 1e-6  # p moved (float32), and was saved
    rows = [json.loads(x) for x in (full / "stats.jsonl").read_text().splitlines()]
    assert all(0 <= r["ada_p"] <= P_MAX + 1e-6 for r in rows) and max(r["ada_p"] for r in rows) > 0
    assert all(r["heldout_gap"] == pytest.approx(r["d_train_probe"] - r["d_heldout"]) for r in rows)
    plain = train(preset_config("default", out_dir=str(tmp_path / "c"), **{**kw, "augment": "none"}), progress=False)
    rows = [json.loads(x) for x in (plain / "stats.jsonl").read_text().splitlines()]
    assert all(r["ada_p"] is None and r["d_heldout"] is not None for r in rows)


def test_ada_whose_p_stays_0_trains_exactly_as_no_augmentation(tiny_root, tmp_path, monkeypatch):
    """The augmentations draw from a stream of their own: with p held at 0, ADA leaves every image as
    it is and the run draws the same z as without augmentation, so it is that run, bit for bit."""
    from gankit.nets import ada
    monkeypatch.setattr(ada, "P_MAX", 0.0)
    kw = dict(data_root=str(tiny_root), batch_size=16, log_every=4, steps=12, eval_every=0, precision="fp32",
              subset=128, ada_speed=500)
    runs = [train(preset_config("default", out_dir=str(tmp_path / aug), augment=aug, **kw), progress=False)
            for aug in ("ada", "none")]
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in runs)
    for net in ("G", "D"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
    assert float(a["ada"][0]) == 0 and not torch.equal(a["rng"]["augment"], b["rng"]["augment"])  # ADA drew


def test_a_checkpoint_without_the_augmentation_stream_resumes_and_says_so(tiny_root, tmp_path):
    """Checkpoints written before the augmentations had their own stream: it is seeded from the step."""
    from gankit.training.checkpoint import atomic_save
    kw = dict(data_root=str(tiny_root), batch_size=16, log_every=4, steps=12, eval_every=0, precision="fp32",
              augment="diffaug", subset=128)
    part = train(preset_config("default", out_dir=str(tmp_path), **kw), progress=False, stop_after=6)
    path = part / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["rng"]["augment"]
    atomic_save(state, path)
    resumed = train(preset_config("default", out_dir=str(tmp_path), **kw), resume=part, progress=False)
    assert "written before augmentations drew from a stream of their own" in (resumed / "log.txt").read_text()
    assert json.loads((resumed / "stats.jsonl").read_text().splitlines()[-1])["step"] == 12


def test_the_probe_leaves_training_unchanged(tiny_root, tmp_path, monkeypatch):
    """Looking at D's scores on the probe images restores D's buffers: the same weights as without it."""
    from gankit.training import maintenance
    kw = dict(data_root=str(tiny_root), batch_size=16, log_every=2, steps=8, eval_every=0, precision="fp32")
    seen = train(preset_config("default", out_dir=str(tmp_path / "a"), **kw), progress=False)
    monkeypatch.setattr(maintenance, "heldout_gap", lambda L: dict.fromkeys(("d_train_probe", "d_heldout", "heldout_gap")))
    unseen = train(preset_config("default", out_dir=str(tmp_path / "b"), **kw), progress=False)
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (seen, unseen))
    for net in ("G", "D"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net])
    assert all(r["d_heldout"] is not None for r in read_stats(seen))
    assert all(r["d_heldout"] is None for r in read_stats(unseen))


def test_subset_is_stratified_and_the_same_for_every_seed():
    labels = torch.arange(1000) % 10
    labels[:100] = 0  # class 0 holds 190 of the 1000
    idx = subset_indices(1000, 100, labels)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    counts = torch.bincount(labels[idx], minlength=10)
    assert counts[0] == 19 and all(counts[1:] == 9)
    assert torch.equal(idx, subset_indices(1000, 100, labels))
    with pytest.raises(DataError, match="has 1000 images"):
        subset_indices(1000, 1001)


def test_training_with_diffaug_on_a_subset_resumes_exactly(tiny_root, tmp_path):
    kw = dict(data_root=str(tiny_root), batch_size=16, log_every=2, steps=10, eval_every=0, precision="fp32",
              augment="diffaug", subset=64, objective="wgan-gp", d_norm="layer")
    full, a, _ = whole_and_resumed(tmp_path, kw, stop_after=5)
    saved = json.loads((full / "subset.json").read_text())
    assert saved["subset"] == 64 and len(saved["indices"]) == 64
    assert "training on 64 of the 256 images (stratified by class)" in (full / "log.txt").read_text()
    plain = train(preset_config("default", out_dir=str(tmp_path / "c"), **{**kw, "augment": "none"}), progress=False)
    assert "no augmentation: D may memorise them" in (plain / "log.txt").read_text()
    c = load_checkpoint(plain / "checkpoints" / "last.pt")
    assert not all(torch.equal(a["G"][k], c["G"][k]) for k in a["G"])  # the augmentation changed the training


def test_r_t_is_logged_and_a_memorising_d_is_warned_about(tiny_root, tmp_path):
    """256 images, no augmentation, D learning 20x faster than G: r_t = E[sign(D(x))] climbs to 1."""
    run = train(preset_config("lab04-mlp", data_root=str(tiny_root), out_dir=str(tmp_path), batch_size=16, log_every=4,
                              steps=160, eval_every=0, precision="fp32", d_lr=4e-3, g_lr=2e-4), progress=False)
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert all(-1 <= r["r_t"] <= 1 for r in rows)
    assert sum(r["r_t"] for r in rows[-10:]) / 10 > 0.9  # (its last 40 steps: ~0.97 with AVX-512 and AVX2 kernels)
    warnings = (run / "warnings.jsonl").read_text()
    assert "r_t = E[sign(D(x))]" in warnings and "--augment ada" in warnings
