"""Plain sampling, the bottom of the house: z from a seed, G(z) in eval mode, in batches, class
labels for conditional generators, and latent vectors read from files. The training loop, the
metrics, the latent studies and the app all draw their images through these functions."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .errors import GankitError


def z_from_seed(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """n standard-normal latent vectors from a seed, drawn on the CPU so every machine gets the
    same z for the same seed."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample_images(G: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) (a conditional G: G(z, y), y the class of each row) in eval mode (BatchNorm uses
    running statistics, so a sample does not depend on the rest of the batch), restoring G's mode
    afterwards."""
    was_training = G.training
    G.eval()
    try:
        return (G(z) if y is None else G(z, y.to(z.device))).float()
    finally:
        G.train(was_training)


def generate(G: torch.nn.Module, z: torch.Tensor, batch: int = 512, y: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) (or G(z, y)) in eval mode on G's device, in batches; returns float images on the CPU."""
    device = next(G.parameters()).device
    return torch.cat([sample_images(G, z[i:i + batch].to(device), None if y is None else y[i:i + batch])
                      .cpu().contiguous() for i in range(0, len(z), batch)])


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: n labels with every class as often as n allows (evaluations)."""
    return torch.arange(n) % num_classes


def grid_labels(z: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(z, y, nrow) of a class grid: one row per z, one column per class, so each row holds the
    style of its z and each column one class."""
    rows = max(1, len(z) // num_classes)
    return (z[:rows].repeat_interleave(num_classes, 0), torch.arange(num_classes, device=z.device).repeat(rows),
            num_classes)


def class_index(spec: int | str, names: list[str], flag: str = "--class") -> int:
    """A class given by index (7 or '7') or name ('sneaker', 'Ankle-boot': any case, - or _ for
    spaces) -> its index; anything else is refused, naming the classes. `flag` names the argument."""
    if isinstance(spec, int) and not isinstance(spec, bool) and 0 <= spec < len(names):
        return spec
    if isinstance(spec, str):
        if spec.isdigit() and int(spec) < len(names):
            return int(spec)
        key = lambda s: s.lower().replace("-", " ").replace("_", " ")  # noqa: E731
        lowered = [key(n) for n in names]
        if key(spec) in lowered:
            return lowered.index(key(spec))
    raise GankitError(f"{flag} {spec}: no such class; the classes are 0..{len(names) - 1}: "
                      + ", ".join(f"{i} {n}" for i, n in enumerate(names)))


def read_z(path: str | Path, z_dim: int) -> torch.Tensor:
    """Latent vectors from a .npy, .pt or .json file (one vector or a list of them) -> (N, z_dim).
    Refuses a wrong length or non-finite values, naming the file."""
    p = Path(path)
    if not p.is_file():
        raise GankitError(f"{p}: no such z file")
    try:
        if p.suffix == ".npy":
            z = torch.from_numpy(np.load(p, allow_pickle=False).astype(np.float32))
        elif p.suffix == ".pt":
            z = torch.load(p, map_location="cpu", weights_only=True)
            if not isinstance(z, torch.Tensor):
                raise GankitError(f"{p}: holds a {type(z).__name__}, not a tensor")
        elif p.suffix == ".json":
            z = torch.tensor(json.loads(p.read_text()), dtype=torch.float32)
        else:
            raise GankitError(f"{p}: unknown z file type '{p.suffix}'; use .npy, .pt or .json")
    except GankitError:
        raise
    except Exception as e:
        raise GankitError(f"{p}: cannot read latent vectors ({type(e).__name__}: {str(e)[:200]})") from None
    z = z.float()
    if z.ndim == 1:
        z = z[None]
    if z.ndim != 2 or z.shape[1] != z_dim:
        raise GankitError(f"{p}: latent vectors of shape {tuple(z.shape)}; this generator takes z of "
                          f"length {z_dim}, i.e. shape ({z_dim},) or (N, {z_dim})")
    if not torch.isfinite(z).all():
        raise GankitError(f"{p}: holds non-finite values (nan or inf)")
    return z
