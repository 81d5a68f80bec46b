"""Checkpoints that survive faults (the generator export that every tool reads is gankit.export).

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then
renamed over the old one (rename is atomic on POSIX), with its sha256 in a `.sha256` file
beside it. The new hash is written as `.sha256.new` before the rename and moved over `.sha256`
after it, so a kill between any two of these steps leaves a checkpoint that verifies: the old one
with its hash, or the new one with the pending hash. Loading uses `torch.load(weights_only=True)`
only, so a checkpoint cannot run code.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import RunError
from ..files import atomic_write_text, sha256_file


def atomic_save(obj, path: Path) -> None:
    """torch.save `obj` to `path` atomically (fsynced) and record its sha256 in `path.sha256`. If
    anything fails (disk full, kill), the previous file at `path` is untouched."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    pending = path.with_name(path.name + ".sha256.new")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        atomic_write_text(pending, f"{sha256_file(tmp)}  {path.name}\n")
        os.replace(tmp, path)
        os.replace(pending, path.with_name(path.name + ".sha256"))
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:  # disk full, quota, permissions: keep the previous file, say so
        raise RunError(f"{path}: could not write the checkpoint ({e.strerror or e}); the previous "
                       f"checkpoint there is intact") from e
    finally:
        tmp.unlink(missing_ok=True)


def verify(path: Path) -> str | None:
    """None if `path` matches its recorded sha256, else the reason it does not."""
    sides = [p for p in (path.with_name(path.name + ".sha256"), path.with_name(path.name + ".sha256.new")) if p.exists()]
    if not sides:
        return "no .sha256 beside it"
    got = sha256_file(path)
    wants = [(side.read_text().split() or [""])[0] for side in sides]
    return None if got in wants else f"sha256 {got[:12]}... does not match the recorded {wants[0][:12]}..."


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint with weights_only=True: tensors, numbers, strings, lists and dicts only.
    Anything else (a file of another program, a truncated or foreign pickle) is refused, naming the
    file; gankit never loads a checkpoint that could run code."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many kinds for a file that is not a plain-tensor checkpoint
        raise RunError(f"{path}: not a gankit checkpoint (it cannot be read as tensors and plain values: "
                       f"{type(e).__name__})") from None
    if not isinstance(state, dict) or not {"config", "step", "G", "D"} <= set(state):
        raise RunError(f"{path}: not a gankit checkpoint (no config, step and networks in it)")
    return state


def _step_of(path: Path) -> float:
    """The training step a checkpoint holds: from the name of a step_N.pt, from inside last.pt
    (memory-mapped: only its small header is read). A file that cannot be read sorts first, so
    that its hash is checked and the skip reported."""
    if path.stem.startswith("step_") and path.stem[5:].isdigit():
        return int(path.stem[5:])
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["step"])
    except Exception:  # truncated, foreign, no step: let verify() say what is wrong with it
        return float("inf")


def newest_valid_checkpoint(run_dir: Path) -> tuple[Path, list[str]]:
    """The checkpoint of the latest step in run_dir/checkpoints whose hash verifies, and a note for
    each one skipped on the way. Ordered by the step each holds, then by time: a run folder copied
    without its timestamps (cp, a sync tool) still resumes from its last step, not an older one."""
    folder = Path(run_dir) / "checkpoints"
    cands = list(folder.glob("*.pt")) if folder.is_dir() else []
    cands.sort(key=lambda p: (_step_of(p), p.stat().st_mtime), reverse=True)
    skipped = []
    for p in cands:
        reason = verify(p)
        if reason is None:
            return p, skipped
        skipped.append(f"skipped {p.name}: {reason}")
    raise RunError(f"{run_dir}: no usable checkpoint in {folder}" + (f" ({'; '.join(skipped)})" if skipped else ""))


def prune(folder: Path, keep: int) -> None:
    """Keep the newest `keep` periodic checkpoints (step_*.pt); last.pt is never pruned."""
    periodic = sorted(folder.glob("step_*.pt"))
    for p in periodic[: max(0, len(periodic) - keep)]:
        p.unlink(missing_ok=True)
        p.with_name(p.name + ".sha256").unlink(missing_ok=True)
        p.with_name(p.name + ".sha256.new").unlink(missing_ok=True)
