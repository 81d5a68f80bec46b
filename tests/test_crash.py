"""Crash safety, measured: a training process killed with SIGKILL at random moments (inside
checkpoint and generator writes, evaluations, plots) leaves a run folder whose every file is still
readable, `--resume` continues from the last complete checkpoint, and the final weights equal an
uninterrupted run's, bit for bit. Checkpoints come by time (--ckpt-minutes) within an epoch too,
so a kill loses at most that much training."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from gankit.runs import read_stats
from gankit.training.checkpoint import load_checkpoint, newest_valid_checkpoint


def flags(root, steps: int, real: bool) -> list[str]:
    """lab04-mlp; on the real data it also evaluates every 60 steps (kills land inside evaluations)."""
    data = [] if real else ["--data-root", str(root), "--batch-size", "16"]
    evals = ["--eval-every", "60", "--eval-n", "200"] if real else ["--eval-every", "0"]
    return ["--steps", str(steps), "--log-every", "10", "--precision", "fp32", *data, *evals]


def check_readable(run: Path) -> None:
    """Every file a reader opens parses: JSON, JSONL (a torn last row is skipped by design), PNG,
    safetensors, and the newest checkpoint that verifies."""
    for p in run.rglob("*"):
        if not p.is_file() or p.name.startswith(".") or "tensorboard" in p.parts:
            continue
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.verify()
        elif p.suffix == ".safetensors":
            load_file(str(p))
        elif p.suffix == ".jsonl":
            rows = p.read_text().splitlines()
            assert len(read_stats(run, p.name)) >= len(rows) - 1, p  # at most the torn last row is lost
    load_checkpoint(newest_valid_checkpoint(run)[0])


def kill_and_resume(run: Path, cmd: list[str], kills: int, seed: int, delays: tuple[float, float]) -> list[tuple[float, int]]:
    """Resume `run` `kills` times, each killed a random delay after its training loop began (its
    log's "training ..." line); returns (delay, the step of the checkpoint it left)."""
    rng = random.Random(seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    seen = []
    for _ in range(kills):
        started = (run / "log.txt").read_text().count("\ntraining ")
        proc = subprocess.Popen([sys.executable, "-m", "gankit", "train", "--resume", str(run), *cmd], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while (run / "log.txt").read_text().count("\ntraining ") == started and proc.poll() is None \
                and time.time() < deadline:
            time.sleep(0.05)
        delay = rng.uniform(*delays)
        time.sleep(delay)
        if proc.poll() is not None:  # it finished first: nothing to kill
            raise AssertionError(f"the run ended before its kill: {proc.stderr.read().decode()[-500:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        check_readable(run)
        seen.append((round(delay, 2), load_checkpoint(newest_valid_checkpoint(run)[0])["step"]))
    return seen


def assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = load_file(str(a / "generator.safetensors")), load_file(str(b / "generator.safetensors"))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    ca, cb = (load_checkpoint(p / "checkpoints" / "last.pt") for p in (a, b))
    for net in ("G", "D"):
        assert all(torch.equal(ca[net][k], cb[net][k]) for k in ca[net])


def crash_run(tiny_root, tmp_path, kills: int, steps: int, real: bool, seed: int, delays: tuple[float, float]) -> list:
    # The uninterrupted reference, in a process like the killed ones (one thread each: the same kernels).
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "gankit", "train", "--preset", "lab04-mlp", "--out-dir", str(tmp_path / "ref"),
                    *flags(tiny_root, steps, real)], env=env, check=True, capture_output=True, timeout=900)
    ref = next((tmp_path / "ref").glob("0*"))
    # The run to kill: started, and killed for the first time, once its step-0 checkpoint exists.
    cmd = flags(tiny_root, steps, real) + ["--ckpt-minutes", "0.003"]  # a checkpoint every ~0.2 s of training
    first = subprocess.Popen([sys.executable, "-m", "gankit", "train", "--preset", "lab04-mlp", "--out-dir",
                              str(tmp_path / "killed"), *cmd], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "killed").glob("*/checkpoints/last.pt.sha256")) and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.wait()
    run = next((tmp_path / "killed").glob("0*"))
    seen = kill_and_resume(run, cmd, kills, seed, delays)
    done = subprocess.run([sys.executable, "-m", "gankit", "train", "--resume", str(run), *cmd], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-1000:]
    assert_same_weights(ref, run)
    return seen


@pytest.mark.e2e
@pytest.mark.slow  # (~40 s of subprocesses; make test-e2e keeps tests/test_faults.py's signal-stop-and-resume tests)
def test_kills_resume_to_the_same_weights(tiny_root, tmp_path):
    seen = crash_run(tiny_root, tmp_path, kills=2, steps=300, real=False, seed=1, delays=(0.5, 2.0))
    assert seen[-1][1] > 0  # the kills came during training: checkpoints past the start were left
    assert len(seen) == 2


@pytest.mark.e2e
@pytest.mark.slow
def test_many_kills_with_evaluations_resume_to_the_same_weights(tiny_root, tmp_path):
    seen = crash_run(tiny_root, tmp_path, kills=10, steps=6000, real=True, seed=2, delays=(0.1, 3.0))
    print("kills (delay s, step resumed from):", seen)
    assert len(seen) == 10 and any(step % 937 for _, step in seen)  # some resumed from within an epoch
