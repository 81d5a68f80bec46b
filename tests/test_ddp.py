"""Data-parallel training under torchrun on the CPU (gloo, 2 processes)."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import free_port
from gankit.cli import main
from gankit.training.checkpoint import load_checkpoint
from gankit.config import preset_config
from gankit.nets import build_models

ROOT = Path(__file__).resolve().parents[1]


def torchrun(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(free_port()), "-m", "gankit", "train", *args]


def common(root: Path, out: Path) -> list[str]:
    return ["--preset", "lab6-gan", "--data-root", str(root), "--out-dir", str(out), "--device", "cpu",
            "--eval-every", "0", "--log-every", "2"]


def run(cmd: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.mark.e2e
@pytest.mark.slow  # (a torchrun start, ~18 s; make test-e2e's two-ranks-like-one-process test checks the same of an MLP)
def test_two_ranks_of_a_conv_model_train_one_run_folder_in_sync(tiny_root, tmp_path):
    run(torchrun(2, *common(tiny_root, tmp_path), "--steps", "6", "--batch-size", "16", "--model", "dcgan"))
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1, runs  # rank 0 alone makes the run folder
    log = (runs[0] / "log.txt").read_text()
    assert "batch 16 per process x 2 processes = global batch 32" in log
    assert "ranks in sync: max |parameter difference| between rank 0 and the other 1 rank(s) = 0\n" in log
    rows = [json.loads(x) for x in (runs[0] / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6] and rows[-1]["images"] == 6 * 32
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss_D", "loss_G", "grad_norm_D"))
    assert json.loads((runs[0] / "config.json").read_text())["world_size"] == 2
    assert load_checkpoint(runs[0] / "checkpoints" / "last.pt")["step"] == 6


@pytest.mark.e2e
def test_two_ranks_of_b_step_like_one_process_of_2b(tiny_root, tmp_path):
    # SGD makes the first update lr * gradient, so equal weights after step 1 mean equal gradients
    # (and after step 2, equal gradients at equal weights).
    args = ["--steps", "2", "--log-every", "1", "--g-optimizer", "sgd", "--d-optimizer", "sgd", "--g-lr", "0.1",
            "--d-lr", "0.1"]
    run(torchrun(2, *common(tiny_root, tmp_path / "two"), "--batch-size", "16", *args))
    assert main(["train", *common(tiny_root, tmp_path / "one"), "--batch-size", "32", *args]) == 0  # (in this process)
    (folder,) = list((tmp_path / "two").iterdir())  # rank 0 alone makes the run folder
    log = (folder / "log.txt").read_text()
    assert "batch 16 per process x 2 processes = global batch 32" in log
    assert "ranks in sync: max |parameter difference| between rank 0 and the other 1 rank(s) = 0\n" in log
    rows = [json.loads(x) for x in (folder / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[-1]["images"] == 2 * 32
    assert json.loads((folder / "config.json").read_text())["world_size"] == 2
    two, one = (load_checkpoint(next((tmp_path / k).glob("*/checkpoints/last.pt"))) for k in ("two", "one"))
    assert two["step"] == one["step"] == 2
    for net in ("G", "D"):
        for k, v in one[net].items():
            torch.testing.assert_close(two[net][k], v, rtol=1e-5, atol=1e-6, msg=f"{net}.{k}")
    torch.manual_seed(0)
    _, D0 = build_models(preset_config("lab6-gan"))
    assert max((one["D"][k] - v).abs().max() for k, v in D0.state_dict().items()) > 1e-3  # it did learn


@pytest.mark.e2e
@pytest.mark.slow  # (two torchrun starts, ~15 s; make test-e2e keeps the two-ranks-like-one-process check)
def test_ada_p_is_the_same_on_every_rank_as_in_one_process(tiny_root, tmp_path):
    """ADA adapts p from r_t averaged over the ranks: two ranks of batch B move p exactly as one
    process of 2B does, and their augmentations (a share each of one draw) train the same weights."""
    args = ["--steps", "12", "--augment", "ada", "--ada-speed", "200", "--g-optimizer", "sgd", "--d-optimizer", "sgd",
            "--g-lr", "0.05", "--d-lr", "0.05", "--ckpt-every", "4"]
    run(torchrun(2, *common(tiny_root, tmp_path / "two"), "--batch-size", "16", *args))
    assert main(["train", *common(tiny_root, tmp_path / "one"), "--batch-size", "32", *args]) == 0  # (in this process)
    two, one = (load_checkpoint(next((tmp_path / k).glob("*/checkpoints/last.pt"))) for k in ("two", "one"))
    assert float(one["ada"][0]) > 0  # p moved
    torch.testing.assert_close(two["ada"], one["ada"], rtol=0, atol=1e-6)
    for k, v in one["D"].items():
        torch.testing.assert_close(two["D"][k], v, rtol=1e-4, atol=1e-5, msg=f"D.{k}")


@pytest.mark.e2e
@pytest.mark.slow  # (~13 s; make test-e2e keeps one process's signal tests in tests/test_faults.py)
def test_sigterm_to_one_rank_stops_both_and_resumes_on_one_process(tiny_root, tmp_path):
    cmd = torchrun(2, *common(tiny_root, tmp_path), "--steps", "100000", "--batch-size", "16")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline, stats = time.time() + 120, None
    while time.time() < deadline and stats is None:
        found = list(tmp_path.glob("*/stats.jsonl"))
        if found and found[0].read_text().count("\n") >= 3:
            stats = found[0]
        time.sleep(0.2)
    assert stats is not None, "training did not start"
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 2, workers
    os.kill(int(workers[1]), signal.SIGTERM)  # one rank only
    _, err = proc.communicate(timeout=120)
    assert err.count("stopped by SIGTERM") == 1, err[-3000:]  # rank 0 reports it, once
    for pid in workers:
        assert subprocess.run(["ps", "-p", pid], capture_output=True).returncode != 0  # both ended
    run_dir = stats.parent
    ckpt = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert ckpt["step"] > 0 and ckpt["world_size"] == 2
    assert f"stopped by SIGTERM at step {ckpt['step']} (sent to one or more of the 2 processes); checkpoint saved" in err
    assert all(p.name == "last.pt" or p.name.startswith("step_") for p in (run_dir / "checkpoints").glob("*.pt"))
    # The same run continues on one process: 2 x 16 images per step become 32 per step.
    out = run([sys.executable, "-m", "gankit", "train", "--resume", str(run_dir), "--batch-size", "16",
               "--steps", str(2 * ckpt["step"] + 4)])
    assert "trained by 2 process(es), now 1" in out.stdout
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["step"] == 2 * ckpt["step"] + 4


@pytest.mark.e2e
@pytest.mark.slow  # (one torchrun start, ~15 s)
def test_fastgan_trains_in_sync_with_its_decoders(tmp_path):
    """The fastgan family's decoders run outside D's forward, on features D's hooks kept: DDP still
    averages their gradients, so both ranks end with the same weights, decoders included."""
    from test_folder import class_folder
    folder = class_folder(tmp_path / "shapes", per_class=40)
    run(torchrun(2, "--preset", "fastgan32", "--data-root", str(folder), "--out-dir", str(tmp_path / "runs"),
                 "--device", "cpu", "--steps", "4", "--batch-size", "8", "--log-every", "2", "--precision", "fp32"))
    (found,) = (tmp_path / "runs").glob("0*")
    log = (found / "log.txt").read_text()
    assert "ranks in sync: max |parameter difference| between rank 0 and the other 1 rank(s) = 0\n" in log
    rows = [json.loads(x) for x in (found / "stats.jsonl").read_text().splitlines()]
    assert all(r["recon"] > 0 for r in rows)
