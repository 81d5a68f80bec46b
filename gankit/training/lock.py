"""One writer per run folder. A training process holds RUN/.lock (its pid, host, process start time
and command) while it writes the folder; a second one (another `--resume`, a tuning trial) is
refused with the holder's pid. A lock left by a process that is gone (killed, machine restarted)
is stale: the next writer recognises it and takes it over."""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from ..errors import RunError

LOCK_NAME = ".lock"


def process_start(pid: int) -> str | None:
    """The kernel's start time of a process (Linux: /proc/PID/stat field 22), so that a pid the
    system has since given to another process is not mistaken for the lock's holder."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(owner: dict) -> bool:
    """Whether the process that wrote a lock still runs (on another host: assumed so)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = process_start(pid)
    return started is None or owner.get("start") in (None, started)


class RunLock:
    """RUN/.lock, taken with O_EXCL (atomic), released by `release()`; `with RunLock(run):` does both."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self.held = False

    def acquire(self) -> "RunLock":
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self.owner()
                if owner is not None and alive(owner):
                    raise RunError(f"{self.path.parent} is being written by process {owner.get('pid')} on "
                                   f"{owner.get('host')} (since {owner.get('since')}): one writer per run folder; "
                                   f"wait for it, or stop it first") from None
                self._take_over()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "start": process_start(os.getpid()),
                           "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:500]}, f)
            self.held = True
            return self
        raise RunError(f"{self.path}: could not take the run folder's lock (another process keeps taking it)")

    def owner(self) -> dict | None:
        """What the lock says of its holder; None for a lock torn or emptied by a kill."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _take_over(self) -> None:
        """Move a stale lock aside atomically: of two processes that find it stale, one moves it."""
        try:
            os.rename(self.path, self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}"))
        except FileNotFoundError:
            return
        self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}").unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "RunLock":
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
