"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial
Networks with Limited Data"): every image D sees, real and generated, goes through a pipeline of
transforms, each applied to an image with probability p; p itself follows D's overfitting (`adjust`):
raised while r_t = E[sign(D(x_real))] is above a target, lowered below it, from 0 at the start, so a
dataset large enough for D never gets augmented much.

The pipeline is the paper's "bgc" in a form that suits 1-channel 28x28 and RGB 64/128 images:
- geometric, one resampling for all of them: x-flip, rotation by a multiple of 90 degrees, integer
  translation (up to 1/8 of the size), isotropic scaling, arbitrary rotation, anisotropic scaling,
  fractional translation (bilinear sampling, reflection at the borders, as the paper pads);
- colour: brightness, contrast; on RGB also luma flip, hue rotation and saturation.
Each transform is differentiable in the image, so G learns through it. Its randomness is `rand`, the
run's augmentation stream (uniform numbers; normal ones are made from them), so resume and DDP stay
exact; the stream is not the one z comes from, so a run whose p stays 0 is the run without ADA.

Non-leaking: an augmentation leaks when G learns to make augmented-looking images (rotated,
flipped, recoloured). The paper found its pipeline non-leaking for p below about 0.8; on Fashion-MNIST
this one leaked there. bench/small_data.py's leak check held p at 0.4, 0.6 and 0.8 for whole runs on
1,000 images: the share of samples that match a flipped or turned class-mean image better than an
upright one was 29.6 %, 63.3 % and 89.7 %, against 30.0 % of real images (docs/results/small-data.md).
So p is kept in [0, P_MAX] with P_MAX = 0.4. On RGB (1,000 emoji at 64x64), bench/small_folder.py's
check (a CNN that tells images from the same images through every geometric transform here, and
catches 95-98 % of transformed samples) called none of the samples of a run with p held at 0.4
augmented."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Rand = Callable[..., Tensor]  # rand(*shape) -> uniform [0, 1) numbers of this rank, from the augmentation stream

P_MAX = 0.4  # the largest p: measured non-leaking on Fashion-MNIST at 0.4, leaking at 0.6 and 0.8
INTERVAL = 4  # D steps between adjustments of p (as in StyleGAN2-ADA)


def _normal(rand: Rand, *shape: int) -> Tensor:
    """Standard normal numbers made from the uniform stream (inverse CDF)."""
    u = rand(*shape).clamp(1e-6, 1 - 1e-6)
    return torch.erfinv(2 * u - 1) * math.sqrt(2)


def _gate(rand: Rand, B: int, p: Tensor) -> Tensor:
    """(B,) booleans: which images get a transform this time (each with probability p)."""
    return rand(B) < p


def _mat(B: int, device, rows) -> Tensor:
    """(B, 3, 3) homogeneous matrices from rows of (B,) tensors or numbers, in one stack."""
    flat = [v if isinstance(v, Tensor) else torch.full((B,), float(v), device=device) for row in rows for v in row]
    return torch.stack(flat, dim=1).view(B, 3, 3)


