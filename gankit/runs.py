"""Run folders that describe themselves (as StyleGAN2-ADA's `00000-desc/`): the stats log
(stats.jsonl + TensorBoard), fixed-z grids, the milestone figure and the training plots."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from PIL import Image

from .config import Config
from .errors import ConfigError, RunError
from .files import atomic_path, atomic_write_text
from .nets import count_params

RUN_RE = re.compile(r"^(\d{5})-")
MILESTONES = (0, 25, 50, 75, 100)  # percent of training at which the fixed-z row is kept


def create_run_dir(out_dir: str | Path, desc: str) -> Path:
    """Make `out_dir/NNNNN-desc/` with the next free number. Never reuses an existing folder:
    os.mkdir fails if another process took the name, and then the next number is tried."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    while True:
        nums = [int(m.group(1)) for p in out.iterdir() if (m := RUN_RE.match(p.name))]
        path = out / f"{max(nums, default=-1) + 1:05d}-{desc}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


class StatsLog:
    """Appends one JSON line per log tick to stats.jsonl and mirrors the scalars to TensorBoard,
    grouped by the part before '/' in TensorBoard's tag (Loss/D, D_output/real, ...)."""

    TB_TAGS = {"loss_D": "Loss/D", "loss_G": "Loss/G", "d_real": "D_output/real",
               "d_fake": "D_output/fake", "wasserstein": "Loss/wasserstein_estimate",
               "grad_norm_D": "Grad_norm/D", "grad_norm_G": "Grad_norm/G",
               "crossing_rate": "Balance/crossing_rate", "g_above": "Balance/g_above", "r_t": "Overfitting/r_t",
               "ada_p": "Overfitting/ada_p", "d_train_probe": "Overfitting/D_train", "d_heldout": "Overfitting/D_heldout",
               "heldout_gap": "Overfitting/heldout_gap", "lr_D": "LR/D",
               "lr_G": "LR/G", "img_per_s": "Speed/images_per_s"}

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.path = run_dir / "stats.jsonl"
        self.quality_path = run_dir / "quality.jsonl"
        self.warnings_path = run_dir / "warnings.jsonl"
        if resume_step is not None:
            for p in (self.path, self.quality_path, self.warnings_path):
                truncate_after(p, resume_step)
        from torch.utils.tensorboard import SummaryWriter  # (tensorboard takes ~1 s to import; only training logs)
        # purge_step drops events a crashed run wrote after the checkpoint we resume from.
        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def write(self, row: dict) -> None:
        _append(self.path, row)
        for key, tag in self.TB_TAGS.items():
            if row.get(key) is not None:
                self.tb.add_scalar(tag, row[key], row["step"])

    def quality(self, row: dict) -> None:
        """One quality evaluation (quality.jsonl; TensorBoard Quality/<metric>)."""
        _append(self.quality_path, row)
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, float):
                self.tb.add_scalar(f"Quality/{key}", value, row["step"])

    def warning(self, step: int, message: str) -> None:
        _append(self.warnings_path, {"step": step, "warning": message})
        self.tb.add_text("warnings", message, step)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.tb.add_image(tag, grid, step)

    def close(self) -> None:
        self.tb.close()


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def truncate_after(path: Path, step: int) -> None:
    """Drop lines logged after `step` (written by an interrupted run past its checkpoint)."""
    if path.exists():
        keep = [json.dumps(row) for row in read_stats(path.parent, path.name) if row["step"] <= step]  # (torn rows go)
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def read_stats(run_dir: Path, name: str = "stats.jsonl") -> list[dict]:
    """The rows of a run's stats.jsonl (or quality.jsonl, warnings.jsonl). A line that is not a JSON
    object (a row torn by a kill in the middle of its write) is left out."""
    path = Path(run_dir) / name
    if not path.is_file():
        return []
    rows = []
    for ln in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(ln)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def read_json(path: Path, what: str = "JSON file") -> dict:
    """A JSON object from a file, or a RunError naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: not a readable {what} ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a {what} (expected a JSON object)")
    return data


def read_run_config(run_dir: Path) -> tuple[Config, dict]:
    """(the run's Config, the whole config.json) of a run folder, checked: a config.json that is not
    JSON, lacks its config or names unknown fields is refused, naming the file."""
    path = Path(run_dir) / "config.json"
    meta = read_json(path, "run config")
    if not isinstance(meta.get("config"), dict):
        raise RunError(f"{path}: no \"config\" object in it; is this a gankit run folder?")
    try:
        cfg = Config.from_dict(meta["config"], source=str(path))
        cfg.resolved()
    except ConfigError as e:
        raise RunError(str(e)) from None
    except TypeError as e:
        raise RunError(f"{path}: a field of another type than gankit writes ({e})") from None
    return cfg, meta


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
    """A matplotlib figure as a PNG, written atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


# ---- figures ---------------------------------------------------------------------------------
def pyplot():
    """matplotlib's pyplot on the Agg backend, imported on first use (~1 s: start-up stays fast)."""
    import matplotlib  # (slow to import: start-up stays fast without it)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # (as above)
    return plt


def plot_curves(run_dir: Path, score_label: str, score_is_probability: bool = False) -> None:
    """loss_curve.png and d_outputs.png from stats.jsonl (x axis: epochs)."""
    rows = read_stats(run_dir)
    if not rows:
        return
    plt = pyplot()
    ep = [r["epoch"] for r in rows]

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(ep, [r["loss_D"] for r in rows], label="loss_D")
    ax.plot(ep, [r["loss_G"] for r in rows], label="loss_G")
    if rows[0].get("wasserstein") is not None:
        ax.plot(ep, [r["wasserstein"] for r in rows], label="Wasserstein estimate E[D(x)]-E[D(G(z))]", ls="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("Training losses")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, run_dir / "loss_curve.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(ep, [r["d_real"] for r in rows], label="D(x), real images")
    ax.plot(ep, [r["d_fake"] for r in rows], label="D(G(z)), generated images")
    if score_is_probability:
        ax.axhline(0.5, color="gray", lw=0.8, ls=":")
        ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epoch")
    ax.set_ylabel(score_label)
    ax.set_title("Discriminator outputs (mean over each log interval)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, run_dir / "d_outputs.png")
    plt.close(fig)

    plot_overfitting(run_dir, rows, score_label)
    quality = read_stats(run_dir, "quality.jsonl")
    key = fid_key(quality)
    if key:
        fig, ax = plt.subplots(figsize=(7, 3.5), dpi=120)
        ax.plot([r["epoch"] for r in quality], [r[key] for r in quality], marker="o")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.set_title("FID against the test set with the dataset's evaluator (lower is better)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(fig, run_dir / "fid_curve.png")
        plt.close(fig)


def plot_overfitting(run_dir: Path, rows: list[dict], score_label: str) -> None:
    """overfitting.png: r_t = E[sign(D(x))], ADA's p when the run adapts it, and D's score on a fixed
    slice of training images against held-out real images (the gap a memorising D opens)."""
    ep = [r["epoch"] for r in rows]
    if "r_t" not in rows[0]:  # (runs of gankit before the overfitting monitor)
        return
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    left.plot(ep, [r["r_t"] for r in rows], label="r_t = E[sign(D(x))], training batches")
    if rows[-1].get("ada_p") is not None:
        left.plot(ep, [r.get("ada_p") for r in rows], label="ADA's augmentation probability p")
    left.set_ylim(-1.02, 1.02)
    left.set_title("Is D memorising? (r_t near 1: yes)")
    if rows[-1].get("d_heldout") is not None:
        right.plot(ep, [r.get("d_train_probe") for r in rows], label="training images (a fixed 256)")
        right.plot(ep, [r.get("d_heldout") for r in rows], label="held-out real images (256)")
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
    fig.tight_layout()
    save_figure(fig, run_dir / "overfitting.png")
    plt.close(fig)


def fid_key(quality: list[dict]) -> str | None:
    """The FID column of quality.jsonl rows (its name carries the protocol, e.g. fid_fmnist5k)."""
    return next((k for k in (quality[0] if quality else {}) if k.startswith("fid_")), None)


def last_grid(run_dir: Path) -> Path | None:
    """The newest fixed-z grid of a run (images/epoch_*.png or step_*.png)."""
    grids = [*(Path(run_dir) / "images").glob("epoch_*.png"), *(Path(run_dir) / "images").glob("step_*.png")]
    return max(grids, key=lambda p: p.stat().st_mtime) if grids else None


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


def milestone_path(run_dir: Path, step: int) -> Path:
    return run_dir / "images" / f"milestone_{step:08d}.png"


def plot_milestones(run_dir: Path, total: int) -> None:
    """milestones.png: every fixed-z row saved at a milestone, one row each, labelled with its
    step and its share of `total` steps. Rows are read back from images/milestone_SSSSSSSS.png,
    so a resumed run shows the rows of its first part, and a run extended with more epochs
    keeps its old rows under their true steps."""
    rows = sorted((int(p.stem.split("_")[1]), p) for p in (run_dir / "images").glob("milestone_*.png"))
    if not rows:
        return
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.25 * len(rows) + 0.4), dpi=120, squeeze=False)
    for ax, (step, path) in zip(axes[:, 0], rows):
        ax.imshow(Image.open(path).convert("RGB"), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{100 * step / total:.0f}%\nstep {step}", rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("Same z through training", fontsize=10)
    fig.tight_layout()
    save_figure(fig, run_dir / "milestones.png")
    plt.close(fig)


def write_models_txt(run_dir: Path, G: torch.nn.Module, D: torch.nn.Module) -> str:
    text = (f"Generator ({count_params(G):,} parameters)\n{G}\n\n"
            f"Discriminator ({count_params(D):,} parameters)\n{D}\n")
    (run_dir / "models.txt").write_text(text)
    return text


def check_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        hint = f"; did you mean its folder, {p.parent}?" if (p.parent / "config.json").is_file() else ""
        raise RunError(f"{p}: a file, not a run folder{hint}")
    if not p.is_dir():
        raise RunError(f"{p}: no such run folder")
    if not (p / "config.json").is_file():
        raise RunError(f"{p}: not a gankit run folder (no config.json)")
    return p
