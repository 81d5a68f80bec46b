"""Runs survive faults: signals, a full disk, corrupt or malicious checkpoints."""
import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gankit.cli import main
from gankit.training import checkpoint
from gankit.training.checkpoint import atomic_save, load_checkpoint, newest_valid_checkpoint, verify
from gankit.config import preset_config
from gankit.errors import RunError
from gankit.training import train

ROOT = Path(__file__).resolve().parents[1]


def tiny(root, out, **kw):
    return preset_config("default", **{**dict(data_root=str(root), out_dir=str(out), batch_size=16,
                                                   log_every=2, steps=8, eval_every=0), **kw})


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130),
                                          pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)])  # (same path)
@pytest.mark.e2e
def test_signal_saves_a_checkpoint_and_resume_continues(tiny_root, tmp_path, signum, code):
    cmd = [sys.executable, "-m", "gankit", "train", "--model", "mlp", "--data-root", str(tiny_root),
           "--out-dir", str(tmp_path), "--steps", "1000000", "--batch-size", "16", "--log-every", "5",
           "--eval-every", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    stats = None
    while time.time() < deadline:
        found = list(tmp_path.glob("*/stats.jsonl"))
        if found and found[0].read_text().count("\n") >= 2:
            stats = found[0]
            break
        time.sleep(0.2)
    assert stats is not None, "training did not start"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(signum).name}" in err and "--resume" in err
    run = stats.parent
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] > 0 and verify(run / "checkpoints" / "last.pt") is None
    for png in ("loss_curve.png", "d_outputs.png", "milestones.png"):  # drawn as of the stop
        assert (run / png).exists(), png
    assert main(["train", "--resume", str(run), "--steps", str(ckpt["step"] + 3)]) == 0  # (in this process)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == ckpt["step"] + 3


def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1, "w": torch.ones(3)}, path)
    good = path.read_bytes()

    def full_disk(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(RunError, match="No space left on device.*previous checkpoint there is intact"):
        atomic_save({"step": 2, "w": torch.zeros(3)}, path)
    assert path.read_bytes() == good and verify(path) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "last.pt.sha256"]  # no temp file left


def test_resume_skips_a_corrupt_checkpoint_and_says_so(tiny_root, tmp_path):
    run = train(tiny(tiny_root, tmp_path, steps=16, keep=2))  # 16 steps = 1 epoch: step_00000016.pt + last.pt
    last = run / "checkpoints" / "last.pt"
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0xFF
    last.write_bytes(bytes(data))
    os.utime(last)  # newest by time, but its hash no longer verifies
    path, notes = newest_valid_checkpoint(run)
    assert path.name == "step_00000016.pt" and "skipped last.pt: sha256" in notes[0]


