"""An exponential moving average of G's weights, updated without any host synchronisation.

torch.optim.swa_utils.AveragedModel reads its update count on the host (`if n_averaged == 0`)
at every update, which stalls a CUDA stream once per G step. Here the count is a device tensor
and the update is three foreach kernels, so the EMA costs no sync.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """`module` is a copy of G whose floating-point parameters and buffers follow G as
    ema = d * ema + (1 - d) * G with the usual warm-up d_t = min(decay, (1 + t) / (10 + t)) after t
    updates (the first update, t = 0, copies G) (TensorFlow's ExponentialMovingAverage with num_updates), so early in training the
    average follows G instead of staying near its random initial weights. Integer buffers
    (BatchNorm's num_batches_tracked) are copied.

    The warm-up is a half-life ramp: d_t = 1 - 9/(10 + t) has a half-life of ln 2 (10 + t)/9, about
    0.077 x the updates so far, until `decay` caps it (0.999: a half-life of 693 updates, reached
    after ~9,000). StyleGAN2-ADA's ema_rampup sets the half-life to 0.05 x the images seen (capped at
    10k images), the same shape: a run of a few thousand steps never averages in its blob phase."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        device = next(model.parameters()).device
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long, device=device))

    def _pairs(self, model: nn.Module) -> tuple[list, list, list, list]:
        mine = [*self.module.parameters(), *self.module.buffers()]
        theirs = [*model.parameters(), *model.buffers()]
        floats = [i for i, t in enumerate(mine) if t.is_floating_point()]
        others = [i for i, t in enumerate(mine) if not t.is_floating_point()]
        return ([mine[i] for i in floats], [theirs[i] for i in floats],
                [mine[i] for i in others], [theirs[i] for i in others])

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_f, model_f, ema_i, model_i = self._pairs(model)
        t = self.n_updates.to(ema_f[0].dtype)
        d = torch.clamp((1 + t) / (10 + t), max=self.decay) * (t > 0)  # the first update copies G
        torch._foreach_mul_(ema_f, d)
        torch._foreach_add_(ema_f, torch._foreach_mul([p.detach() for p in model_f], 1 - d))
        for e, p in zip(ema_i, model_i):
            e.copy_(p)
        self.n_updates += 1
