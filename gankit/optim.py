"""Optimizers by name. Each takes (params, lr, betas, weight_decay); RMSprop reads its
smoothing constant alpha from betas[1] so every optimizer is configured by the same fields."""
from __future__ import annotations

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
