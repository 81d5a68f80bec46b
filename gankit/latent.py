"""Latent-space studies on a trained generator: sampling from chosen vectors, nudging and
sweeping single dimensions, interpolation (lerp, and slerp as in White 2016), vector arithmetic
(Radford et al. 2015, sec. 6.3), and a ranking of dimensions by how much they change the image.

Functions here take a generator and latent tensors and return images or measurements; the
figures and the JSON record live in gankit.latent_cli. G always runs in eval mode, so an image
depends only on its own z.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from .errors import GankitError, RunError


def load_source(src: str | Path, ema: bool | None = None) -> tuple[torch.nn.Module, Path]:
    """(G in eval mode, the run folder or the generator's folder) from a run folder or a
    generator.safetensors file."""
    from .checkpoint import load_generator
    p = Path(src)
    if not p.exists():
        raise RunError(f"{p}: no such run folder or generator file")
    if p.is_dir() and not (p / "generator.safetensors").exists():
        raise RunError(f"{p}: no generator.safetensors in it (is it a gankit run folder, and has it "
                       f"saved its first checkpoint?)")
    G = load_generator(p, ema=ema)
    return G, (p if p.is_dir() else p.parent)


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


def z_from_seed(seed: int, n: int, z_dim: int) -> torch.Tensor:
    """n standard-normal latent vectors from a seed, drawn on the CPU so every machine gets the
    same z for the same seed."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


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


def check_dims(dims: list[int], z_dim: int) -> None:
    bad = [d for d in dims if not 0 <= d < z_dim]
    if bad:
        raise GankitError(f"dimension(s) {bad} out of range: this generator has z_dim={z_dim} (dims 0..{z_dim - 1})")


def generate(G: torch.nn.Module, z: torch.Tensor, batch: int = 512, y: torch.Tensor | None = None) -> torch.Tensor:
    """G(z) (or G(z, y)) in eval mode on G's device, in batches; returns float images on the CPU."""
    device = next(G.parameters()).device
    return torch.cat([sample_images(G, z[i:i + batch].to(device), None if y is None else y[i:i + batch])
                      .cpu().contiguous() for i in range(0, len(z), batch)])


@torch.no_grad()
def class_blend(G, z: torch.Tensor, a: int, b: int, steps: int) -> torch.Tensor:
    """A conditional G's images of one z (z_dim,) as its class embedding moves in a straight line
    from class a's to class b's: (steps, C, H, W) on the CPU. The style stays, the class changes."""
    device = next(G.parameters()).device
    ends = G.embed(torch.tensor([a, b], device=device))
    t = torch.linspace(0, 1, steps, device=device)[:, None]
    was_training = G.training
    G.eval()
    try:
        return G.from_embedding(z.to(device).expand(steps, -1), torch.lerp(ends[0], ends[1], t)).float().cpu()
    finally:
        G.train(was_training)


class ForClass(torch.nn.Module):
    """A conditional G with its class fixed: z -> G(z, [c] * len(z)), so every latent study of this
    module (nudges, sweeps, interpolation, ranking) works within class c. Unconditional tools call it
    like any G."""

    def __init__(self, G: torch.nn.Module, c: int):
        super().__init__()
        self.G, self.c = G, c
        self.z_dim, self.img_shape, self.num_classes = G.z_dim, G.img_shape, 0
        for attr in ("weights", "dataset", "class_names"):
            if hasattr(G, attr):
                setattr(self, attr, getattr(G, attr))
        self.train(G.training)  # in G's mode: a new Module starts in training mode, and would put G back in it

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.G(z, torch.full((len(z),), self.c, dtype=torch.long, device=z.device))


def nudge(G, z: torch.Tensor, dim: int, delta: float) -> torch.Tensor:
    """Images of z with dimension `dim` moved by -delta, 0, +delta: (3, n, C, H, W)."""
    zs = z.repeat(3, 1)  # (3n, z_dim): rows -delta, 0, +delta
    n = len(z)
    zs[:n, dim] -= delta
    zs[2 * n:, dim] += delta
    return generate(G, zs).view(3, n, *G.img_shape)


def sweep(G, z: torch.Tensor, dims: list[int], values: list[float]) -> torch.Tensor:
    """One base vector z (z_dim,), each dim set to each value: (len(dims), len(values), C, H, W)."""
    zs = z.repeat(len(dims) * len(values), 1)
    for i, d in enumerate(dims):
        zs[i * len(values):(i + 1) * len(values), d] = torch.tensor(values, dtype=zs.dtype)
    return generate(G, zs).view(len(dims), len(values), *G.img_shape)


def lerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    t = torch.linspace(0, 1, steps)[:, None]
    return (1 - t) * z0 + t * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation (White 2016) at `steps` evenly spaced points, ends included."""
    return slerp_at(z0, z1, torch.linspace(0, 1, steps))


def slerp_at(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation at the positions t (a 1-D tensor in [0, 1]) -> (len(t), z_dim). It
    follows the great circle, so intermediate vectors keep the norm a Gaussian z typically has.
    Falls back to lerp for (anti)parallel vectors."""
    t = t.to(z0.dtype)[:, None]
    a, b = z0 / z0.norm(), z1 / z1.norm()
    omega = torch.arccos((a * b).sum().clamp(-1, 1))
    if omega.abs() < 1e-6 or (math.pi - omega).abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


INTERPOLATIONS = {"lerp": lerp, "slerp": slerp}


@torch.no_grad()
def rank_dims(G, n: int = 256, delta: float = 2.0, seed: int = 0, classifier=None) -> list[dict]:
    """For every latent dimension: the mean absolute per-pixel change (in [0, 1] image units) of
    G(z ± delta e_d) against G(z), over n random z; with a classifier (images -> logits), also the
    share of samples whose predicted class flips. Sorted, most influential first."""
    z = z_from_seed(seed, n, G.z_dim)
    base = generate(G, z)
    pred = classifier(base).argmax(1) if classifier is not None else None
    rows = []
    for d in range(G.z_dim):
        z_pm = torch.cat([z, z])  # (2n, z_dim): first half -delta, second half +delta
        z_pm[:n, d] -= delta
        z_pm[n:, d] += delta
        ims = generate(G, z_pm)
        # Images live in [-1, 1]; halve the difference to report it in [0, 1] image units.
        change = (ims - base.repeat(2, 1, 1, 1)).abs().mean().item() / 2
        row = {"dim": d, "mean_abs_change": change}
        if pred is not None:
            row["class_flip_rate"] = (classifier(ims).argmax(1) != pred.repeat(2)).float().mean().item()
        rows.append(row)
    rows.sort(key=lambda r: -r["mean_abs_change"])
    for i, r in enumerate(rows):
        r["rank"] = i + 1
    return rows
