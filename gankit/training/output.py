"""What training writes into its run folder besides checkpoints: the new folder with its
config.json, log.txt and stats (through `Out`), the fixed-z grids and the plots, and what a time
budget bought. Rank 0 alone writes."""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import Config
from ..device import device_name
from ..files import atomic_write_text
from ..runs import StatsLog, create_run_dir, plot_curves, plot_milestones
from ..version import __version__, git_commit

PLOT_SHARE = 0.05  # the matplotlib plots redrawn at epoch ends take at most this share of the time between redraws


@dataclass
class Out:
    """Where the loop reports: the run folder, its stats log and log.txt (rank 0; silent elsewhere).
    It also paces the plots: redrawing them takes ~1-3 s on a 2-core CPU, more than a short epoch,
    so at an epoch's end they are redrawn only when PLOT_SHARE of the time since the last redraw
    covers the last redraw's cost (the first after 10 s), and always at the last step."""
    run_dir: Path
    main: bool
    log: StatsLog | None = None
    plot_s: float = 0.5  # seconds the last redraw of the plots took (before the first: a guess)
    plotted_at: float = field(default_factory=time.perf_counter)  # when it ended

    def plots_due(self) -> bool:
        return time.perf_counter() - self.plotted_at >= self.plot_s / PLOT_SHARE

    def plotted(self, seconds: float) -> None:
        self.plot_s, self.plotted_at = seconds, time.perf_counter()

    def say(self, msg: str) -> None:
        if self.main:
            print(msg, flush=True)
            with open(self.run_dir / "log.txt", "a") as f:
                f.write(msg + "\n")

    def warn(self, step: int, message: str) -> None:
        if self.main:
            self.say(f"warning (step {step}): {message}")
            self.log.warning(step, message)

    def write_plots(self, score_label: str, score_is_probability: bool, planned: int) -> None:
        """loss_curve.png, d_outputs.png, fid_curve.png and milestones.png from the run folder's
        logs, with `planned` steps as the milestone strip's 100 %."""
        t0 = time.perf_counter()
        plot_curves(self.run_dir, score_label, score_is_probability)
        plot_milestones(self.run_dir, planned)
        self.plotted(time.perf_counter() - t0)


def new_run(cfg: Config, device: torch.device, precision: str, channels_last: bool, world: int,
            command: list[str] | None, name: str | None = None) -> Path:
    """A new numbered run folder NNNNN-<name or preset-dataset> with its config.json (rank 0)."""
    run_dir = create_run_dir(cfg.out_dir, name or f"{cfg.preset}-{cfg.dataset}")
    cfg.save(run_dir / "config.json", gankit_version=__version__, git_commit=git_commit(),
             torch_version=torch.__version__, device=str(device), device_name=device_name(device),
             precision=precision,
             channels_last=channels_last, world_size=world, command=command or sys.argv,
             created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return run_dir


def record_budget(run_dir: Path, minutes: float, step: int, steps_per_epoch: int, train_s: float,
                  total: int, cfg_steps: int) -> str:
    """What a time budget bought, said in the log and kept in config.json under `budget`, naming
    the bound that ended the run: the budget, or the epochs (--steps) when they came first."""
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    ended_by = "minutes" if train_s >= minutes * 60 else "steps" if step >= total else "other"
    saved["budget"] = {"minutes": minutes, "steps": step, "epochs": round(step / steps_per_epoch, 4),
                       "train_time_s": round(train_s, 1), "ended_by": ended_by}
    atomic_write_text(path, json.dumps(saved, indent=2) + "\n")
    bought = f"{step} steps ({step / steps_per_epoch:.2f} epochs) in {train_s:.0f} s of training"
    if ended_by == "minutes":
        return f"the {minutes:g}-minute budget bought {bought}"
    if ended_by == "steps":
        bound = f"--steps {cfg_steps}" if cfg_steps else f"the {round(total / steps_per_epoch)} epochs"
        return (f"{bound} ended the run before the {minutes:g}-minute budget: {bought} "
                f"(raise {'--steps' if cfg_steps else '--epochs'} to train for the whole budget)")
    return f"stopped before the {minutes:g}-minute budget was spent: {bought}"
