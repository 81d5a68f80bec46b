"""Latent-space studies on a trained generator: sampling from chosen vectors, nudging and
sweeping single dimensions, interpolation (lerp, and slerp as in White 2016), vector arithmetic
(Radford et al. 2015, sec. 6.3), and a ranking of dimensions by how much they change the image.

Functions here take a generator and latent tensors and return images or measurements; the
figures and the JSON record live in gankit.cli.latent; plain sampling in gankit.sample. G always runs in eval mode, so an image
depends only on its own z.
"""
from __future__ import annotations

import math

import torch

from ..errors import GankitError
from ..sample import generate, z_from_seed


def check_dims(dims: list[int], z_dim: int) -> None:
    bad = [d for d in dims if not 0 <= d < z_dim]
    if bad:
        raise GankitError(f"dimension(s) {bad} out of range: this generator has z_dim={z_dim} (dims 0..{z_dim - 1})")


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
        for attr in ("weights", "dataset", "class_names", "fingerprint"):
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
