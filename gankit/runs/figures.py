"""What a run folder shows: fixed-z grids as PNGs, the training plots (losses, D's outputs, the FID
curve, the overfitting probe), the milestone strip and the side-by-side figure of several runs,
all drawn from the files gankit.runs.folder reads. matplotlib and torchvision are imported on first
use (each takes ~1 s), so a command that draws nothing starts without them."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from ..files import atomic_path
from .folder import fid_key, last_grid, read_stats
from .stats import on_plot


def image_grid(x: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(B, C, H, W) in [-1, 1] -> one (C, H', W') grid in [0, 1]."""
    from torchvision.utils import make_grid  # (importing torchvision takes a second; only grids need it)
    return make_grid(x.detach().float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))


def save_grid(x: torch.Tensor, path: Path, nrow: int = 8) -> torch.Tensor:
    from torchvision.utils import save_image  # (as image_grid: only grids need torchvision)
    grid = image_grid(x, nrow)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a kill mid-write leaves the previous picture, never a torn one
        save_image(grid, str(tmp), format="png")
    return grid


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure as a PNG, written atomically (light compression: a plot's PNG is small,
    and the default level costs a sizeable part of each redraw during training)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", pil_kwargs={"compress_level": 1})


def training_figure(width: float, height: float, cols: int = 1, dpi: int = 120):
    """(figure, axes) of a training plot, outside pyplot (nothing to close) and with fixed margins
    in inches: tight_layout measures every label again at each of the redraws during training, a
    large part of their cost. The margins fit the plots' labels (ticks, titles, a y label)."""
    from matplotlib.figure import Figure  # (matplotlib is slow to import: start-up stays fast without it)
    fig = Figure(figsize=(width, height), dpi=dpi)
    fig.subplots_adjust(left=0.85 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.4 / height,
                        wspace=0.9 / (width / cols))
    axes = fig.subplots(1, cols)
    return fig, axes


def pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first use (~1 s: start-up stays fast)."""
    import matplotlib  # (slow to import: start-up stays fast without it)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # (as above)
    return plt


def plot_stats(ax, figure: str, ep: list[float], rows: list[dict]) -> int:
    """Draw on `ax` every statistic whose `plot` is `figure` (gankit.runs.stats) and that the rows
    have (a value that does not apply is None: a gap in the line); returns how many were drawn."""
    drawn = 0
    for name, stat in on_plot(figure):
        values = [r.get(name) for r in rows]
        if any(v is not None for v in values):
            ax.plot(ep, [math.nan if v is None else v for v in values], label=stat.legend or stat.label,
                    ls=stat.line)
            drawn += 1
    return drawn


def finish_epoch_plot(fig, ax, ylabel: str, title: str, path: Path, legend: bool = True) -> None:
    """The common end of a per-epoch plot: labels, grid, legend, saved."""
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if legend:
        ax.legend()
    save_figure(fig, path)


def plot_curves(run_dir: Path, score_label: str, score_is_probability: bool = False) -> None:
    """loss_curve.png and d_outputs.png from stats.jsonl (x axis: epochs)."""
    rows = read_stats(run_dir)
    if not rows:
        return
    ep = [r["epoch"] for r in rows]

    fig, ax = training_figure(7, 4)
    plot_stats(ax, "loss_curve", ep, rows)
    finish_epoch_plot(fig, ax, "loss", "Training losses", run_dir / "loss_curve.png")

    fig, ax = training_figure(7, 4)
    plot_stats(ax, "d_outputs", ep, rows)
    if score_is_probability:
        ax.axhline(0.5, color="gray", lw=0.8, ls=":")
        ax.set_ylim(-0.02, 1.02)
    finish_epoch_plot(fig, ax, score_label, "Discriminator outputs (mean over each log interval)",
                      run_dir / "d_outputs.png")

    plot_overfitting(run_dir, rows, score_label)
    quality = read_stats(run_dir, "quality.jsonl")
    key = fid_key(quality)
    if key:
        fig, ax = training_figure(7, 3.5)
        ax.plot([r["epoch"] for r in quality], [r[key] for r in quality], marker="o")
        finish_epoch_plot(fig, ax, key, "FID against the test set with the dataset's evaluator (lower is better)",
                          run_dir / "fid_curve.png", legend=False)


def plot_overfitting(run_dir: Path, rows: list[dict], score_label: str) -> None:
    """overfitting.png: r_t = E[sign(D(x))], ADA's p when the run adapts it, and D's score on a fixed
    slice of training images against held-out real images (the gap a memorising D opens)."""
    ep = [r["epoch"] for r in rows]
    if "r_t" not in rows[0]:  # (runs of gankit before the overfitting monitor)
        return
    fig, (left, right) = training_figure(10, 3.6, cols=2)
    plot_stats(left, "overfitting", ep, rows)
    left.set_ylim(-1.02, 1.02)
    left.set_title("Is D memorising? (r_t near 1: yes)")
    if plot_stats(right, "overfitting/right", ep, rows):
        right.set_title("D on training vs held-out real images")
        right.set_ylabel(score_label)
    else:
        right.text(0.5, 0.5, "no held-out images\n(a whole folder trains)", ha="center", va="center",
                   transform=right.transAxes)
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    save_figure(fig, run_dir / "overfitting.png")


def comparison_figure(run_dirs: list[Path], titles: list[str]):
    """Several runs in one figure: each run's last fixed-z grid on top (titled), their losses and
    their FID during training (when tracked) overlaid below. Returns the matplotlib figure."""
    plt = pyplot()
    fig = plt.figure(figsize=(max(8, 3.6 * len(run_dirs)), 7.5), dpi=110)
    rows = fig.add_gridspec(2, 1, height_ratios=[1.2, 1])
    top, bottom = rows[0].subgridspec(1, len(run_dirs)), rows[1].subgridspec(1, 2)
    for i, (run, title) in enumerate(zip(run_dirs, titles)):
        ax = fig.add_subplot(top[0, i])
        grid = last_grid(run)
        if grid:
            ax.imshow(Image.open(grid).convert("RGB"), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=8)
    losses, fids = fig.add_subplot(bottom[0, 0]), fig.add_subplot(bottom[0, 1])
    for run in run_dirs:
        stats, quality = read_stats(run), read_stats(run, "quality.jsonl")
        label = Path(run).name[:5]
        line, = losses.plot([r["epoch"] for r in stats], [r["loss_G"] for r in stats], label=f"{label} loss_G")
        losses.plot([r["epoch"] for r in stats], [r["loss_D"] for r in stats], ls="--", color=line.get_color(),
                    label=f"{label} loss_D")
        key = fid_key(quality)
        if key:
            fids.plot([r["epoch"] for r in quality], [r[key] for r in quality], marker="o", label=f"{label} {key}")
    losses.set_title("losses", fontsize=9)
    fids.set_title("FID during training (lower is better)", fontsize=9)
    for ax in (losses, fids):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    if not fids.lines:
        fids.text(0.5, 0.5, "no run tracked FID during training", ha="center", va="center", transform=fids.transAxes)
    fig.tight_layout()
    return fig


def plot_milestones(run_dir: Path, total: int) -> None:
    """milestones.png: every fixed-z row saved at a milestone, one row each, labelled with its
    step and its share of `total` steps. Rows are read back from images/milestone_SSSSSSSS.png,
    so a resumed run shows the rows of its first part, and a run extended with more epochs
    keeps its old rows under their true steps."""
    rows = sorted((int(p.stem.split("_")[1]), p) for p in (run_dir / "images").glob("milestone_*.png"))
    if not rows:
        return
    from matplotlib.figure import Figure  # (slow to import: start-up stays fast without it)
    height = 1.25 * len(rows) + 0.4
    fig = Figure(figsize=(8, height), dpi=120)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.1 / height, top=1 - 0.4 / height, hspace=0.08)
    axes = fig.subplots(len(rows), 1, squeeze=False)
    for ax, (step, path) in zip(axes[:, 0], rows):
        ax.imshow(Image.open(path).convert("RGB"), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{100 * step / total:.0f}%\nstep {step}", rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("Same z through training", fontsize=10)
    save_figure(fig, run_dir / "milestones.png")


