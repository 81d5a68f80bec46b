"""Class-conditional generators and discriminators around any model family of gankit.nets.models.

G: the class as a learned embedding joined to z, the cGAN of Mirza & Osindero 2014 as the course
labs (and PyTorch-GAN's cgan.py) write it: G(z, y) = G'([z, embed(y)]), where G' is the family's
own generator built for z_dim + num_classes inputs.

D, chosen by `d_cond`:
- `concat`: the labs' label map. The class's learned H x W map is joined to the image as one more
  channel, and D' is the family's discriminator built for channels + 1.
- `projection`: the projection discriminator of Miyato & Koyama 2018. With phi(x) the features
  before D's last layer and psi that layer, D(x, y) = psi(phi(x)) + <embed(y), phi(x)>.
- `acgan`: the auxiliary classifier of Odena et al. 2017. D(x, y) ignores y and returns, per
  image, its real/fake logit and class logits as one (B, 1 + K) tensor; its `split_logits` takes them
  apart and gankit.nets.losses.class_loss scores the classes.

Each conditioning is its own class and owns its output layout: `split_logits(out)` gives (real/fake
logits, class logits or None) and `critic(x, y)` the real/fake logits alone.

Every wrapper keeps the contracts of gankit.nets.models (G exposes z_dim, num_classes and img_shape; D's
adversarial output is logits), so objectives, EMA, DDP and checkpoints treat them like any model.
Labels are int64 class indices of shape (B,).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import ConfigError
from .models import Discriminator, Generator


def _check_labels(y: torch.Tensor | None, batch: int, num_classes: int, who: str) -> None:
    if y is None:
        raise ValueError(f"{who} is class-conditional: call it with labels y of shape ({batch},), "
                         f"class indices 0..{num_classes - 1}")
    if y.shape != (batch,):
        raise ValueError(f"{who} expects labels of shape ({batch},), got {tuple(y.shape)}")


class ConditionalGenerator(nn.Module):
    """G(z, y) = base([z, embed(y)]), with `base` built for z_dim + num_classes inputs."""

    def __init__(self, base: Generator, z_dim: int, num_classes: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, num_classes)
        self.base = base
        self.z_dim, self.num_classes, self.img_shape = z_dim, num_classes, base.img_shape

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"G expects z of shape (B, {self.z_dim}), got {tuple(z.shape)}")
        _check_labels(y, len(z), self.num_classes, "G")
        return self.from_embedding(z, self.embed(y))

    def from_embedding(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """G from z and class embeddings e (B, num_classes) given directly, e.g. a blend of two
        classes' embeddings (gankit.latent.class_blend)."""
        return self.base(torch.cat([z, e.to(z.dtype)], 1))


class ConditionalDiscriminator(nn.Module):
    """What the three conditionings share: the class count, the image shape, and the logit layout
    of D's output, which each one owns (`split_logits`, `critic`)."""

    def __init__(self, num_classes: int, img_shape: tuple[int, int, int]):
        super().__init__()
        self.num_classes, self.img_shape = num_classes, tuple(img_shape)
        self.decoders = None  # the family D's self-supervision, carried over by the wrappers that take its layers

    def split_logits(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(real/fake logits (B,), class logits (B, K) or None) of this D's output."""
        return out, None

    def critic(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The real/fake logits alone (B,): what a gradient penalty differentiates."""
        return self.split_logits(self(x, y))[0]


def _features_and_head(base: Discriminator) -> tuple[nn.Sequential, nn.Module, int]:
    """phi (every layer of the family's D but the last), psi (the last) and phi's width, from one
    dry pass in eval mode (no statistics touched)."""
    layers = list(base.net.children())
    features, head = nn.Sequential(*layers[:-1]), layers[-1]
    with torch.no_grad():
        features.eval()
        width = features(torch.zeros(2, *base.img_shape)).flatten(1).shape[1]
        features.train()
    return features, head, width


class ConcatDiscriminator(ConditionalDiscriminator):
    """The labs' label map: the class's learned H x W map joined to the image as one more channel;
    `base` is the family's D built for channels + 1."""

    def __init__(self, base: Discriminator, num_classes: int):
        super().__init__(num_classes, base.img_shape)
        _, h, w = base.img_shape
        self.base = base
        self.embed = nn.Embedding(num_classes, h * w)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        _check_labels(y, B, self.num_classes, "D")
        label_map = self.embed(y).to(x.dtype).view(B, 1, *x.shape[2:])  # (B, 1, H, W)
        return self.base(torch.cat([x, label_map], 1))


class ProjectionDiscriminator(ConditionalDiscriminator):
    """Miyato & Koyama 2018: D(x, y) = psi(phi(x)) + <embed(y), phi(x)>."""

    def __init__(self, base: Discriminator, num_classes: int):
        super().__init__(num_classes, base.img_shape)
        self.features, self.head, width = _features_and_head(base)
        self.decoders = base.decoders  # (its hooks watch the layers that `features` holds)
        self.embed = nn.Embedding(num_classes, width)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)  # starts as the unconditional D

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        h = self.features(x)
        logit = self.head(h).reshape(B)
        phi = h.flatten(1)  # (B, width)
        _check_labels(y, B, self.num_classes, "D")
        return logit + (self.embed(y).to(phi.dtype) * phi).sum(1)


class ACGANDiscriminator(ConditionalDiscriminator):
    """Odena et al. 2017: D ignores y and returns, per image, its real/fake logit and K class logits
    as one (B, 1 + K) tensor; gankit.nets.losses.class_loss scores the classes."""

    def __init__(self, base: Discriminator, num_classes: int):
        super().__init__(num_classes, base.img_shape)
        self.features, self.head, width = _features_and_head(base)
        self.decoders = base.decoders
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        h = self.features(x)
        logit = self.head(h).reshape(B)
        return torch.cat([logit[:, None], self.classifier(h.flatten(1))], 1)  # (B, 1 + K)

    def split_logits(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return out[:, 0], out[:, 1:]


# How a conditional D sees the class: name -> (its class, what it is).
D_CONDITIONING: dict[str, tuple[type[ConditionalDiscriminator], str]] = {
    "concat": (ConcatDiscriminator,
               "the class as a learned H x W map joined to the image as one more channel (the labs')"),
    "projection": (ProjectionDiscriminator,
                   "projection discriminator (Miyato & Koyama 2018): <embed(y), phi(x)> added to the logit"),
    "acgan": (ACGANDiscriminator,
              "auxiliary classifier (Odena et al. 2017): D also predicts the class, trained with cross-entropy"),
}


def conditional_models(build, cfg) -> tuple[nn.Module, nn.Module]:
    """The family's builder `build` made conditional as cfg.d_cond says."""
    if cfg.d_cond not in D_CONDITIONING:
        raise ConfigError(f"unknown d_cond '{cfg.d_cond}'; valid: {', '.join(D_CONDITIONING)}")
    K = cfg.num_classes
    base_G, _ = build(dataclasses.replace(cfg, z_dim=cfg.z_dim + K))
    if cfg.d_cond == "concat":
        _, base_D = build(dataclasses.replace(cfg, channels=cfg.channels + 1))
        base_D.img_shape = (cfg.channels, *base_D.img_shape[1:])
    else:
        _, base_D = build(cfg)
    return ConditionalGenerator(base_G, cfg.z_dim, K), D_CONDITIONING[cfg.d_cond][0](base_D, K)
