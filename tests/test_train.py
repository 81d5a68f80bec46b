"""The training loop: every artifact of the run folder, exact resume, one run per preset."""
import dataclasses
import json
import math
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gankit.export import load_generator
from gankit.training.checkpoint import load_checkpoint, verify
from gankit.cli import main
from gankit.config import PRESETS, preset_config
from gankit.data import locate
from gankit.errors import ConfigError, RunError
from gankit.nets import EMA
from gankit.sample import sample_images
from gankit.training import train

ARTIFACTS = ["config.json", "models.txt", "stats.jsonl", "log.txt", "loss_curve.png", "d_outputs.png",
             "milestones.png", "generator.safetensors", "generator.json", "checkpoints/last.pt",
             "checkpoints/last.pt.sha256"]


def tiny_cfg(root, out, preset="default", **kw):
    """A preset on the tiny dataset: batch 16 (16 steps per epoch), a log tick every 2 steps. The
    default preset unless a test names another: the one users train, with a smaller step and
    checkpoint than the labs' full-width DCGAN's (whose every artifact test_run_writes_every_artifact checks)."""
    return preset_config(preset, **{**dict(data_root=str(root), out_dir=str(out), batch_size=16,
                                           log_every=2, steps=12, eval_every=0), **kw})


def assert_png(path, size=None):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert size is None or im.size == size, f"{path}: {im.size} != {size}"


def test_run_writes_every_artifact(tiny_root, tmp_path):
    run = train(tiny_cfg(tiny_root, tmp_path, "dcgan-report", steps=20, ema=0.9))  # 256/16 = 16 steps per epoch
    assert run.name == "00000-dcgan-report-fashion-mnist"
    for name in ARTIFACTS:
        assert (run / name).exists(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert_png(run / "images" / "epoch_001.png", (242, 242))  # 8x8 grid of 28px, 2px padding
    assert_png(run / "images" / "step_00000020.png", (242, 242))
    for step in (0, 5, 10, 15, 20):  # 0/25/50/75/100 % of 20 steps
        assert_png(run / "images" / f"milestone_{step:08d}.png", (242, 32))
    for png in ("loss_curve.png", "d_outputs.png", "milestones.png"):
        assert_png(run / png)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["config"]["preset"] == "dcgan-report" and cfg["torch_version"] == torch.__version__
    assert "device" in cfg and "command" in cfg and "gankit_version" in cfg
    models = (run / "models.txt").read_text()
    assert "ConvTranspose2d(100, 512" in models and "parameters" in models
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(2, 21, 2))
    for key in ("epoch", "images", "loss_D", "loss_G", "d_real", "d_fake", "grad_norm_D", "grad_norm_G",
                "lr_D", "lr_G", "img_per_s"):
        assert all(r[key] is not None for r in rows), key
    assert all(0 <= r["d_real"] <= 1 and 0 <= r["d_fake"] <= 1 for r in rows)
    assert verify(run / "checkpoints" / "last.pt") is None
    # Every statistic in a row is one of gankit.runs.stats, each with its TensorBoard tag there.
    from gankit.runs.stats import STATS
    assert set(rows[0]) == {"step", "epoch", "images", "time_s", "train_time_s"} | (set(STATS) - {"r1", "r2", "recon"})
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    logged = EventAccumulator(str(run / "tensorboard")).Reload().Tags()["scalars"]
    assert {STATS[k].tag for k, v in rows[0].items() if k in STATS and v is not None} <= set(logged)


def test_exported_generator_reproduces_the_run(tiny_root, tmp_path):
    run = train(tiny_cfg(tiny_root, tmp_path, ema=0.9, steps=6))
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    G = load_generator(run / "generator.safetensors")  # EMA weights by default when present
    G_raw = load_generator(run, ema=False)
    weights = load_file(str(run / "generator.safetensors"))
    assert any(k.startswith("G_ema.") for k in weights) and any(k.startswith("G.") for k in weights)
    for k, v in G_raw.state_dict().items():
        assert torch.equal(v, ckpt["G"][k])
    z = torch.randn(4, 100)
    assert sample_images(G, z).shape == (4, 1, 28, 28)
    # a generator file that does not match its json is refused
    meta = json.loads((run / "generator.json").read_text())
    meta["model"] = "mlp"
    (run / "generator.json").write_text(json.dumps({**meta, "sha256": None}))
    with pytest.raises(RunError, match="do not match model mlp"):
        load_generator(run)


