"""Augmenting every image D sees, real and generated alike, in D's step and in G's, so that a D
trained on a few thousand images cannot simply memorise them: DiffAugment (Zhao et al. 2020,
"Differentiable Augmentation for Data-Efficient GAN Training"). Every transform is differentiable
in the image, so G learns through it; its randomness comes from the run's augmentation stream
(`rand`; not the stream z comes from), so a resumed run draws the same augmentations, every DDP rank
draws its own share of one draw, and the run sees the same z as the same run without augmentation.

Images are (B, C, H, W) in [-1, 1]. Pixels that a translation or a cutout uncovers take FILL, the
data's darkest value (Fashion-MNIST's background); colour saturation applies to RGB images only.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .ada import ada_augment

FILL = -1.0  # what uncovered pixels become
Rand = Callable[..., Tensor]  # rand(*shape) -> uniform [0, 1) numbers of this rank, from the augmentation stream


def brightness(x: Tensor, rand: Rand) -> Tensor:
    return x + (rand(x.shape[0], 1, 1, 1).to(x.dtype) - 0.5)


def saturation(x: Tensor, rand: Rand) -> Tensor:
    if x.shape[1] == 1:
        return x  # (one channel has no saturation)
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (rand(x.shape[0], 1, 1, 1).to(x.dtype) * 2) + mean


def contrast(x: Tensor, rand: Rand) -> Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (rand(x.shape[0], 1, 1, 1).to(x.dtype) + 0.5) + mean


def translation(x: Tensor, rand: Rand, ratio: float = 0.125) -> Tensor:
    """Each image shifted by up to `ratio` of its size in both directions (whole pixels)."""
    B, _, H, W = x.shape
    sh, sw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    dy = (rand(B, 1, 1) * (2 * sh + 1)).long() - sh  # (B, 1, 1) in [-sh, sh]
    dx = (rand(B, 1, 1) * (2 * sw + 1)).long() - sw
    rows = torch.arange(H, device=x.device)[None, :, None] - dy  # (B, H, 1): source row of each target row
    cols = torch.arange(W, device=x.device)[None, None, :] - dx  # (B, 1, W)
    inside = ((rows >= 0) & (rows < H) & (cols >= 0) & (cols < W))[:, None]  # (B, 1, H, W)
    flat = (rows.clamp(0, H - 1) * W + cols.clamp(0, W - 1)).view(B, 1, H * W).expand(-1, x.shape[1], -1)
    moved = x.reshape(B, x.shape[1], H * W).gather(2, flat).view_as(x)
    return torch.where(inside, moved, torch.full_like(x, FILL))


def cutout(x: Tensor, rand: Rand, ratio: float = 0.5) -> Tensor:
    """A square of `ratio` of the image's size, at a random place, set to FILL."""
    B, _, H, W = x.shape
    ch, cw = int(H * ratio + 0.5), int(W * ratio + 0.5)
    cy = (rand(B, 1, 1) * (H + 1 - ch % 2)).long()  # the square's centre, as in DiffAugment's code
    cx = (rand(B, 1, 1) * (W + 1 - cw % 2)).long()
    rows = torch.arange(H, device=x.device)[None, :, None]
    cols = torch.arange(W, device=x.device)[None, None, :]
    top, left = cy - ch // 2, cx - cw // 2  # the square covers [top, top + ch) x [left, left + cw), clipped
    cut = (rows >= top) & (rows < top + ch) & (cols >= left) & (cols < left + cw)  # (B, H, W)
    return torch.where(cut[:, None], torch.full_like(x, FILL), x)


# DiffAugment's policies by name, each a list of transforms applied in order.
POLICIES: dict[str, list[Callable[[Tensor, Rand], Tensor]]] = {
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


def parse_policy(text: str) -> list[str]:
    """'color,translation,cutout' -> its names, checked (ValueError naming the valid ones)."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown or not names:
        raise ValueError(f"unknown DiffAugment policy {', '.join(unknown) or repr(text)}; "
                         f"valid: comma-separated {', '.join(POLICIES)}")
    return names


def diffaugment(x: Tensor, rand: Rand, policy: list[str]) -> Tensor:
    """x with every transform of the policy applied, each with fresh random parameters per image."""
    for name in policy:
        for transform in POLICIES[name]:
            x = transform(x, rand)
    return x


def make_augment(kind: str, policy: str, p: Tensor | None = None) -> Callable[[Tensor, Rand], Tensor] | None:
    """The augmentation a config asks for, as x, rand -> x; None for none (nothing is drawn then,
    so a run without augmentation draws exactly the noise it always drew). For ada, `p` is the
    0-dim device tensor holding the probability, which its adjustment updates in place."""
    if kind == "none":
        return None
    if kind == "ada":
        return lambda x, rand: ada_augment(x, rand, p)
    names = parse_policy(policy)
    return lambda x, rand: diffaugment(x, rand, names)
