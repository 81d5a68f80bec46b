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

The loop keeps [crossings, G updates with loss_G above, sign of the last comparison] on the
device (`update`, no host sync); each log tick writes the interval's rates to stats.jsonl
(crossing_rate, g_above) and TensorBoard (Balance/...), and `summarize` makes the run's index.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..runs import pyplot, save_figure

def update(counts: Tensor, loss_G: Tensor, loss_D: Tensor, scale: float) -> None:
    """One G update: counts = [crossings, updates with loss_G above, last sign (+1, -1; 0: none yet)]."""
    sign = torch.sign(loss_G.detach() - scale * loss_D.detach())
    counts[0] += (sign * counts[2] < 0).to(counts.dtype)
    counts[1] += (sign > 0).to(counts.dtype)
    counts[2] = torch.where(sign != 0, sign, counts[2])


def summarize(stats: list[dict], n_critic: int = 1) -> dict:
    """The run's balance figures from its stats.jsonl rows (each row's rates weighted by the steps
    it covers): balance_index (the crossing rate over training), crossings_per_epoch, g_above and
    evenness. Empty when the objective has no index (the rows carry null) or nothing was logged."""
    rows, prev = [], 0
    for r in stats:
        if r.get("crossing_rate") is not None:
            rows.append((r["step"] - prev, r["crossing_rate"], r["g_above"]))
        prev = r["step"]
    weight = sum(w for w, _, _ in rows)
    if not weight:
        return {}
    steps_per_epoch = stats[-1]["step"] / stats[-1]["epoch"]  # (rows say both)
    rate = sum(w * c for w, c, _ in rows) / weight
    above = sum(w * a for w, _, a in rows) / weight
    return {"balance_index": rate, "crossings_per_epoch": rate * steps_per_epoch / n_critic, "g_above": above,
            "evenness": 1 - abs(2 * above - 1)}


def correlate(points: list[tuple[float, float]]) -> dict:
    """Spearman's rank correlation of (balance index, FID) pairs: {"n", "rho", "p"} (rho and p None
    below 3 points or when either is constant). A negative rho means more crossing, lower FID."""
    from scipy.stats import spearmanr  # (scipy.stats takes ~0.5 s to import; the loop never needs it)
    n = len(points)
    if n < 3 or len({x for x, _ in points}) < 2 or len({y for _, y in points}) < 2:
        return {"n": n, "rho": None, "p": None}
    result = spearmanr([x for x, _ in points], [y for _, y in points])
    return {"n": n, "rho": float(result.statistic), "p": float(result.pvalue)}


def scatter(points: list[tuple[float, float]], path, title: str, metric: str, labels: list[str] | None = None) -> None:
    """balance index (x) against FID (y), with Spearman's rho in the title; `labels` name groups
    (e.g. a sweep's cells) that get their own colour."""
    plt = pyplot()
    c = correlate(points)
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=110)
    groups = labels or ["runs"] * len(points)
    for g in dict.fromkeys(groups):
        xs = [p[0] for p, l in zip(points, groups) if l == g]
        ys = [p[1] for p, l in zip(points, groups) if l == g]
        ax.scatter(xs, ys, label=g if labels else None, alpha=0.8)
    ax.set_xlabel("balance index (share of G steps at which the loss curves cross)")
    ax.set_ylabel(f"{metric} (lower is better)")
    rho = (f"Spearman rho {c['rho']:+.2f}, p = {c['p']:.2g}, n = {c['n']}" if c["rho"] is not None
           else f"n = {c['n']}: too few distinct points for a rank correlation")
    ax.set_title(f"{title}\n{rho}", fontsize=9)
    ax.grid(alpha=0.3)
    if labels:
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, Path(path))
    plt.close(fig)