def assert_same_state(a: dict, b: dict) -> None:
    """Two checkpoints hold bit-identical G, D, G_ema, optimizer states and noise RNG."""
    for key in ("G", "D", "G_ema"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k}"
    for key in ("opt_G", "opt_D"):
        for pid, st in a[key]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, b[key]["state"][pid][k]), f"{key}[{pid}].{k}"
    assert torch.equal(a["rng"]["noise"], b["rng"]["noise"])


def test_resume_is_exact(tiny_root, tmp_path):
    """12 steps straight == 6 steps, then resume to 12 (fresh load from disk): same weights
    and optimizer state, bit for bit, with EMA and an n_critic cycle crossing the cut."""
    kw = dict(ema=0.9, log_every=3, model="dcgan-fc", objective="wgan", n_critic=4, clip=0.01,
              g_optimizer="rmsprop", d_optimizer="rmsprop", init="default")
    full = train(tiny_cfg(tiny_root, tmp_path / "a", steps=12, **kw))
    part = train(tiny_cfg(tiny_root, tmp_path / "b", steps=6, **kw))
    resumed = train(tiny_cfg(tiny_root, tmp_path / "b", steps=12, **kw), resume=part)
    assert resumed == part
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")
    assert a["step"] == b["step"] == 12
    assert_same_state(a, b)
    steps = [json.loads(line)["step"] for line in (resumed / "stats.jsonl").read_text().splitlines()]
    assert steps == [3, 6, 9, 12]
    # milestones of both parts, each under the step it was taken at
    milestones = sorted(p.name for p in (resumed / "images").glob("milestone_*.png"))
    assert milestones == [f"milestone_{s:08d}.png" for s in (0, 1, 3, 4, 6, 9, 12)]
    with pytest.raises(RunError, match="already trained 12 steps"):
        train(tiny_cfg(tiny_root, tmp_path / "b", steps=12, **kw), resume=part)


@pytest.mark.parametrize("model", [dict(d_norm="layer"), dict(model="resnet", g_width=8, d_width=8, blocks=2)])
def test_rpgan_with_lazy_r1_r2_logs_both_penalties_and_resumes_exactly(tiny_root, tmp_path, model):
    """R3GAN's objective with both penalties every 3rd D step, on the DCGAN with a LayerNorm D and on
    the resnet family: the penalties are logged (positive, finite; absent from runs without them),
    and 5 steps + resume to 10 equal 10 straight, bit for bit."""
    kw = dict(objective="rpgan", r1=1.0, r2=1.0, reg_every=3, ema=0.9, precision="fp32", **model)
    full = train(tiny_cfg(tiny_root, tmp_path / "a", steps=10, **kw))
    part = train(tiny_cfg(tiny_root, tmp_path / "b", steps=5, **kw))
    resumed = train(tiny_cfg(tiny_root, tmp_path / "b", steps=10, **kw), resume=part)
    assert_same_state(load_checkpoint(full / "checkpoints" / "last.pt"),
                      load_checkpoint(resumed / "checkpoints" / "last.pt"))
    rows = [json.loads(line) for line in (full / "stats.jsonl").read_text().splitlines()]
    measured = [r for r in rows if r["r1"] is not None]  # ticks every 2 steps, R1/R2 every 3rd: some have none
    assert len(measured) == 4 and all(r["r2"] is not None for r in measured)
    assert all(r["r1"] > 0 and r["r2"] > 0 and math.isfinite(r["r1"] + r["r2"]) for r in measured)
    plain = train(tiny_cfg(tiny_root, tmp_path / "c", steps=2))
    assert "r1" not in json.loads((plain / "stats.jsonl").read_text().splitlines()[0])


