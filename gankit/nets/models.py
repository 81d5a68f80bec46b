"""Generators and discriminators of the course labs, built exactly as the labs build them.

Architectures follow the labs' code: the MLP GAN of Goodfellow et al. 2014 as written in
PyTorch-GAN (`mlp`, including its BatchNorm1d(eps=0.8)), the DCGAN of Radford et al. 2015 as in
the PyTorch DCGAN tutorial adapted to 28x28 (`dcgan`), the upsampling CNN of PyTorch-GAN
(`cnn-upsample`) and the InfoGAN-style fully connected DCGAN of lab 6 (`dcgan-fc`).

Contracts every entry keeps (tools rely on them, tests check them):
- G maps z of shape (B, z_dim) to images (B, C, H, W) in [-1, 1]; models that need
  (B, z_dim, 1, 1) reshape inside. G exposes `z_dim`, `num_classes` and `img_shape`.
- D maps images to logits of shape (B,). No sigmoid here: it lives in the objective.
- Models never import the objectives. build_models (gankit.nets) adds the conditional variants.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..errors import ConfigError


class Generator(nn.Module):
    """A latent-to-image network: `net` maps z, reshaped to `z_view`, to an image batch."""

    def __init__(self, net: nn.Module, z_dim: int, img_shape: tuple[int, int, int],
                 z_view: tuple[int, ...] = ()):
        super().__init__()
        self.net = net
        self.z_dim = z_dim
        self.num_classes = 0
        self.img_shape = tuple(img_shape)
        self.z_view = tuple(z_view)  # e.g. (z_dim, 1, 1) for transposed-conv generators

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"G expects z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        if self.z_view:
            z = z.view(z.shape[0], *self.z_view)  # (B, z_dim) -> (B, z_dim, 1, 1)
        x = self.net(z)
        return x.view(x.shape[0], *self.img_shape)  # (B, C, H, W)


class Discriminator(nn.Module):
    """An image-to-logit network; the output is flattened to (B,). `decoders`: the self-supervision
    some families add on real images (gankit.nets.fastgan.Decoders), None for the others."""

    def __init__(self, net: nn.Module, img_shape: tuple[int, int, int]):
        super().__init__()
        self.net = net
        self.img_shape = tuple(img_shape)
        self.decoders = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0])  # (B, 1, 1, 1) or (B, 1) -> (B,)

    def split_logits(self, out: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(real/fake logits, no class logits): the layout every discriminator answers for its own
        output (an AC-GAN D also returns class logits; gankit.nets.conditional)."""
        return out, None

    def critic(self, x: torch.Tensor) -> torch.Tensor:
        """The real/fake logits (B,): what a gradient penalty differentiates."""
        return self(x)


D_NORMS = ("batch", "layer", "none", "spectral")


def _norm2d(kind: str, channels: int, eps: float = 1e-5) -> nn.Module:
    """The discriminator's normalisation layer. 'layer' is GroupNorm(1, C), i.e. LayerNorm over
    (C, H, W) with per-channel affine, which Gulrajani et al. 2017 recommend for WGAN-GP critics.
    'spectral' has no layer here: it normalises D's weights instead (see spectral_normalize)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels, eps=eps)
    if kind == "layer":
        return nn.GroupNorm(1, channels, eps=eps)
    if kind in ("none", "spectral"):
        return nn.Identity()
    raise ConfigError(f"unknown d_norm '{kind}'; valid: {', '.join(D_NORMS)}")


def spectral_normalize(module: nn.Module) -> None:
    """Spectral normalisation (Miyato et al. 2018) of every convolution, linear layer and
    embedding in `module`: each weight is divided by its largest singular value, estimated by
    one power iteration per forward pass in training mode (the estimate's vectors are buffers,
    so checkpoints and resume carry them). Applied after initialisation: the raw weight is then
    `parametrizations.weight.original`."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            spectral_norm(m)


# Builders take the resolved Config and return (G, D). The labs' models make (channels, 28, 28).

def mlp(cfg) -> tuple[Generator, Discriminator]:
    c, h, w = img_shape = (cfg.channels, 28, 28)
    n = c * h * w
    G = nn.Sequential(
        nn.Linear(cfg.z_dim, 256), nn.LeakyReLU(0.2), nn.BatchNorm1d(256, eps=0.8),
        nn.Linear(256, 512), nn.LeakyReLU(0.2), nn.BatchNorm1d(512, eps=0.8),
        nn.Linear(512, n), nn.Tanh())
    D = nn.Sequential(
        nn.Flatten(), nn.Linear(n, 512), nn.LeakyReLU(0.2),
        nn.Linear(512, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))
    return Generator(G, cfg.z_dim, img_shape), Discriminator(D, img_shape)


