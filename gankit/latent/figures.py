"""The latent studies' figures: sheets of image strips labelled by row (and column), and the bar
plot of the dimensions ranked by influence."""
from __future__ import annotations

import textwrap
from pathlib import Path

import torch

from ..runs import pyplot


def labelled_grid(rows: list[tuple[str, torch.Tensor]], path: Path, title: str,
                  col_labels: list[str] | None = None, scale: float = 0.55) -> None:
    """One figure: each row a strip of images (n, C, H, W) in [-1, 1] labelled on the left,
    optional column labels on top."""
    from torchvision.utils import make_grid  # (torchvision takes a second to import; only figures need it)
    n = max(len(x) for _, x in rows)
    # Short rows are filled with white cells so every strip has n cells of the same size.
    rows = [(label, torch.cat([x.float(), torch.ones(n - len(x), *x.shape[1:])])) for label, x in rows]
    strips = [make_grid(x, nrow=n, padding=2, normalize=True, value_range=(-1, 1), pad_value=1.0)
              for _, x in rows]
    img = torch.cat(strips, dim=1).permute(1, 2, 0).numpy()  # (H_total, W, C)
    h_row = strips[0].shape[1]
    w_col = (strips[0].shape[2] - 2) / n
    plt = pyplot()
    fig_w = max(4.0, n * scale + 1.6)
    title = textwrap.fill(title, int(fig_w * 13))  # ~13 characters of 9-point text per inch: no title cut off
    fig_h = len(rows) * scale + (1.3 if col_labels else 0.9) + 0.16 * title.count("\n")
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    ax.imshow(img if img.shape[2] == 3 else img[:, :, 0], cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks([h_row * (i + 0.5) for i in range(len(rows))])
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    if col_labels:
        ax.set_xticks([2 + w_col * (i + 0.5) for i in range(len(col_labels))])
        ax.set_xticklabels(col_labels, fontsize=8)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title, fontsize=9, pad=14 if col_labels else 6)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)  # no empty margins
    plt.close(fig)


def rank_figure(rows: list[dict], path: Path, delta: float, n: int) -> None:
    """Bars of each dimension's mean pixel change (sorted), and the share of class flips when measured."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.09), 3.2), dpi=110)
    ax.bar(range(len(rows)), [r["mean_abs_change"] for r in rows], color="tab:blue")
    step = max(1, len(rows) // 25)
    ax.set_xticks(range(0, len(rows), step))
    ax.set_xticklabels([str(rows[i]["dim"]) for i in range(0, len(rows), step)], fontsize=7, rotation=90)
    ax.set_xlabel("latent dimension (sorted by influence)")
    ax.set_ylabel("mean |pixel change|", color="tab:blue")
    if "class_flip_rate" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(range(len(rows)), [r["class_flip_rate"] for r in rows], ".", color="tab:red", ms=4)
        ax2.set_ylabel("share of samples whose class flips", color="tab:red")
    ax.set_title(f"How much each dimension changes the image (z ± {delta:g}, {n} samples)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