def test_gamma_schedule_decays_r1_and_resumes_exactly(tiny_root, tmp_path):
    """--gamma-schedule linear takes R1's weight from r1 to gamma_end x r1 over the steps: the weights
    differ from a constant gamma's, the start line says so, and a stop at step 5 + resume equals 10
    straight (a stop, not a 5-step budget: the schedule follows the budget)."""
    kw = dict(objective="rpgan", r1=10.0, d_norm="layer", precision="fp32", ema=0.9, gamma_schedule="linear",
              gamma_end=0.0)
    full = train(tiny_cfg(tiny_root, tmp_path / "a", steps=10, **kw))
    part = train(tiny_cfg(tiny_root, tmp_path / "b", steps=10, **kw), stop_after=5)
    resumed = train(tiny_cfg(tiny_root, tmp_path / "b", steps=10, **kw), resume=part)
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (full, resumed))
    assert_same_state(a, b)
    constant = load_checkpoint(train(tiny_cfg(tiny_root, tmp_path / "c", steps=10, **{**kw, "gamma_schedule": "constant"}))
                               / "checkpoints" / "last.pt")
    assert any(not torch.equal(a["D"][k], constant["D"][k]) for k in a["D"])
    assert "R1/R2 gamma linear down to 0 x at the end" in (full / "log.txt").read_text()
    with pytest.raises(ConfigError, match="add --r1 GAMMA"):
        tiny_cfg(tiny_root, tmp_path, gamma_schedule="cosine").resolved().validate()


def test_plots_are_paced_and_always_drawn_at_the_end(tiny_root, tmp_path, monkeypatch):
    """Three epochs: a fixed-z grid at every epoch's end, but the matplotlib plots (seconds each on a
    slow CPU) only when due by their cost: never due, they are drawn once, at the end; always due,
    at every epoch's end. (PLOT_SHARE is set either way, so the verdict does not depend on the CPU.)"""
    from gankit.training import output
    calls = []
    real = output.plot_curves
    monkeypatch.setattr(output, "plot_curves", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(output, "PLOT_SHARE", 1e-12)
    run = train(tiny_cfg(tiny_root, tmp_path / "a", steps=48, model="mlp", init="default"))  # 16 steps per epoch
    assert sorted(p.name for p in (run / "images").glob("epoch_*.png")) == [f"epoch_{e:03d}.png" for e in (1, 2, 3)]
    assert len(calls) == 1 and (run / "loss_curve.png").exists() and (run / "milestones.png").exists()
    monkeypatch.setattr(output, "PLOT_SHARE", 1e9)
    calls.clear()
    train(tiny_cfg(tiny_root, tmp_path / "b", steps=48, model="mlp", init="default"))
    assert len(calls) == 3


def test_epochs_shorter_than_a_log_interval_share_their_grid_and_checkpoint(tiny_root, tmp_path):
    """4 steps an epoch, a log tick every 10 steps: the epoch-end work (grid, epoch line, periodic
    checkpoint) comes every 3rd epoch, not at every 4th step; the log ticks stay where they were."""
    run = train(tiny_cfg(tiny_root, tmp_path, steps=24, batch_size=64, log_every=10, model="mlp", init="default"))
    assert sorted(p.name for p in (run / "images").glob("epoch_*.png")) == ["epoch_003.png", "epoch_006.png"]
    assert [json.loads(line)["step"] for line in (run / "stats.jsonl").read_text().splitlines()] == [10, 12, 20, 24]
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*.pt")) == ["step_00000012.pt", "step_00000024.pt"]
    assert "epoch 3 step 12:" in (run / "log.txt").read_text() and "epoch 1 step 4:" not in (run / "log.txt").read_text()


def test_lr_schedule_follows_the_steps_and_resumes_exactly(tiny_root, tmp_path):
    """A linear schedule: the lr used at step s (0-based) of T is lr * (1 - (1 - end) * s / T) for
    G and D; cut at step 5 and resumed, the run equals an uninterrupted one bit for bit. A cosine schedule ends at lr_end."""
    kw = dict(lr_schedule="linear", lr_end=0.25, log_every=4, ema=0.9, g_lr=4e-4, d_lr=2e-4)
    full = train(tiny_cfg(tiny_root, tmp_path / "a", steps=12, **kw))
    rows = [json.loads(line) for line in (full / "stats.jsonl").read_text().splitlines()]
    for r in rows:  # the row at step `done` shows the lr of step done - 1
        factor = 1 - 0.75 * (r["step"] - 1) / 12
        assert r["lr_G"] == pytest.approx(4e-4 * factor) and r["lr_D"] == pytest.approx(2e-4 * factor), r
    part = train(tiny_cfg(tiny_root, tmp_path / "b", steps=12, **kw), stop_after=5)
    resumed = train(tiny_cfg(tiny_root, tmp_path / "b", steps=12, **kw), resume=part)
    assert_same_state(load_checkpoint(full / "checkpoints" / "last.pt"),
                      load_checkpoint(resumed / "checkpoints" / "last.pt"))
    assert "learning rates linear down to 0.25" in (full / "log.txt").read_text()
    cos = train(tiny_cfg(tiny_root, tmp_path / "c", steps=12, lr_schedule="cosine", lr_end=0.1, log_every=12, g_lr=2e-4))
    last = json.loads((cos / "stats.jsonl").read_text().splitlines()[-1])
    assert last["lr_G"] == pytest.approx(2e-4 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 11 / 12))))


