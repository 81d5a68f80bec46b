"""The balance index read back from a run's stats.jsonl (gankit.training.balance defines it and the
loop logs its parts): the run's index, its rank correlation with FID over several runs, and the
scatter of the two. The report and the tuning studies use these."""
from __future__ import annotations

from pathlib import Path

from .figures import pyplot, save_figure


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
