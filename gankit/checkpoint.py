"""Checkpoints that survive faults, and the pickle-free generator export.

A checkpoint is written to a temporary file in the same folder, flushed and fsynced, then
renamed over the old one (rename is atomic on POSIX), with its sha256 in a `.sha256` file
beside it. Loading uses `torch.load(weights_only=True)` only, so a checkpoint cannot run code.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .device import memory_format_for
from .errors import RunError
from .files import atomic_path, atomic_write_text, sha256_file


def atomic_save(obj, path: Path) -> None:
    """torch.save `obj` to `path` atomically (fsynced) and record its sha256 in `path.sha256`. If
    anything fails (disk full, kill), the previous file at `path` is untouched."""
    path = Path(path)
    try:
        with atomic_path(path, fsync=True) as tmp:
            with open(tmp, "wb") as f:
                torch.save(obj, f)
            digest = sha256_file(tmp)
        atomic_write_text(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
    except OSError as e:  # disk full, quota, permissions: keep the previous file, say so
        raise RunError(f"{path}: could not write the checkpoint ({e.strerror or e}); the previous "
                       f"checkpoint there is intact") from e


def verify(path: Path) -> str | None:
    """None if `path` matches its recorded sha256, else the reason it does not."""
    side = path.with_name(path.name + ".sha256")
    if not side.exists():
        return "no .sha256 beside it"
    want = side.read_text().split()[0]
    got = sha256_file(path)
    return None if got == want else f"sha256 {got[:12]}... does not match the recorded {want[:12]}..."


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint with weights_only=True: tensors, numbers, strings, lists and dicts only."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RunError(f"{path}: refused to load ({type(e).__name__}: {str(e).splitlines()[0][:300]})") from None


def newest_valid_checkpoint(run_dir: Path) -> tuple[Path, list[str]]:
    """The newest checkpoint in run_dir/checkpoints whose hash verifies, and a note for each one
    skipped on the way."""
    folder = Path(run_dir) / "checkpoints"
    cands = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
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


# ---- generator export -----------------------------------------------------------------------
def export_generator(run_dir: Path, G: torch.nn.Module, G_ema: torch.nn.Module | None, cfg, step: int,
                     name: str = "generator", **extra) -> Path:
    """NAME.safetensors (G's weights under `G.`, and `G_ema.` when EMA is on) and NAME.json (what
    rebuilds G: the run's whole config, G's shapes, a conditional G's class names, the step, and
    `extra`)."""
    from .conditional import class_names
    from .version import __version__
    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    if G_ema is not None:
        tensors.update({f"G_ema.{k}": v.detach().cpu().contiguous() for k, v in G_ema.state_dict().items()})
    path = Path(run_dir) / f"{name}.safetensors"
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    meta = {
        **cfg.to_dict(), "gankit_version": __version__, "z_dim": G.z_dim, "num_classes": G.num_classes,
        "img_shape": list(G.img_shape), "step": step, "has_ema": G_ema is not None,
        "class_names": class_names(cfg.dataset, G.num_classes, cfg.data_root) if G.num_classes else [],
        "sha256": sha256_file(path), **extra,
    }
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return path


def saved_class_names(meta_path: Path, num_classes: int) -> list[str]:
    """The class names a generator.json records (a run folder's, or the one beside a .safetensors);
    their indices as text when it records none."""
    meta_path = Path(meta_path)
    if meta_path.is_dir():
        meta_path = meta_path / "generator.json"
    elif meta_path.suffix == ".safetensors":
        meta_path = meta_path.with_suffix(".json")
    names = json.loads(meta_path.read_text()).get("class_names") if meta_path.exists() else None
    return names or [str(i) for i in range(num_classes)]


def load_generator(path: str | Path, ema: bool | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild G from generator.safetensors + generator.json (no pickles), in eval mode on
    `device`, in the memory format inference is fastest in there (gankit.device.memory_format_for).
    `ema`: True/False picks the weights; None takes G_ema when the file has it."""
    from .config import Config
    from .models import build_models

    path = Path(path)
    if path.is_dir():
        path = path / "generator.safetensors"
    meta_path = path.with_suffix(".json")
    if not path.exists():
        raise RunError(f"{path}: no such generator file")
    if not meta_path.exists():
        raise RunError(f"{path}: {meta_path.name} is missing beside it; it says how to rebuild G")
    meta = json.loads(meta_path.read_text())
    if meta.get("sha256") and sha256_file(path) != meta["sha256"]:
        raise RunError(f"{path}: sha256 does not match {meta_path.name}: the two files do not belong together")
    use_ema = meta["has_ema"] if ema is None else ema
    if use_ema and not meta["has_ema"]:
        raise RunError(f"{path}: the run trained no EMA generator; use --no-ema")
    fields = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(**{k: v for k, v in meta.items() if k in fields})
    G, _ = build_models(dataclasses.replace(cfg, init="default"))
    prefix = "G_ema." if use_ema else "G."
    state = {k[len(prefix):]: v for k, v in load_file(str(path)).items() if k.startswith(prefix)}
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{path}: weights do not match model {meta['model']} in {meta_path.name}: "
                       f"{str(e).splitlines()[0]}") from None
    device = torch.device(device)
    G.to(device, memory_format=memory_format_for(G, device))
    G.weights = "G_ema" if use_ema else "G"  # which weights were loaded, for records
    G.dataset = meta["dataset"]  # what it was trained on, to pick the evaluator
    G.class_names = saved_class_names(meta_path, G.num_classes)  # a conditional G's classes
    return G.eval()