TIMING = ("img_per_s", "time_s", "train_time_s")


# Cut at the epoch boundary in `make test`; mid-epoch and inside an n_critic cycle (also covered in
# one process by test_resume_is_exact) in `make test-all`: each new process costs seconds of imports.
@pytest.mark.e2e
@pytest.mark.parametrize("cut", [pytest.param(5, marks=pytest.mark.slow), 16, pytest.param(18, marks=pytest.mark.slow)])
def test_resume_in_a_fresh_process_matches_an_uninterrupted_run(tiny_root, tmp_path, cut):
    """k steps, then `gankit train --resume` in a new process to N: same weights, optimizer states,
    RNG and the same stats.jsonl rows (timing fields aside) as N steps straight."""
    # log_every 4 with n_critic 3: some ticks fall on D-only steps, so grad_norm_G is carried over.
    kw = dict(ema=0.99, log_every=4, n_critic=3, model="mlp", init="default")
    full = train(tiny_cfg(tiny_root, tmp_path / "a", steps=24, **kw))
    part = train(tiny_cfg(tiny_root, tmp_path / "b", steps=24, **kw), stop_after=cut)
    assert load_checkpoint(part / "checkpoints" / "last.pt")["step"] == cut
    out = subprocess.run([sys.executable, "-m", "gankit", "train", "--resume", str(part)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(part / "checkpoints" / "last.pt")
    assert_same_state(a, b)
    rows = [{k: v for k, v in json.loads(x).items() if k not in TIMING}
            for x in (full / "stats.jsonl").read_text().splitlines()]
    rows_b = [{k: v for k, v in json.loads(x).items() if k not in TIMING}
              for x in (part / "stats.jsonl").read_text().splitlines()]
    assert rows == rows_b


def test_deterministic_runs_are_bitwise_identical(tiny_root, tmp_path):
    a = train(tiny_cfg(tiny_root, tmp_path / "a", steps=8, deterministic=True))
    b = train(tiny_cfg(tiny_root, tmp_path / "b", steps=8, deterministic=True))
    ca, cb = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (a, b))
    for key in ("G", "D"):
        assert all(torch.equal(ca[key][k], cb[key][k]) for k in ca[key])
    assert (a / "images" / "step_00000008.png").read_bytes() == (b / "images" / "step_00000008.png").read_bytes()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_cuda_without_cuda_fails_before_any_work(tmp_path, capsys):
    assert main(["train", "--device", "cuda", "--out-dir", str(tmp_path / "r"), "--steps", "1"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_changed_config_and_non_runs(tiny_root, tmp_path):
    run = train(tiny_cfg(tiny_root, tmp_path, steps=4))
    with pytest.raises(RunError, match="cannot resume with changed d_lr"):
        train(tiny_cfg(tiny_root, tmp_path, steps=8, d_lr=1e-3), resume=run)
    with pytest.raises(RunError, match="not a gankit run folder"):
        train(tiny_cfg(tiny_root, tmp_path, steps=8), resume=tmp_path)


def test_each_run_gets_a_new_folder(tiny_root, tmp_path):
    a = train(tiny_cfg(tiny_root, tmp_path, steps=2))
    b = train(tiny_cfg(tiny_root, tmp_path, steps=2))
    assert (a.name[:5], b.name[:5]) == ("00000", "00001")


@pytest.mark.parametrize("preset", [k for k, v in PRESETS.items() if v.get("dataset") != "folder"])  # faces: test_folder
def test_cli_runs_every_preset(tiny_root, tmp_path, preset, capsys):
    rc = main(["train", "--preset", preset, "--data-root", str(tiny_root), "--out-dir", str(tmp_path),
               "--steps", "10", "--batch-size", "16", "--log-every", "5", "--eval-every", "0"])
    assert rc == 0
    run = next(tmp_path.iterdir())
    assert run.name.endswith(f"-{preset}-fashion-mnist")
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["loss_D"])) for r in rows)
    assert rows[-1]["loss_G"] is not None  # G trained within 10 steps even with n_critic 5
    if PRESETS[preset]["objective"].startswith("wgan"):
        assert rows[-1]["wasserstein"] is not None
    assert '"preset": "' + preset in capsys.readouterr().out  # the resolved config is printed


