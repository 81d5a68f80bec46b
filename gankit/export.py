"""The generator a run exports: NAME.safetensors (G's weights, and G_ema's when EMA is on) and
NAME.json (what rebuilds G: the run's config, G's shapes, class names, the step). No pickles: a
generator file cannot run code. Training writes it at every checkpoint and at a new best FID;
sampling, metrics, latent studies and the app read it."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import Config
from .data import class_names
from .device import memory_format_for
from .errors import RunError
from .files import atomic_path, atomic_write_text, sha256_file
from .nets import build_models
from .version import __version__


def export_generator(run_dir: Path, G: torch.nn.Module, G_ema: torch.nn.Module | None, cfg, step: int,
                     name: str = "generator", **extra) -> Path:
    """NAME.safetensors (G's weights under `G.`, and `G_ema.` when EMA is on) and NAME.json (what
    rebuilds G: the run's whole config, G's shapes, a conditional G's class names, the step, and
    `extra`)."""
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


def load_source(src: str | Path, ema: bool | None = None) -> tuple[torch.nn.Module, Path]:
    """(G in eval mode, the run folder or the generator's folder) from a run folder or a
    generator.safetensors file."""
    p = Path(src)
    if not p.exists():
        raise RunError(f"{p}: no such run folder or generator file")
    if p.is_dir() and not (p / "generator.safetensors").exists():
        raise RunError(f"{p}: no generator.safetensors in it (is it a gankit run folder, and has it "
                       f"saved its first checkpoint?)")
    G = load_generator(p, ema=ema)
    return G, (p if p.is_dir() else p.parent)
