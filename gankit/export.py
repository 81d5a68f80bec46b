"""The generator a run exports: NAME.safetensors (G's weights, and G_ema's when EMA is on) and
NAME.json (what rebuilds G: the run's config, G's shapes, class names, the step). No pickles: a
generator file cannot run code. Training writes it at every checkpoint and at a new best FID;
sampling, metrics, latent studies and the app read it."""
from __future__ import annotations

import dataclasses
import hashlib
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


PRETRAINED = ("model.safetensors", "config.json")  # a save_pretrained folder (Hugging Face Hub style)


def export_generator(run_dir: Path, G: torch.nn.Module, G_ema: torch.nn.Module | None, cfg, step: int,
                     name: str = "generator", **extra) -> Path:
    """NAME.safetensors (G's weights under `G.`, and `G_ema.` when EMA is on) and NAME.json (what
    rebuilds G: the run's whole config, G's shapes, a conditional G's class names, the step, and
    `extra`)."""
    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    if G_ema is not None:
        tensors.update({f"G_ema.{k}": v.detach().cpu().contiguous() for k, v in G_ema.state_dict().items()})
    meta = {
        **cfg.to_dict(), "gankit_version": __version__, "z_dim": G.z_dim, "num_classes": G.num_classes,
        "img_shape": list(G.img_shape), "step": step, "has_ema": G_ema is not None,
        "class_names": class_names(cfg.dataset, G.num_classes, cfg.data_root) if G.num_classes else [],
        **extra,
    }
    path = Path(run_dir) / f"{name}.safetensors"
    write_generator(tensors, meta, path, path.with_suffix(".json"))
    return path


def write_generator(tensors: dict[str, torch.Tensor], meta: dict, weights: Path, meta_path: Path) -> None:
    """The weights file, then the JSON that rebuilds G with the weights' sha256 (each written
    atomically: a reader sees the old pair or the new weights, never a torn file)."""
    with atomic_path(weights) as tmp:
        save_file(tensors, str(tmp))
    atomic_write_text(meta_path, json.dumps({**meta, "sha256": sha256_file(weights)}, indent=2) + "\n")


def generator_files(path: str | Path) -> tuple[Path, Path]:
    """(weights, JSON) of a generator: a run folder (generator.safetensors + generator.json), a
    save_pretrained folder (model.safetensors + config.json), or a .safetensors file with its JSON."""
    path = Path(path)
    if path.is_dir():
        for weights, meta in (("generator.safetensors", "generator.json"), PRETRAINED):
            if (path / weights).exists():
                return path / weights, path / meta
        raise RunError(f"{path}: no generator.safetensors (a run folder) or model.safetensors (a saved generator) "
                       f"in it; has the run saved its first checkpoint?")
    if path.suffix != ".safetensors":
        raise RunError(f"{path}: not a generator: give a run folder, a saved generator folder or a .safetensors file")
    if not path.exists():
        raise RunError(f"{path}: no such generator file")
    return path, path.with_name(PRETRAINED[1]) if path.name == PRETRAINED[0] else path.with_suffix(".json")


def read_generator(path: str | Path) -> tuple[dict[str, torch.Tensor], dict, Path]:
    """(tensors, meta, weights path) of a generator, checked: the JSON is there, belongs to the
    weights (sha256), and the weights are a safetensors file."""
    weights, meta_path = generator_files(path)
    if not meta_path.exists():
        raise RunError(f"{weights}: {meta_path.name} is missing beside it; it says how to rebuild G")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{meta_path}: not a JSON file ({e})") from None
    if not isinstance(meta, dict) or "model" not in meta or "has_ema" not in meta:
        raise RunError(f"{meta_path}: not a gankit generator description (no model / has_ema)")
    if meta.get("sha256") and sha256_file(weights) != meta["sha256"]:
        raise RunError(f"{weights}: sha256 does not match {meta_path.name}: the two files do not belong together")
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for a file that is not one
        raise RunError(f"{weights}: not a safetensors file ({type(e).__name__})") from None
    return tensors, meta, weights


def saved_class_names(meta_path: Path, num_classes: int) -> list[str]:
    """The class names a generator's JSON records (a run folder's, a saved generator's, or the one
    beside a .safetensors); their indices as text when it records none."""
    meta_path = Path(meta_path)
    try:
        if meta_path.is_dir() or meta_path.suffix == ".safetensors":
            meta_path = generator_files(meta_path)[1]
        names = json.loads(meta_path.read_text()).get("class_names") if meta_path.exists() else None
    except RunError:
        names = None
    return names or [str(i) for i in range(num_classes)]


def build_generator(tensors: dict[str, torch.Tensor], meta: dict, ema: bool | None = None,
                    device: str | torch.device = "cpu", source: str = "generator") -> torch.nn.Module:
    """G rebuilt from its description and loaded with the G or G_ema weights, in eval mode on
    `device`, in the memory format inference is fastest in there (gankit.device.memory_format_for).
    `ema`: True/False picks the weights; None takes G_ema when there are some."""
    use_ema = meta["has_ema"] if ema is None else ema
    if use_ema and not meta["has_ema"]:
        raise RunError(f"{source}: the run trained no EMA generator; use --no-ema")
    fields = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(**{k: v for k, v in meta.items() if k in fields})
    G, _ = build_models(dataclasses.replace(cfg, init="default"))
    prefix = "G_ema." if use_ema else "G."
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise RunError(f"{source}: weights do not match model {meta['model']}: {str(e).splitlines()[0]}") from None
    device = torch.device(device)
    G.to(device, memory_format=memory_format_for(G, device))
    G.weights = "G_ema" if use_ema else "G"  # which weights were loaded, for records
    G.fingerprint = weights_fingerprint(state)  # these exact weights (directions and z files found in them say so)
    G.dataset = meta["dataset"]  # what it was trained on, to pick the evaluator
    G.class_names = meta.get("class_names") or [str(i) for i in range(G.num_classes)]  # a conditional G's classes
    return G.eval()


def weights_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """The sha256 (16 hex digits) of a state dict's tensors, in key order."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def load_generator(path: str | Path, ema: bool | None = None, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild G from a run folder, a saved generator folder or a .safetensors file (no pickles):
    see build_generator."""
    tensors, meta, weights = read_generator(path)
    return build_generator(tensors, meta, ema, device, source=str(weights))


def load_source(src: str | Path, ema: bool | None = None, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Path]:
    """(G in eval mode, the folder its files are in) from a run folder, a saved generator folder or
    a generator's .safetensors file."""
    p = Path(src)
    if not p.exists():
        raise RunError(f"{p}: no such run folder or generator file")
    G = load_generator(p, ema=ema, device=device)
    return G, (p if p.is_dir() else p.parent)
