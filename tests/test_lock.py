"""One writer per run folder: a second writer is refused with the first one's pid; a lock left by a
process that is gone is recognised as stale and taken over."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from gankit.cli import main
from gankit.config import preset_config
from gankit.errors import RunError
from gankit.training import train
from gankit.training.checkpoint import load_checkpoint, newest_valid_checkpoint
from gankit.training.lock import process_start


def tiny(root, out, **kw):
    return preset_config("lab04-mlp", **{**dict(data_root=str(root), out_dir=str(out), batch_size=16, log_every=2,
                                               steps=2, eval_every=0, precision="fp32"), **kw})


def write_lock(run, pid):
    (run / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "start": process_start(pid),
                                           "since": "2026-12-03 08:00:00"}))


@pytest.mark.e2e
def test_a_live_holder_refuses_a_second_writer(tiny_root, tmp_path):
    run = train(tiny(tiny_root, tmp_path), progress=False)
    assert not (run / ".lock").exists()  # released at the end
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        write_lock(run, holder.pid)
        with pytest.raises(RunError, match=f"being written by process {holder.pid}"):
            train(tiny(tiny_root, tmp_path, steps=4), resume=run, progress=False)
        assert json.loads((run / ".lock").read_text())["pid"] == holder.pid  # the holder keeps its lock
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.e2e
@pytest.mark.parametrize("lock", ["dead", "torn", "reused"])
def test_a_stale_lock_is_taken_over(tiny_root, tmp_path, lock):
    run = train(tiny(tiny_root, tmp_path), progress=False)
    if lock == "dead":
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        write_lock(run, gone.pid)
    elif lock == "torn":
        (run / ".lock").write_text('{"pid": 12')  # a kill in the middle of writing it
    else:  # the pid is alive again, but it is another process (another start time)
        (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "start": "1"}))
    resumed = train(tiny(tiny_root, tmp_path, steps=4), resume=run, progress=False)
    assert resumed == run and not (run / ".lock").exists()


@pytest.mark.e2e
def test_two_resumes_at_once(tiny_root, tmp_path, capsys):
    run = train(tiny(tiny_root, tmp_path), progress=False)
    first = subprocess.Popen([sys.executable, "-m", "gankit", "train", "--resume", str(run), "--steps", "1000000"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (run / ".lock").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (run / ".lock").exists()
        assert main(["train", "--resume", str(run), "--steps", "2000000"]) == 2
        assert f"being written by process {first.pid}" in capsys.readouterr().err
    finally:
        first.terminate()
        first.wait(timeout=120)
    # Stopped (released, or gone before its handlers were in place: then stale), the folder is free again.
    step = load_checkpoint(newest_valid_checkpoint(run)[0])["step"]
    assert main(["train", "--resume", str(run), "--steps", str(step + 2)]) == 0
    assert not (run / ".lock").exists()
