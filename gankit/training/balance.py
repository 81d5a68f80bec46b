"""The balance index: the seed's idea that the "crossing" of the D and G loss curves measures
how well a GAN trains, made precise so that it can be logged and tested against FID.

Definition. Compare the two losses at every G update, on a common scale: c·loss_D against
loss_G, where c makes them equal at the equilibrium, when D cannot tell real from fake (for BCE
loss_D = 2 ln 2 and loss_G = ln 2 there, so c = 1/2; LSGAN the same). Only the objective's own
terms count (no gradient penalty, no AC-GAN class loss). Then, over a stretch of G updates:

- crossing_rate: the share of consecutive G updates between which the order of the two curves
  flips (loss_G above, then below, or back). 0: one curve stays above the other; about 0.5: the
  order is a coin toss at every step; 1: it flips at every step.
- g_above: the share of G updates at which loss_G lies above c·loss_D (D is winning).
- evenness = 1 - |2·g_above - 1|: 1 when each curve is on top half of the time, 0 when one always is.

The **balance index** of a run is its crossing_rate over all of training: "how often the curves
cross", which is what the seed looked at on the per-iteration loss plot. Per-step values are
used, not epoch means, because an epoch's means hide all but a few crossings.

Why these choices: crossings are counted per G update so that n_critic does not change the
scale; the comparison is on the equilibrium-matched scale so that "crossing" means "neither
network is ahead" rather than an accident of how the two losses are normalised. For the
Wasserstein and hinge objectives the two losses sit at unrelated levels at any equilibrium
(loss_G = -E[D(G(z))] drifts with the critic's offset), so no index is logged for them.

The loop keeps the sign of the last comparison on the device and adds each G update's crossing
and loss_G-above (`update`, no host sync) to the tick's sums; each log tick writes the interval's
rates to stats.jsonl (crossing_rate, g_above) and TensorBoard (Balance/...). What reads them back (the run's index,
its correlation with FID, the scatter) is gankit.runs.balance, beside the report and studies that use it.
"""
from __future__ import annotations

import torch
from torch import Tensor


def update(last: Tensor, loss_G: Tensor, loss_D: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """One G update: (1 if the curves crossed since the last update else 0, 1 if loss_G is above the
    balance line else 0); `last` = [the last comparison's sign (+1, -1; 0: none yet)] moves on."""
    sign = torch.sign(loss_G.detach() - scale * loss_D.detach())
    crossed, above = (sign * last[0] < 0).to(last.dtype), (sign > 0).to(last.dtype)
    last[0] = torch.where(sign != 0, sign, last[0])
    return crossed, above
