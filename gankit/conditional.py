"""Class-conditional generators and discriminators around any model family of gankit.models.

G: the class as a learned embedding joined to z, the cGAN of Mirza & Osindero 2014 as the course
labs (and PyTorch-GAN's cgan.py) write it: G(z, y) = G'([z, embed(y)]), where G' is the family's
own generator built for z_dim + num_classes inputs.

D, chosen by `d_cond`:
- `concat`: the labs' label map. The class's learned H x W map is joined to the image as one more
  channel, and D' is the family's discriminator built for channels + 1.
- `projection`: the projection discriminator of Miyato & Koyama 2018. With phi(x) the features
  before D's last layer and psi that layer, D(x, y) = psi(phi(x)) + <embed(y), phi(x)>.
- `acgan`: the auxiliary classifier of Odena et al. 2017. D(x, y) ignores y and returns, per
  image, its real/fake logit and class logits as one (B, 1 + K) tensor; `split_logits` takes them
  apart and gankit.losses.class_loss scores the classes.

Every wrapper keeps the contracts of gankit.models (G exposes z_dim, num_classes and img_shape; D's
adversarial output is logits), so objectives, EMA, DDP and checkpoints treat them like any model.
Labels are int64 class indices of shape (B,).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .errors import ConfigError
from .models import Discriminator, Generator

D_CONDITIONING = {
    "concat": "the class as a learned H x W map joined to the image as one more channel (the labs')",
    "projection": "projection discriminator (Miyato & Koyama 2018): <embed(y), phi(x)> added to the logit",
    "acgan": "auxiliary classifier (Odena et al. 2017): D also predicts the class, trained with cross-entropy",
}

# Class names of the datasets gankit knows; a folder's classes are its sub-folders' names.
CLASS_NAMES = {
    "fashion-mnist": ["T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                      "ankle boot"],
    "mnist": [str(i) for i in range(10)],
}


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
    """D(x, y) for one of D_CONDITIONING around the family's discriminator `base`."""

    def __init__(self, base: Discriminator, num_classes: int, mode: str):
        super().__init__()
        self.mode, self.num_classes, self.img_shape = mode, num_classes, base.img_shape
        c, h, w = base.img_shape
        if mode == "concat":
            self.base = base  # built for c + 1 channels
            self.embed = nn.Embedding(num_classes, h * w)
            return
        layers = list(base.net.children())
        self.features, self.head = nn.Sequential(*layers[:-1]), layers[-1]
        with torch.no_grad():  # the width of phi(x), from one dry pass in eval mode (no statistics touched)
            self.features.eval()
            width = self.features(torch.zeros(2, c, h, w)).flatten(1).shape[1]
            self.features.train()
        if mode == "projection":
            self.embed = nn.Embedding(num_classes, width)
            nn.init.normal_(self.embed.weight, 0.0, 0.02)  # starts as the unconditional D
        elif mode == "acgan":
            self.classifier = nn.Linear(width, num_classes)
        else:
            raise ConfigError(f"unknown d_cond '{mode}'; valid: {', '.join(D_CONDITIONING)}")

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        if self.mode == "concat":
            _check_labels(y, B, self.num_classes, "D")
            label_map = self.embed(y).to(x.dtype).view(B, 1, *x.shape[2:])
            return self.base(torch.cat([x, label_map], 1))
        h = self.features(x)
        logit = self.head(h).reshape(B)
        phi = h.flatten(1)
        if self.mode == "acgan":
            return torch.cat([logit[:, None], self.classifier(phi)], 1)  # (B, 1 + K)
        _check_labels(y, B, self.num_classes, "D")
        return logit + (self.embed(y).to(phi.dtype) * phi).sum(1)


def split_logits(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(real/fake logits (B,), class logits (B, K) or None) of a discriminator's output."""
    return (out[:, 0], out[:, 1:]) if out.ndim == 2 else (out, None)


def conditional_models(build, cfg) -> tuple[nn.Module, nn.Module]:
    """The family's builder `build` made conditional as cfg.d_cond says."""
    K = cfg.num_classes
    base_G, _ = build(dataclasses.replace(cfg, z_dim=cfg.z_dim + K))
    if cfg.d_cond == "concat":
        _, base_D = build(dataclasses.replace(cfg, channels=cfg.channels + 1))
        base_D.img_shape = (cfg.channels, *base_D.img_shape[1:])
    else:
        _, base_D = build(cfg)
    return ConditionalGenerator(base_G, cfg.z_dim, K), ConditionalDiscriminator(base_D, K, cfg.d_cond)


def class_names(dataset: str, num_classes: int, data_root: str | None = None) -> list[str]:
    """The names of a conditional run's classes, in label order."""
    if dataset == "folder":
        from .folder import class_folders
        return [p.name for p in class_folders(data_root)]
    return CLASS_NAMES.get(dataset, [str(i) for i in range(num_classes)])


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, ..., K-1, 0, 1, ...: n labels with every class as often as n allows (evaluations)."""
    return torch.arange(n) % num_classes


def grid_labels(z: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(z, y, nrow) of a class grid: one row per z, one column per class, so each row holds the
    style of its z and each column one class."""
    rows = max(1, len(z) // num_classes)
    return (z[:rows].repeat_interleave(num_classes, 0), torch.arange(num_classes, device=z.device).repeat(rows),
            num_classes)
