"""What several test files share across the pytest-xdist workers of one session: folders made once
(a trained run, the tour's folder) under the session's common temporary folder, behind a file lock,
so that the first worker to need one makes it and the others wait for it and reuse it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]


def shared_folder(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """tmp/<name>/, filled once per test session by make(folder), for every worker."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the workers' temporary folders are siblings: their parent is the session's
    folder = base / name
    with FileLock(str(base / f"{name}.lock")):
        if not (folder / ".made").exists():
            shutil.rmtree(folder, ignore_errors=True)  # what a failed attempt left
            folder.mkdir()
            make(folder)
            (folder / ".made").touch()
    return folder