def test_cli_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["train", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset 'nope'; valid:" in err and err.count("\n") == 1
    assert main(["train", "--batch-size", "0", "--out-dir", str(tmp_path)]) == 2
    assert "batch_size must be" in capsys.readouterr().err
    assert main(["train", "--data-root", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "runs"), "--steps", "1"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing created before the input was found bad
    with pytest.raises(SystemExit) as e:
        main(["train", "--d-lr", "fast"])
    assert e.value.code == 2
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a gankit run folder" in capsys.readouterr().err


def test_dry_run_prints_and_writes_nothing(tmp_path, capsys):
    assert main(["train", "--preset", "lab6-wgan", "--dry-run", "--out-dir", str(tmp_path / "r")]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["objective"] == "wgan" and cfg["clip"] == 0.01
    assert not (tmp_path / "r").exists()


@pytest.mark.e2e
def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "gankit", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--preset", "--resume", "--dry-run", "--d-lr", "--g-betas", "--d-weight-decay", "--n-critic", "--ema"):
        assert flag in out.stdout


def test_real_fashion_mnist_run(tmp_path):
    """A few dozen steps of `default` (in fp32, which every CPU runs fast) on the real Fashion-MNIST
    (installed by `make`), judged by the evaluator at the end."""
    try:
        locate("fashion-mnist", "train", None, download=False)
    except Exception as e:
        pytest.fail(f"Fashion-MNIST is not installed ({e}); `make test` installs it")
    run = train(preset_config("default", precision="fp32", out_dir=str(tmp_path), steps=30, log_every=10, eval_n=1000))
    for name in ARTIFACTS + ["quality.jsonl", "best.safetensors", "best.json", "fid_curve.png"]:
        assert (run / name).exists(), name
    quality = [json.loads(line) for line in (run / "quality.jsonl").read_text().splitlines()]
    assert quality[-1]["step"] == 30 and quality[-1]["fid_fmnist1k"] > 0
    assert json.loads((run / "best.json").read_text())["fid_fmnist1k"] == quality[-1]["fid_fmnist1k"]
    assert_png(run / "images" / "step_00000030.png", (242, 242))
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30] and rows[-1]["images"] == 30 * 64
    assert "60000 images" in (run / "log.txt").read_text()


def test_on_quality_ends_the_run_as_a_finished_one_and_it_resumes(tmp_path):
    """train(on_quality=...) sees each quality row; True ends the run there with the final grid,
    100 % milestone, checkpoint and export; the run can be continued."""
    seen = []
    cfg = preset_config("lab04-mlp", out_dir=str(tmp_path), steps=40, log_every=10, eval_every=10, eval_n=500)
    run = train(cfg, on_quality=lambda row: seen.append(row) or row["step"] == 20)
    assert [r["step"] for r in seen] == [10, 20] and all(r["fid_fmnist500"] > 0 for r in seen)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 20
    assert json.loads((run / "generator.json").read_text())["step"] == 20
    assert (run / "images" / "step_00000020.png").exists() and (run / "images" / "milestone_00000020.png").exists()
    assert "stopping at step 20: on_quality asked to" in (run / "log.txt").read_text()
    train(cfg, resume=run)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 40


def test_ema_warmup_follows_the_closed_form():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    ema = EMA(m, 0.999)
    with torch.no_grad():
        m[0].weight.add_(3.0)
        m[1].num_batches_tracked += 7
    ema.update(m)  # first update copies
    torch.testing.assert_close(ema.module[0].weight, m[0].weight)
    assert int(ema.module[1].num_batches_tracked) == 7
    w0 = m[0].weight.detach().clone()
    with torch.no_grad():
        m[0].weight.add_(1.0)
    ema.update(m)  # t = 1: decay (1 + 1) / (10 + 1)
    torch.testing.assert_close(ema.module[0].weight, w0 * 2 / 11 + (w0 + 1) * 9 / 11)
    ema.n_updates.fill_(20000)  # late in training the decay is capped at 0.999
    before = ema.module[0].weight.detach().clone()
    with torch.no_grad():
        m[0].weight.add_(1.0)
    ema.update(m)
    torch.testing.assert_close(ema.module[0].weight, before * 0.999 + m[0].weight.detach() * 0.001)
    assert not any(p.requires_grad for p in ema.parameters())


def test_warns_when_d_wins_outright(tiny_root, tmp_path):
    # A strong, fast D against a G that barely learns: D separates the two within a few steps.
    run = train(tiny_cfg(tiny_root, tmp_path, preset="lab6-gan", steps=40, log_every=2, d_lr=5e-3, g_lr=1e-7))
    warnings = [json.loads(x) for x in (run / "warnings.jsonl").read_text().splitlines()]
    assert any("D has won outright for 5 log ticks" in w["warning"] for w in warnings)
    # (on these 256 images without augmentation, D calling every real image real is reported too)
    assert any("r_t = E[sign(D(x))]" in w["warning"] for w in warnings)
    assert "warning (step" in (run / "log.txt").read_text()


def test_truncated_idx_fails_before_any_work(tmp_path, capsys):
    from conftest import write_dataset
    root = write_dataset(tmp_path / "data", n=64)
    f = root / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-10])
    assert main(["train", "--data-root", str(root), "--out-dir", str(tmp_path / "runs"), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte: truncated" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_fast_path_and_plain_path_give_the_same_losses(tiny_root, tmp_path):
    # The plain path: data on the CPU copied per batch, a host sync per step, per-tensor optimizer
    # updates. The fast path must compute the same thing (fp32, same seed, same memory format).
    def losses(**kw):
        run = train(tiny_cfg(tiny_root, tmp_path, steps=6, log_every=1, precision="fp32", ema=0.999, **kw),
                    progress=False)
        return [[r[k] for k in ("loss_D", "loss_G", "d_real", "d_fake", "grad_norm_D")]
                for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines())]
    fast = losses(channels_last=False)
    plain = losses(channels_last=False, data_on_device=False, host_sync=True, optim_impl="loop")
    assert len(fast) == 6
    torch.testing.assert_close(torch.tensor(fast), torch.tensor(plain), rtol=1e-5, atol=1e-6)
    # channels_last convolutions and the fused Adam kernel sum in another order, and which kernels
    # run depends on the CPU (AVX2 or AVX-512). GAN training amplifies such rounding differences
    # step by step (measured on an AVX2 CPU: 1.2e-3 relative by step 3), so only the first step,
    # before any update has fed back, is held to fp32 rounding; a wrong layout would be off by O(1).
    other = losses(channels_last=True, optim_impl="fused")
    torch.testing.assert_close(torch.tensor(other[0]), torch.tensor(fast[0]), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(other[:3]), torch.tensor(fast[:3]), rtol=3e-2, atol=1e-3)


def test_bf16_trains_on_tiny_shapes_and_warns_where_it_is_not_native(tiny_root, tmp_path, monkeypatch):
    """bf16 autocast runs through the whole loop (on tiny shapes, so its speed on this CPU does
    not matter); where the CPU has no native bf16 the run says so with the measured ratio."""
    from gankit import device
    monkeypatch.setattr(device, "cpu_matmul_seconds", lambda: (2e-4, 1.4e-2))  # as measured with AVX2 kernels
    run = train(tiny_cfg(tiny_root, tmp_path, model="mlp", init="default", steps=4, precision="bf16"))
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert rows and all(torch.isfinite(torch.tensor(r["loss_D"])) for r in rows)
    assert json.loads((run / "config.json").read_text())["precision"] == "bf16"
    warning = json.loads((run / "warnings.jsonl").read_text().splitlines()[0])["warning"]
    assert "no native bf16" in warning and "x slower" in warning and "--precision fp32" in warning
    # auto chooses fp32 on such a CPU, and says nothing
    run = train(tiny_cfg(tiny_root, tmp_path, model="mlp", init="default", steps=2, precision="auto"))
    assert json.loads((run / "config.json").read_text())["precision"] == "fp32"
    assert not (run / "warnings.jsonl").exists()


def test_auto_precision_follows_the_measured_bf16_speed(monkeypatch):
    from gankit import device
    cpu = torch.device("cpu")
    monkeypatch.setattr(device, "cpu_matmul_seconds", lambda: (2e-4, 5e-5))  # native: bf16 4x faster
    assert device.resolve_precision("auto", cpu) == "bf16" and device.bf16_warning(cpu) is None
    monkeypatch.setattr(device, "cpu_matmul_seconds", lambda: (2e-4, 1.4e-2))  # flags present, bf16 emulated
    assert device.resolve_precision("auto", cpu) == "fp32"
    assert device.resolve_precision("fp32", cpu) == "fp32" and device.resolve_precision("bf16", cpu) == "bf16"


def test_channels_last_auto_is_on_for_conv_models_on_the_cpu(tiny_root, tmp_path):
    conv = train(tiny_cfg(tiny_root, tmp_path, steps=1))
    mlp = train(tiny_cfg(tiny_root, tmp_path, steps=1, model="mlp", init="default"))
    off = train(tiny_cfg(tiny_root, tmp_path, steps=1, channels_last=False))
    assert [json.loads((r / "config.json").read_text())["channels_last"] for r in (conv, mlp, off)] == [True, False, False]
    assert "channels_last" in (conv / "log.txt").read_text()


def test_time_budget_finishes_cleanly_and_resumes(tiny_root, tmp_path):
    """--minutes: training stops when the budget is spent and finishes as a run that reached its
    last epoch does (final grid, evaluation-free checkpoint, export, plots, milestones); the
    budget is recorded; raising --minutes continues it. A linear lr schedule follows the budget's
    time, not the step limit: the learning rates fall as the time is spent and are near 0 at its end."""
    cfg = tiny_cfg(tiny_root, tmp_path, steps=100_000, minutes=0.05, model="mlp", init="default", log_every=50,
                   lr_schedule="linear")
    run = train(cfg)
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    step = ckpt["step"]
    assert 0 < step < 100_000
    budget = json.loads((run / "config.json").read_text())["budget"]
    assert budget["steps"] == step and budget["minutes"] == 0.05 and budget["train_time_s"] >= 3.0
    assert f"budget bought {step} steps" in (run / "log.txt").read_text()
    for name in ARTIFACTS:
        assert (run / name).exists(), name
    final = f"epoch_{step // 16:03d}.png" if step % 16 == 0 else f"step_{step:08d}.png"  # 16 steps per epoch
    assert (run / "images" / final).exists(), final
    assert json.loads((run / "generator.json").read_text())["step"] == step
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == step  # the last step is logged
    lrs = [r["lr_G"] for r in rows]
    assert all(a > b for a, b in zip(lrs, lrs[1:])) and lrs[-1] < 0.1 * cfg.g_lr, lrs
    milestones = sorted(int(p.stem.split("_")[1]) for p in (run / "images").glob("milestone_*.png"))
    # 0 %, the first step past 25, 50 and 75 % of the budget, and the last step. Fractions first
    # reached at the same step share its row (a slow epoch end can pass two at once), so there
    # are 3 to 5 rows, depending on the machine's speed.
    assert milestones[0] == 0 and milestones[-1] == step and 3 <= len(milestones) <= 5
    assert all(a < b for a, b in zip(milestones, milestones[1:]))
    with pytest.raises(RunError, match="already trained"):
        train(cfg, resume=run)
    # A budget past the time already spent (which includes the last epoch's figures, seconds on a slow CPU).
    resumed = train(dataclasses.replace(cfg, minutes=ckpt["elapsed"] / 60 + 0.02), resume=run)
    assert resumed == run and load_checkpoint(run / "checkpoints" / "last.pt")["step"] > step


def test_non_positive_minutes_are_refused(tmp_path, capsys):
    for value in ("0", "-1"):
        assert main(["train", "--minutes", value, "--out-dir", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert "minutes must be a positive number" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as e:  # argparse refuses non-finite numbers itself
        main(["train", "--minutes", "nan", "--out-dir", str(tmp_path / "r")])
    assert e.value.code == 2 and "must be finite" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_compiled_step_matches_eager(tiny_root, tmp_path):
    def losses(**kw):
        run = train(tiny_cfg(tiny_root, tmp_path, steps=4, log_every=1, precision="fp32", **kw), progress=False)
        return [r["loss_D"] for r in map(json.loads, (run / "stats.jsonl").read_text().splitlines())]
    torch.testing.assert_close(torch.tensor(losses(compile=True)), torch.tensor(losses()), rtol=1e-2, atol=1e-3)


def test_resume_is_exact_with_spectral_norm(tiny_root, tmp_path):
    """Spectral norm keeps its power-iteration vectors as D's buffers: a cut and a resume give
    the same weights, vectors and optimizer states as an uninterrupted run, bit for bit."""
    kw = dict(d_norm="spectral", objective="hinge", ema=0.9)
    full = train(tiny_cfg(tiny_root, tmp_path / "a", steps=8, **kw))
    part = train(tiny_cfg(tiny_root, tmp_path / "b", steps=4, **kw))
    train(tiny_cfg(tiny_root, tmp_path / "b", steps=8, **kw), resume=part)
    a = load_checkpoint(full / "checkpoints" / "last.pt")
    b = load_checkpoint(part / "checkpoints" / "last.pt")
    assert any(k.endswith("_u") for k in a["D"]) and a["step"] == b["step"] == 8
    assert_same_state(a, b)


def test_the_epoch_line_gives_the_epochs_means(tiny_root, tmp_path):
    """log.txt's `epoch N step S: loss_D ...` states the means over the epoch's steps (its log ticks
    weighted by the steps they cover), not the last interval's."""
    run = train(tiny_cfg(tiny_root, tmp_path / "a", steps=32, log_every=3, model="mlp", init="default",
                         precision="fp32"), progress=False)
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    lines = [x for x in (run / "log.txt").read_text().splitlines() if x.startswith("epoch ")]
    assert len(lines) == 2 and all("(epoch means)" in x for x in lines)
    before = 0
    for line, end in zip(lines, (16, 32)):
        ticks = [r for r in rows if before < r["step"] <= end]
        steps = [r["step"] - p for r, p in zip(ticks, [before] + [r["step"] for r in ticks[:-1]])]
        mean = sum(n * r["loss_D"] for n, r in zip(steps, ticks)) / sum(steps)
        shown = float(line.split("loss_D ")[1].split()[0])
        assert shown == pytest.approx(mean, abs=1e-4) and shown != pytest.approx(ticks[-1]["loss_D"], abs=1e-4)
        before = end