def test_resume_takes_the_latest_step_not_the_newest_file(tiny_root, tmp_path):
    run = train(tiny(tiny_root, tmp_path, steps=20, keep=2))  # step_00000016.pt, then last.pt at step 20
    older = run / "checkpoints" / "step_00000016.pt"
    os.utime(older)  # as after a copy that did not keep timestamps: the older step is the newer file
    path, notes = newest_valid_checkpoint(run)
    assert path.name == "last.pt" and load_checkpoint(path)["step"] == 20 and not notes


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused(tiny_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = train(tiny(tiny_root, tmp_path / "runs", steps=4))
    last = run / "checkpoints" / "last.pt"
    with open(last, "wb") as f:
        pickle.dump({"step": 1, "G": Exploit()}, f, protocol=2)
    # even with a matching hash, loading refuses to run code
    (run / "checkpoints" / "last.pt.sha256").write_text(f"{checkpoint.sha256_file(last)}  last.pt\n")
    with pytest.raises(RunError, match="not a gankit checkpoint"):
        train(tiny(tiny_root, tmp_path / "runs", steps=8), resume=run)
    assert not (tmp_path / "pwned").exists()


def test_existing_run_folders_are_never_reused(tiny_root, tmp_path):
    (tmp_path / "00000-default-fashion-mnist").mkdir()
    (tmp_path / "00000-default-fashion-mnist" / "mine.txt").write_text("keep")
    run = train(tiny(tiny_root, tmp_path, steps=2))
    assert run.name.startswith("00001-")
    assert (tmp_path / "00000-default-fashion-mnist" / "mine.txt").read_text() == "keep"


def _nan_after(monkeypatch, calls: int):
    """Make the BCE objective's D loss NaN from its `calls`-th call on (a diverging run)."""
    import dataclasses
    from gankit.nets import losses
    bce = losses.OBJECTIVES["bce"]
    count = {"n": 0}

    def d_loss(r, f):
        count["n"] += 1
        out = bce.d_loss(r, f)
        return out * float("nan") if count["n"] >= calls else out

    monkeypatch.setitem(losses.OBJECTIVES, "bce", dataclasses.replace(bce, d_loss=d_loss))
    return count


def test_nan_stops_with_a_message_and_no_poisoned_checkpoint(tiny_root, tmp_path, monkeypatch):
    from gankit.training import TrainingStopped
    _nan_after(monkeypatch, 5)
    with pytest.raises(TrainingStopped, match=r"non-finite values in the steps up to step 6: loss_D=nan") as e:
        train(tiny(tiny_root, tmp_path, steps=20, log_every=3))
    assert e.value.exit_code == 3
    run = next(tmp_path.iterdir())
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 0 and all(torch.isfinite(v).all() for v in ckpt["G"].values() if v.is_floating_point())


def test_nan_rollback_reloads_and_halves_learning_rates(tiny_root, tmp_path, monkeypatch):
    _nan_after(monkeypatch, 20)  # step 20 diverges, after the epoch-end checkpoint at 16 (lr 4e-4: the default's)
    run = None
    # Once NaN starts, every later loss is NaN too: the policy rolls back 3 times, then stops.
    from gankit.training import TrainingStopped
    with pytest.raises(TrainingStopped, match=r"3 rollbacks already tried"):
        train(tiny(tiny_root, tmp_path, steps=40, log_every=4, on_nan="rollback"))
    run = next(tmp_path.iterdir())
    warnings = [json.loads(x) for x in (run / "warnings.jsonl").read_text().splitlines()]
    assert [w["step"] for w in warnings] == [16, 16, 16]
    assert "rolled back to" in warnings[0]["warning"] and "rollback 3 of 3" in warnings[-1]["warning"]
    assert "halved to G 0.0002, D 0.0002" in warnings[0]["warning"]
    assert "halved to G 5e-05, D 5e-05" in warnings[2]["warning"]
    steps = [json.loads(x)["step"] for x in (run / "stats.jsonl").read_text().splitlines()]
    assert steps == [4, 8, 12, 16]  # rows after the checkpoint were dropped at each rollback


def test_nan_rollback_recovers_from_a_transient_nan(tiny_root, tmp_path, monkeypatch):
    import dataclasses
    from gankit.nets import losses
    bce = losses.OBJECTIVES["bce"]
    count = {"n": 0}

    def d_loss(r, f):  # one NaN at the 18th D step only
        count["n"] += 1
        out = bce.d_loss(r, f)
        return out * float("nan") if count["n"] == 18 else out

    monkeypatch.setitem(losses.OBJECTIVES, "bce", dataclasses.replace(bce, d_loss=d_loss))
    run = train(tiny(tiny_root, tmp_path, steps=24, log_every=4, on_nan="rollback"))
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 24 and ckpt["rollbacks"] == 1
    assert ckpt["opt_D"]["param_groups"][0]["lr"] == pytest.approx(2e-4)  # the default preset's 4e-4, halved


@pytest.mark.e2e
def test_second_ctrl_c_leaves_at_once_and_corrupts_nothing(tiny_root, tmp_path):
    cmd = [sys.executable, "-m", "gankit", "train", "--model", "mlp", "--data-root", str(tiny_root),
           "--out-dir", str(tmp_path), "--steps", "1000000", "--batch-size", "16", "--log-every", "5",
           "--eval-every", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob("*/stats.jsonl")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)  # impatient user: the second one must not wait for anything
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    run = next(tmp_path.iterdir())
    path, _ = newest_valid_checkpoint(run)  # whatever was on disk still verifies and loads
    assert load_checkpoint(path)["step"] >= 0
    assert not list((run / "checkpoints").glob(".*tmp*"))  # no half-written temp file left behind
