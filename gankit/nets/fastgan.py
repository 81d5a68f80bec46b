"""The `fastgan` family: a small-data GAN after FastGAN (Liu, Zhu, Song, Elgammal, ICLR 2021,
"Towards Faster and Stabilized GAN Training for High-fidelity Few-shot Image Synthesis"), sized for
a CPU at 32, 64 and 128 pixels. The facts it follows, not its code:

- G: z -> a 4x4 map (a 4x4 transposed convolution, BatchNorm, GLU), then one up-block per
  doubling: nearest 2x, 3x3 convolution to twice the channels, BatchNorm, GLU (the gated linear
  unit halves them again), up to half the image's side. Skip-layer excitation (SLE): a
  low-resolution map, pooled to 4x4 and brought to 1x1 by a 4x4 convolution, a leaky ReLU, a 1x1
  convolution and a sigmoid, gates the channels of a map 4x larger (4 -> 16 at 32 px, 8 -> 32 at
  64 px, and 8 -> 32, 16 -> 64 at 128 px). A nearest 2x, a 3x3 convolution and tanh make the image
  (no block at full resolution: it would be the largest layer of all, its 3x3 convolution over every
  pixel at twice the channels).
- D: down-blocks to 8x8, each the mean of a strided 4x4 convolution and a 2x2 average pool with a
  1x1 convolution (both normalised, leaky ReLU), then a 4x4 convolution to a 5x5 map of logits,
  averaged. D is regularised as a self-supervised auto-encoder: on real images only, a small
  decoder (up-blocks as G's) reconstructs the image D saw (at 32x32) from its 8x8 features, and a
  second one a random quarter of it from the matching quarter of its 16x16 features (the crop
  variant); the mean squared error of each is added to D's loss (`recon_weight`). FastGAN uses a
  perceptual loss there; gankit uses MSE, as lucidrains/lightweight-gan does, so nothing
  pretrained is needed offline.
- Hinge loss, DiffAugment (colour, translation) and an EMA of G are the recipe's (the `fastgan`
  presets); the family takes every objective and augmentation.

Channels: `width` (g_width, d_width) at 64x64, doubling per halving below it, capped at 8x,
halved at 128x128. D's normalisation is `d_norm` (BatchNorm as FastGAN by default).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .models import Discriminator, Generator, _norm2d

SIZES = (32, 64, 128)
DECODERS = ("none", "image", "crop", "both")  # which reconstructions D trains on (`decoder`)
TARGET = 32  # side of the reconstructions and of the real images they are compared with


def channels(width: int, side: int) -> int:
    """Channels of a map of `side` pixels: width at 64, doubling per halving (at most 8x), half at 128."""
    return max(8, width // 2) if side >= 128 else width * min(8, 64 // side)


class UpBlock(nn.Module):
    """Nearest 2x, 3x3 convolution to 2 x cout, BatchNorm, GLU (cout channels)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(cin, 2 * cout, 3, padding=1, bias=False), nn.BatchNorm2d(2 * cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.norm(self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))), dim=1)


class Excite(nn.Module):
    """Skip-layer excitation: `low`, pooled to 4x4, becomes a per-channel gate in (0, 1) of `high`."""

    def __init__(self, c_low: int, c_high: int):
        super().__init__()
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Conv2d(c_low, c_high, 4, bias=False), nn.LeakyReLU(0.1),
                                  nn.Conv2d(c_high, c_high, 1, bias=False), nn.Sigmoid())

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return high * self.gate(low)


class FastNet(nn.Module):
    """G's body: z (B, z_dim) -> image (B, C, S, S), with the excitations between its maps. The maps
    stop at S/2: a nearest 2x and one 3x3 convolution make the image (a block at full resolution
    would be the largest layer of all)."""

    def __init__(self, z_dim: int, width: int, c: int, size: int):
        super().__init__()
        sides = [4 * 2 ** i for i in range(int(math.log2(size // 8)) + 1)]  # 4, 8, ..., size / 2
        ch = [channels(width, s) for s in sides]
        self.start = nn.Sequential(nn.ConvTranspose2d(z_dim, 2 * ch[0], 4, bias=False), nn.BatchNorm2d(2 * ch[0]),
                                   nn.GLU(dim=1))
        self.ups = nn.ModuleList(UpBlock(ch[i], ch[i + 1]) for i in range(len(sides) - 1))
        self.pairs = [(sides.index(lo), sides.index(hi)) for lo, hi in EXCITE[size]]
        self.excite = nn.ModuleList(Excite(ch[lo], ch[hi]) for lo, hi in self.pairs)
        self.to_img = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), nn.Conv2d(ch[-1], c, 3, padding=1),
                                    nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        maps = [self.start(z[:, :, None, None])]
        for up in self.ups:
            h = up(maps[-1])
            for (lo, hi), excite in zip(self.pairs, self.excite):
                if hi == len(maps):
                    h = excite(maps[lo], h)
            maps.append(h)
        return self.to_img(maps[-1])


EXCITE = {32: [(4, 16)], 64: [(8, 32)], 128: [(8, 32), (16, 64)]}  # (low, high) sides of each excitation


class DownBlock(nn.Module):
    """The mean of a strided 4x4 convolution and 2x2 pooling + 1x1 convolution, each normalised and leaky."""

    def __init__(self, cin: int, cout: int, norm: str):
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), _norm2d(norm, cout), nn.LeakyReLU(0.2))
        self.skip = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(cin, cout, 1, bias=False), _norm2d(norm, cout),
                                  nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.skip(x)) / 2