def _rotation(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    return _mat(angle.shape[0], angle.device, [[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _scaling(sx: Tensor, sy: Tensor) -> Tensor:
    return _mat(sx.shape[0], sx.device, [[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _translation(tx: Tensor, ty: Tensor) -> Tensor:
    return _mat(tx.shape[0], tx.device, [[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def geometry(B: int, H: int, W: int, rand: Rand, p: Tensor, device) -> tuple[Tensor, Tensor]:
    """(the (B, 3, 3) sampling matrices in normalised coordinates, (B,) whether any transform applies)."""
    one = torch.ones(B, device=device)
    M = torch.eye(3, device=device).repeat(B, 1, 1)
    used = torch.zeros(B, dtype=torch.bool, device=device)

    def apply(gate: Tensor, T: Tensor) -> None:
        nonlocal M, used
        M = M @ torch.where(gate[:, None, None], T, torch.eye(3, device=device))
        used = used | gate

    g = _gate(rand, B, p)  # x-flip
    apply(g, _scaling(1 - 2 * (rand(B) < 0.5).float(), one))
    g = _gate(rand, B, p)  # rotation by k * 90 degrees
    apply(g, _rotation((rand(B) * 4).floor() * (math.pi / 2)))
    g = _gate(rand, B, p)  # integer translation, up to 1/8 of the image, in whole pixels
    t = (rand(B, 2) * 2 - 1) * 0.125
    apply(g, _translation((t[:, 0] * W).round() * 2 / W, (t[:, 1] * H).round() * 2 / H))
    g = _gate(rand, B, p)  # isotropic scaling, log2-normal with std 0.2
    s = torch.exp2(_normal(rand, B) * 0.2)
    apply(g, _scaling(s, s))
    p_rot = 1 - torch.sqrt((1 - p).clamp(min=0))  # two rotations: together applied with probability p
    g = _gate(rand, B, p_rot)  # arbitrary rotation
    apply(g, _rotation((rand(B) * 2 - 1) * math.pi))
    g = _gate(rand, B, p)  # anisotropic scaling
    s = torch.exp2(_normal(rand, B) * 0.2)
    apply(g, _scaling(s, 1 / s))
    g = _gate(rand, B, p_rot)  # arbitrary rotation
    apply(g, _rotation((rand(B) * 2 - 1) * math.pi))
    g = _gate(rand, B, p)  # fractional translation, normal with std 1/8 of the image
    t = _normal(rand, B, 2) * 0.125 * 2
    apply(g, _translation(t[:, 0], t[:, 1]))
    return M, used


def colour(x: Tensor, rand: Rand, p: Tensor) -> Tensor:
    """Brightness and contrast (any channel count); luma flip, hue and saturation on RGB."""
    B, C = x.shape[:2]
    g = _gate(rand, B, p)  # brightness: add a normal number with std 0.2
    x = x + torch.where(g, _normal(rand, B) * 0.2, 0)[:, None, None, None].to(x.dtype)
    g = _gate(rand, B, p)  # contrast: scale about 0 (the data's middle) by a log2-normal with std 0.5
    x = x * torch.where(g, torch.exp2(_normal(rand, B) * 0.5), 1)[:, None, None, None].to(x.dtype)
    if C != 3:
        return x
    v = torch.full((3,), 1 / math.sqrt(3), device=x.device)  # the luma axis
    I = torch.eye(3, device=x.device)
    vv = torch.outer(v, v)
    g = _gate(rand, B, p) & (rand(B) < 0.5)  # luma flip: mirror the colour along the luma axis
    M = torch.where(g[:, None, None], I - 2 * vv, I)
    g = _gate(rand, B, p)  # hue rotation about the luma axis, uniform angle
    a = torch.where(g, (rand(B) * 2 - 1) * math.pi, 0)[:, None, None]
    K = torch.linalg.cross(v.expand(3, 3), I, dim=1).T  # K c = v x c (made on the device: no host copy)
    M = (vv + torch.cos(a) * (I - vv) + torch.sin(a) * K) @ M  # Rodrigues' rotation
    g = _gate(rand, B, p)  # saturation: scale the part off the luma axis by a log2-normal with std 1
    s = torch.where(g, torch.exp2(_normal(rand, B)), 1)[:, None, None]
    M = (vv + s * (I - vv)) @ M
    return torch.einsum("bij,bjhw->bihw", M.to(x.dtype), x)


def ada_augment(x: Tensor, rand: Rand, p: Tensor) -> Tensor:
    """x (B, C, H, W) in [-1, 1] through the pipeline with probability p (a 0-dim device tensor, so
    no step waits for the host to read it). The random numbers drawn do not depend on p."""
    B, C, H, W = x.shape
    M, used = geometry(B, H, W, rand, p, x.device)
    x = torch.where(used[:, None, None, None], resample(x, M), x)  # untouched images stay exactly as they were
    return colour(x, rand, p)


def resample(x: Tensor, M: Tensor) -> Tensor:
    """x sampled at M's positions (bilinear, reflected at the borders): pixel centres map onto pixel
    centres, so flips, quarter turns and whole-pixel shifts move pixels exactly."""
    grid = F.affine_grid(M[:, :2].to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def adjust(p: Tensor, r_t: Tensor, target: float, images: int, speed: int) -> Tensor:
    """p after an adjustment: up by images/speed when r_t is above the target, down when below,
    kept in [0, P_MAX]. `images`: real images D saw since the last adjustment (every rank's);
    `speed`: images it takes p to go from 0 to 1. On the device, no host sync."""
    return (p + torch.sign(r_t - target) * (images / speed)).clamp(0, P_MAX)