def mlp_lab6(cfg) -> tuple[Generator, Discriminator]:
    c, h, w = img_shape = (cfg.channels, 28, 28)
    n, hd = c * h * w, cfg.hidden_dim
    G = nn.Sequential(
        nn.Linear(cfg.z_dim, hd), nn.ReLU(), nn.Linear(hd, hd), nn.ReLU(),
        nn.Linear(hd, n), nn.Tanh())
    D = nn.Sequential(
        nn.Flatten(), nn.Linear(n, hd), nn.LeakyReLU(0.1), nn.Linear(hd, hd), nn.LeakyReLU(0.1),
        nn.Linear(hd, 1))
    return Generator(G, cfg.z_dim, img_shape), Discriminator(D, img_shape)


def dcgan(cfg) -> tuple[Generator, Discriminator]:
    """The DCGAN for 28x28; widths from g_width/d_width (64: 512-256-128 in G, 64-128-256 in D)."""
    c, g, d = cfg.channels, cfg.g_width, cfg.d_width
    img_shape = (c, 28, 28)
    G = nn.Sequential(
        nn.ConvTranspose2d(cfg.z_dim, 8 * g, 4, 1, 0, bias=False), nn.BatchNorm2d(8 * g), nn.ReLU(True),  # 4x4
        nn.ConvTranspose2d(8 * g, 4 * g, 3, 2, 1, bias=False), nn.BatchNorm2d(4 * g), nn.ReLU(True),  # 7x7
        nn.ConvTranspose2d(4 * g, 2 * g, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * g), nn.ReLU(True),  # 14x14
        nn.ConvTranspose2d(2 * g, c, 4, 2, 1, bias=False), nn.Tanh())  # 28x28
    D = nn.Sequential(
        nn.Conv2d(c, d, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 14x14
        nn.Conv2d(d, 2 * d, 4, 2, 1, bias=False), _norm2d(cfg.d_norm, 2 * d), nn.LeakyReLU(0.2, inplace=True),  # 7x7
        nn.Conv2d(2 * d, 4 * d, 3, 2, 1, bias=False), _norm2d(cfg.d_norm, 4 * d), nn.LeakyReLU(0.2, inplace=True),  # 4x4
        nn.Conv2d(4 * d, 1, 4, 1, 0, bias=False))  # 1x1
    return Generator(G, cfg.z_dim, img_shape, (cfg.z_dim, 1, 1)), Discriminator(D, img_shape)


def cnn_upsample(cfg) -> tuple[Generator, Discriminator]:
    c = cfg.channels
    img_shape = (c, 28, 28)
    G = nn.Sequential(
        nn.Linear(cfg.z_dim, 128 * 7 * 7), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128),
        nn.Upsample(scale_factor=2),  # 14x14
        nn.Conv2d(128, 128, 3, 1, 1), nn.BatchNorm2d(128, eps=0.8), nn.LeakyReLU(0.2, inplace=True),
        nn.Upsample(scale_factor=2),  # 28x28
        nn.Conv2d(128, 64, 3, 1, 1), nn.BatchNorm2d(64, eps=0.8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(64, c, 3, 1, 1), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(c, 64, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),  # 14x14
        nn.Conv2d(64, 128, 4, 2, 1), _norm2d(cfg.d_norm, 128), nn.LeakyReLU(0.2, inplace=True),  # 7x7
        nn.Conv2d(128, 256, 4, 1, 0), _norm2d(cfg.d_norm, 256), nn.LeakyReLU(0.2, inplace=True),  # 4x4
        nn.Conv2d(256, 1, 4, 1, 0))  # 1x1
    return Generator(G, cfg.z_dim, img_shape), Discriminator(D, img_shape)


def dcgan_fc(cfg) -> tuple[Generator, Discriminator]:
    c = cfg.channels
    img_shape = (c, 28, 28)
    G = nn.Sequential(
        nn.Linear(cfg.z_dim, 1024), nn.BatchNorm1d(1024), nn.ReLU(True),
        nn.Linear(1024, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(True),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(True),  # 14x14
        nn.ConvTranspose2d(64, c, 4, 2, 1), nn.Tanh())  # 28x28
    D = nn.Sequential(
        nn.Conv2d(c, 32, 5), nn.LeakyReLU(0.1, inplace=True), nn.MaxPool2d(2),  # 24 -> 12
        nn.Conv2d(32, 64, 5), nn.LeakyReLU(0.1, inplace=True), nn.MaxPool2d(2),  # 8 -> 4
        nn.Flatten(), nn.Linear(64 * 4 * 4, 1024), nn.LeakyReLU(0.1, inplace=True),
        nn.Linear(1024, 1))
    return Generator(G, cfg.z_dim, img_shape), Discriminator(D, img_shape)


# Higher resolutions. Builders read the base widths g_width (ngf) and d_width (ndf).

def dcgan_k5(size: int):
    """The DCGAN of our users' face experiments at `size` (32, 64, 128): 5x5 kernels, stride 2,
    padding 2, one more layer per doubling. G: z -> 4x4 (ConvT 4x4 from 1x1) -> doublings by
    ConvT(5, 2, 2, output_padding 1) -> tanh. D mirrors it with Conv(5, 2, 2) down to a 4x4 map,
    which one 4x4 convolution takes straight to 1x1. Widths halve per doubling in G and double
    in D, capped at 8x the base width."""
    doublings = {32: 3, 64: 4, 128: 5}[size]

    def build(cfg) -> tuple[Generator, Discriminator]:
        c, ngf, ndf = cfg.channels, cfg.g_width, cfg.d_width
        img_shape = (c, size, size)
        g_ch = [ngf * min(8, 2 ** (doublings - 1 - i)) for i in range(doublings)]  # e.g. 512 256 128 64
        g = [nn.ConvTranspose2d(cfg.z_dim, g_ch[0], 4, 1, 0, bias=False), nn.BatchNorm2d(g_ch[0]), nn.ReLU(True)]
        for a, b in zip(g_ch, g_ch[1:]):
            g += [nn.ConvTranspose2d(a, b, 5, 2, 2, output_padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        g += [nn.ConvTranspose2d(g_ch[-1], c, 5, 2, 2, output_padding=1, bias=False), nn.Tanh()]
        d_ch = [ndf * min(8, 2 ** i) for i in range(doublings)]  # e.g. 64 128 256 512
        d = [nn.Conv2d(c, d_ch[0], 5, 2, 2, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(d_ch, d_ch[1:]):
            d += [nn.Conv2d(a, b, 5, 2, 2, bias=False), _norm2d(cfg.d_norm, b), nn.LeakyReLU(0.2, inplace=True)]
        d += [nn.Conv2d(d_ch[-1], 1, 4, 1, 0, bias=False)]  # 4x4 -> 1x1
        return (Generator(nn.Sequential(*g), cfg.z_dim, img_shape, (cfg.z_dim, 1, 1)),
                Discriminator(nn.Sequential(*d), img_shape))
    return build


def dcgan64_paper(cfg) -> tuple[Generator, Discriminator]:
    """The DCGAN of Radford et al. 2015 at 64x64 (4x4 kernels, stride 2, padding 1), as in the
    PyTorch DCGAN tutorial."""
    c, ngf, ndf = cfg.channels, cfg.g_width, cfg.d_width
    img_shape = (c, 64, 64)
    G = nn.Sequential(
        nn.ConvTranspose2d(cfg.z_dim, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),  # 4x4
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),  # 8x8
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),  # 16x16
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),  # 32x32
        nn.ConvTranspose2d(ngf, c, 4, 2, 1, bias=False), nn.Tanh())  # 64x64
    D = nn.Sequential(
        nn.Conv2d(c, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),  # 32x32
        nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), _norm2d(cfg.d_norm, ndf * 2), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), _norm2d(cfg.d_norm, ndf * 4), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), _norm2d(cfg.d_norm, ndf * 8), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False))  # 4x4 -> 1x1
    return Generator(G, cfg.z_dim, img_shape, (cfg.z_dim, 1, 1)), Discriminator(D, img_shape)


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[..., tuple[Generator, Discriminator]]
    description: str
    d_norm: bool  # whether D has normalisation layers that `d_norm` selects
    size: int = 28  # side of the images it makes and judges
    own_init: bool = False  # initialises itself (the resnet family's fix-up): `init` does not apply


