"""What several test files share across the pytest-xdist workers of one session: folders made once
(a trained run, the tour's folder) under the session's common temporary folder, behind a file lock,
so that the first worker to need one makes it and the others wait for it and reuse it; and the
README's tour, read from the page and run as typed; and a generator as after its first step."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from filelock import FileLock
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
# The only changes made to a documented command: a training budget shortened for a test.
SUBSTITUTIONS = {"--minutes 3": "--steps 60"}
PAGES = [ROOT / "README.md", ROOT / "docs" / "getting-started.md"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


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


def gankit_blocks(page: Path) -> list[list[str]]:
    """The `gankit` lines of each bash block of a page, comments dropped, substitutions applied."""
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        lines = [line.split("#")[0].strip() for line in block.splitlines() if line.strip().startswith("gankit ")]
        for old, new in SUBSTITUTIONS.items():
            lines = [line.replace(old, new) for line in lines]
        blocks.append(lines)
    return blocks


def tour_commands(page: Path) -> list[str]:
    """The page's first bash block of gankit lines that starts with `gankit train` (the tour)."""
    for lines in gankit_blocks(page):
        if lines and lines[0].startswith("gankit train"):
            return lines
    raise AssertionError(f"{page}: no tour (a bash block starting with `gankit train`)")


def gankit(line: str, cwd: Path, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """A documented command line run as typed, by the installed `gankit` script."""
    argv = shlex.split(line)
    assert argv[0] == "gankit"
    script = Path(sys.executable).with_name("gankit")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "gankit"]
    return subprocess.run(cmd + argv[1:], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def run_of(tour: Path) -> Path:
    return tour / shlex.split(tour_commands(PAGES[0])[1])[2]  # the run folder the tour names


def first_step_taken(G: nn.Module) -> nn.Module:
    """G with its to-image convolution moved off zero where it starts there (the resnet family: flat
    grey first images, and no gradient back through that layer until it has moved), as G's first
    step moves it; other families are returned as they are."""
    convs = [m for m in G.modules() if isinstance(m, nn.Conv2d)]
    if convs and not convs[-1].weight.any():
        nn.init.normal_(convs[-1].weight, std=0.01)
    return G