class Head(nn.Module):
    """8x8 features -> a 5x5 map of logits -> their mean, (B, 1)."""

    def __init__(self, cin: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, 1, 4, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv(h).mean((2, 3))


def decoder(cin: int, width: int, c: int, side: int) -> nn.Sequential:
    """Up-blocks from a map of `side` pixels to TARGET, `width` channels after the first and half
    that after each further one (the decoders are small: their cost is D's on a CPU), then a 3x3
    convolution and tanh."""
    layers, s, cur = [], side, cin
    while s < TARGET:
        s *= 2
        out = width if not layers else max(8, cur // 2)
        layers.append(UpBlock(cur, out))
        cur = out
    return nn.Sequential(*layers, nn.Conv2d(cur, c, 3, padding=1), nn.Tanh())


class Decoders(nn.Module):
    """D's self-supervision: reconstructions of the real images D saw from its 8x8 features (and a
    random quarter from its 16x16 ones). `net`'s 8x8 and 16x16 layers hand their outputs here while
    `watching` is on (the loop turns it on for the real images' pass only), wherever D runs: in
    the family's D, a conditional wrapper around it, a DDP wrapper."""

    def __init__(self, kind: str, layer8: nn.Module, layer16: nn.Module, c8: int, c16: int, width: int, c: int):
        super().__init__()
        self.kind, self.watching, self.seen = kind, False, {}
        self.image = decoder(c8, width, c, 8) if kind in ("image", "both") else None
        self.crop = decoder(c16, width, c, 8) if kind in ("crop", "both") else None
        layer8.register_forward_hook(lambda m, i, out: self._see(8, out))
        layer16.register_forward_hook(lambda m, i, out: self._see(16, out))

    def _see(self, side: int, out: torch.Tensor) -> None:
        if self.watching:
            self.seen[side] = out

    def loss(self, x: torch.Tensor, corner: torch.Tensor) -> torch.Tensor:
        """The mean squared reconstruction error of the real images `x` (as D saw them) from the
        features of D's last watched pass; `corner` (B,) in [0, 4) picks each image's quarter for the
        crop decoder. Clears what it saw."""
        seen, self.seen = self.seen, {}
        total = x.new_zeros((), dtype=torch.float32)
        if self.image is not None:
            total = total + F.mse_loss(self.image(seen[8]).float(), _resize(x, TARGET).float())
        if self.crop is not None:
            f16, side = seen[16], x.shape[-1] // 2
            rows, cols = (corner // 2).long(), (corner % 2).long()
            feats = _quarters(f16, 8, rows, cols)  # (B, C, 8, 8): the chosen quarter of each image's 16x16 map
            parts = _quarters(x, side, rows, cols)
            total = total + F.mse_loss(self.crop(feats).float(), _resize(parts, TARGET).float())
        return total


def _resize(x: torch.Tensor, side: int) -> torch.Tensor:
    """Images to `side` pixels: averaged down (or nearest up, for a quarter of a 32x32 image)."""
    if x.shape[-1] > side:
        return F.adaptive_avg_pool2d(x, side)
    return F.interpolate(x, size=side, mode="nearest") if x.shape[-1] < side else x


def _quarters(x: torch.Tensor, side: int, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The (row, col) quarter of side `side` of each map in x (B, C, 2 side, 2 side), without a host sync."""
    B, C = x.shape[:2]
    q = x.reshape(B, C, 2, side, 2, side).permute(0, 2, 4, 1, 3, 5).reshape(B, 4, C, side, side)
    return q[torch.arange(B, device=x.device), rows * 2 + cols]


def family(size: int):
    """The builder of the family at `size` (32, 64, 128)."""

    def build(cfg) -> tuple[Generator, Discriminator]:
        c = cfg.channels
        img_shape = (c, size, size)
        G = Generator(FastNet(cfg.z_dim, cfg.g_width, c, size), cfg.z_dim, img_shape)
        side = size if size == 32 else size // 2  # (a 4x4 stride-2 convolution first at 64 and 128 px)
        first = channels(cfg.d_width, side)
        d: list[nn.Module] = [nn.Conv2d(c, first, 3 if size == 32 else 4, 1 if size == 32 else 2, 1, bias=False),
                              nn.LeakyReLU(0.2)]
        cur, at = first, {}
        while side > 8:
            side //= 2
            d.append(DownBlock(cur, channels(cfg.d_width, side), cfg.d_norm))
            cur = channels(cfg.d_width, side)
            at[side] = d[-1]
        d += [nn.Conv2d(cur, cur, 1, bias=False), _norm2d(cfg.d_norm, cur), nn.LeakyReLU(0.2), Head(cur)]
        kind = "both" if cfg.decoder == "auto" else cfg.decoder
        decoders = None if kind == "none" else Decoders(kind, at[8], at[16], channels(cfg.d_width, 8),
                                                        channels(cfg.d_width, 16), cfg.d_width, c)
        D = Discriminator(nn.Sequential(*d), img_shape)
        D.decoders = decoders  # (a submodule of D: trained, checkpointed and wrapped with it)
        return G, D
    return build