MODELS: dict[str, ModelSpec] = {
    "mlp": ModelSpec(mlp, "lab 4 MLP GAN (PyTorch-GAN), BatchNorm1d(eps=0.8) in G", False),
    "mlp-lab6": ModelSpec(mlp_lab6, "lab 6 MLP GAN, hidden width `hidden_dim`", False),
    "dcgan": ModelSpec(dcgan, "DCGAN (Radford et al. 2015) for 28x28, bias-free", True),
    "cnn-upsample": ModelSpec(cnn_upsample, "lab 4 CNN GAN: Linear + Upsample + Conv", True),
    "dcgan-fc": ModelSpec(dcgan_fc, "lab 6 DCGAN: FC layers + 2 ConvT; conv/maxpool D", False),
    "dcgan32": ModelSpec(dcgan_k5(32), "DCGAN with 5x5 kernels at 32x32 (3 doublings)", True, 32),
    "dcgan64": ModelSpec(dcgan_k5(64), "DCGAN with 5x5 kernels at 64x64 (faces64)", True, 64),
    "dcgan128": ModelSpec(dcgan_k5(128), "DCGAN with 5x5 kernels at 128x128 (faces128)", True, 128),
    "dcgan64-paper": ModelSpec(dcgan64_paper, "DCGAN of the paper at 64x64, 4x4 kernels", True, 64),
}
RESNET_SIZES = (28, 32, 64, 128)  # the resnet family (gankit.nets.resnet), registered by gankit.nets


def init_normal02(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): weights N(0, 0.02), norm scales N(1, 0.02),
    biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def has_batchnorm(module: nn.Module) -> bool:
    """Whether BatchNorm mixes the batch in what `module` computes: a D's reconstruction decoders
    (which never touch its logits, so no penalty on them) do not count."""
    aside = {id(m) for m in module.decoders.modules()} if getattr(module, "decoders", None) is not None else set()
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in aside for m in module.modules())


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
