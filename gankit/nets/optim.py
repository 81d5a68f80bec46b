"""Optimizers by name. Each takes (params, lr, betas, weight_decay); RMSprop reads its
smoothing constant alpha from betas[1] so every optimizer is configured by the same fields.

LR_SCHEDULES map the fraction of training done (of its steps, or of its time budget when that is
further along) to a factor on both learning rates, from 1 at the start to `end` at the finish:
the budget-aware decay of Li et al. 2020 ("Budgeted training"), which pix2pix and CycleGAN also
use for GANs (linear to zero). A time budget makes the schedule a function of time, so the
learning rates always reach their end when the budget does, however many steps it buys.
"""
from __future__ import annotations

import math

import torch

OPTIMIZERS = {
    "adam": lambda p, lr, betas, wd, **kw: torch.optim.Adam(p, lr=lr, betas=betas, weight_decay=wd, **kw),
    "adamw": lambda p, lr, betas, wd, **kw: torch.optim.AdamW(p, lr=lr, betas=betas, weight_decay=wd, **kw),
    "rmsprop": lambda p, lr, betas, wd, **kw: torch.optim.RMSprop(p, lr=lr, alpha=betas[1], weight_decay=wd, **kw),
    "sgd": lambda p, lr, betas, wd, **kw: torch.optim.SGD(p, lr=lr, momentum=betas[0], weight_decay=wd, **kw),
}


def make_optimizer(name: str, params, lr: float, betas, weight_decay: float, impl: str = "foreach"):
    """impl: 'foreach' batches the per-parameter updates into a few multi-tensor kernels, 'fused'
    does the whole update in one kernel (Adam/AdamW/SGD; others fall back to foreach), 'loop'
    updates one tensor at a time (the plain path, for comparison)."""
    kw = {"foreach": impl == "foreach"}
    if impl == "fused":
        kw = {"fused": True} if name in ("adam", "adamw", "sgd") else {"foreach": True}
    return OPTIMIZERS[name](list(params), lr, tuple(betas), weight_decay, **kw)


LR_SCHEDULES = {
    "constant": lambda frac, end: 1.0,
    "linear": lambda frac, end: 1.0 - (1.0 - end) * frac,
    "cosine": lambda frac, end: end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * frac)),
}


def lr_factor(schedule: str, frac: float, end: float) -> float:
    """The learning rates' factor after `frac` (clamped to [0, 1]) of training."""
    return LR_SCHEDULES[schedule](min(max(frac, 0.0), 1.0), end)
