"""GAN objectives on discriminator logits, kept apart from the models.

- bce: the minimax GAN of Goodfellow et al. 2014 with the non-saturating generator loss.
  `softplus(-l) = -log sigmoid(l)`, so this is exactly the labs' Sigmoid + BCELoss, computed
  stably from logits.
- wgan: Wasserstein GAN, Arjovsky et al. 2017 (critic; Lipschitz by weight clipping).
- wgan-gp: the same losses with the gradient penalty of Gulrajani et al. 2017.
- hinge: Lim & Ye 2017 / Miyato et al. 2018.
- lsgan: least squares GAN, Mao et al. 2017 (a=0, b=c=1).
- rpgan: the relativistic pairing GAN (Jolicoeur-Martineau 2019) as R3GAN uses it (Huang et al.
  2024): D's loss softplus(-(D(x) - D(G(z)))), G's softplus(-(D(G(z)) - D(x))), each real image
  paired with one fake. R3GAN adds both zero-centred penalties, R1 on real and R2 on fake images
  (`--r1`, `--r2`, `r1_r2_penalty`); with R1 alone either loss can diverge.

An objective only says how logits become losses, how logits are shown as "D(x)", and the
defaults of its Lipschitz constraint; the training loop applies clipping and the penalty from
the config, so it never asks which objective it runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Objective:
    d_loss: Callable[[Tensor, Tensor], Tensor]  # (d_real, d_fake) logits -> scalar loss of D
    g_loss: Callable[..., Tensor]  # d_fake logits (and d_real, for a relativistic objective) -> scalar loss of G
    score: Callable[[Tensor], Tensor]  # logits -> what is reported as D(x), D(G(z))
    score_label: str  # how plots name that score
    score_is_probability: bool = False  # the score lies in [0, 1] (plots draw 0.5; "D wins" when D(x) - D(G(z)) > 0.98)
    wasserstein: bool = False  # report E[D(x)] - E[D(G(z))], the critic's distance estimate
    default_clip: float = 0.0  # weight clipping bound when the config leaves it unset
    default_gp: float = 0.0  # gradient penalty weight when the config leaves it unset
    balance_scale: float | None = None  # c with c·loss_D = loss_G at the equilibrium (D can't tell); None: no balance index
    relativistic: bool = False  # G's loss compares D(G(z)) with D(x): the G step also scores the real batch
    description: str = ""


def _identity(t: Tensor) -> Tensor:
    return t


OBJECTIVES: dict[str, Objective] = {
    "bce": Objective(
        d_loss=lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
        g_loss=lambda f, r=None: F.softplus(-f).mean(),
        score=torch.sigmoid, score_label="D(.) = sigmoid(logit)", score_is_probability=True, balance_scale=0.5,
        description="minimax GAN, non-saturating G loss (the labs' BCE)"),
    "wgan": Objective(
        d_loss=lambda r, f: f.mean() - r.mean(),
        g_loss=lambda f, r=None: -f.mean(),
        score=_identity, score_label="critic output", wasserstein=True, default_clip=0.01,
        description="Wasserstein GAN with weight clipping"),
    "wgan-gp": Objective(
        d_loss=lambda r, f: f.mean() - r.mean(),
        g_loss=lambda f, r=None: -f.mean(),
        score=_identity, score_label="critic output", wasserstein=True, default_gp=10.0,
        description="Wasserstein GAN with gradient penalty"),
    "hinge": Objective(
        d_loss=lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(),
        g_loss=lambda f, r=None: -f.mean(),
        score=_identity, score_label="D logit",
        description="hinge loss"),
    "lsgan": Objective(
        d_loss=lambda r, f: 0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(),
        g_loss=lambda f, r=None: 0.5 * ((f - 1) ** 2).mean(),
        score=_identity, score_label="D output (target 1 real, 0 fake)", balance_scale=0.5,
        description="least squares GAN"),
    "rpgan": Objective(
        d_loss=lambda r, f: F.softplus(-(r - f)).mean(),
        g_loss=lambda f, r: F.softplus(-(f - r)).mean(),
        score=_identity, score_label="D logit", relativistic=True,
        description="relativistic pairing GAN (R3GAN's loss; use it with --r1 and --r2)"),
}


def gradient_penalty(critic: Callable[..., Tensor], x_real: Tensor, x_fake: Tensor,
                     generator: torch.Generator | None = None, eps: Tensor | None = None,
                     labels: Tensor | None = None) -> Tensor:
    """E[(||grad_x D(x_hat)||_2 - 1)^2] on random interpolates x_hat (Gulrajani et al. 2017).
    `critic` maps images (and, for a conditional D, labels) to real/fake logits (B,): a
    discriminator's `critic` method, which knows its own output layout. The norm is taken in fp32
    whatever precision the forward pass ran in. `eps` (B, 1, 1, 1), the interpolation weights, is
    drawn from `generator` unless given. A conditional D judges the interpolates under the real
    batch's `labels`."""
    if eps is None:
        eps = torch.rand(x_real.shape[0], 1, 1, 1, device=x_real.device, generator=generator)
    x_hat = torch.lerp(x_real, x_fake, eps).requires_grad_(True)
    logits = critic(x_hat) if labels is None else critic(x_hat, labels)
    (grad,) = torch.autograd.grad(logits.float().sum(), x_hat, create_graph=True)
    norm = grad.float().flatten(1).norm(2, dim=1)  # (B,)
    return ((norm - 1) ** 2).mean()


def r1_r2_penalty(logits: Tensor, x: Tensor) -> Tensor:
    """E[||grad_x D(x)||^2] over the batch, the zero-centred penalty of Mescheder et al. 2018: R1
    when x are real images, R2 when they are generated ones. `logits` (B,) must have been computed
    from `x` (which requires grad), so the penalty reuses that forward pass; its graph is kept for
    D's backward. The squared norm is taken in fp32 whatever precision the forward ran in."""
    (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def class_loss(class_logits: Tensor | None, labels: Tensor | None) -> Tensor | float:
    """The AC-GAN class loss (Odena et al. 2017): cross-entropy of D's class logits against the
    labels the images were made or drawn for; 0 for a D without a classifier."""
    if class_logits is None:
        return 0.0
    return F.cross_entropy(class_logits.float(), labels)


@torch.no_grad()
def clip_weights(module: torch.nn.Module, bound: float) -> None:
    """WGAN weight clipping: every parameter into [-bound, bound] (Arjovsky et al. 2017)."""
    params = list(module.parameters())
    torch._foreach_clamp_min_(params, -bound)
    torch._foreach_clamp_max_(params, bound)
