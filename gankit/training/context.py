"""What the training loop hands its maintenance as one object: the loop context (`Loop`), the
schedule that answers for a step what is due (`Schedule`), the training clock (`Clock`), the epoch
line's means (`EpochMean`) and the stop flag (`StopFlag`). The statistics themselves are named in
gankit.runs.stats."""
from __future__ import annotations

import contextlib
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm import tqdm

from ..config import Config
from ..data import EpochSampler, TrainingData
from ..metrics import Judge
from ..nets import Objective
from ..runs import MILESTONES
from .dist import Dist
from .output import Out
from .state import Nets, Tally

@dataclass
class EpochMean:
    """The epoch line's figures: the log ticks' means of an epoch, weighted by the steps each covers,
    so the line states the epoch's means (the stats.jsonl rows keep each interval's)."""
    steps: int = 0
    sums: dict = field(default_factory=dict)

    def add(self, n: int, values: dict) -> None:
        """A tick's means, over the n steps it covers."""
        self.steps += n
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + n * v

    def take(self) -> dict:
        """The means since the last take, and a fresh start."""
        out = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        self.steps, self.sums = 0, {}
        return out


@dataclass
class Clock:
    """Training time across processes: the tally's earlier seconds plus this process's, less the
    seconds spent on quality evaluations (which a time budget does not count)."""
    tally: Tally
    t_start: float = field(default_factory=time.perf_counter)
    train_tick: float = 0.0  # training seconds when the last tick was logged, and at which step (for img/s)
    step_tick: int = 0

    def wall(self) -> float:
        return self.tally.elapsed + time.perf_counter() - self.t_start

    def train_s(self) -> float:
        return self.wall() - self.tally.eval_s

    def restart(self) -> None:
        self.t_start = time.perf_counter()
        self.train_tick = self.train_s()

    def tick(self, step: int) -> None:
        self.train_tick, self.step_tick = self.train_s(), step


class Schedule:
    """For each step: is it a log tick, an epoch's end, an evaluation, a milestone, a checkpoint,
    the end? The end comes at the step limit, or when something ends training early (a spent time
    budget, a quality target): `finish()`, after which the next answers treat the step as the last.

    The work due at an epoch's end (the epoch line, the fixed-z grid, a periodic checkpoint, an
    evaluation each epoch) comes at most once per log interval: epochs shorter than --log-every
    steps (a folder of a few hundred images has epochs of a few steps) are taken `epochs_per_end`
    at a time, else that work would cost more than the training (100 smileys: one step an epoch)."""

    def __init__(self, cfg: Config, steps_per_epoch: int, total: int, clock: Clock, evaluates: bool,
                 stop_after: int | None = None):
        self.spe, self.total, self.clock = steps_per_epoch, total, clock
        self.epochs_per_end = max(1, -(-cfg.log_every // steps_per_epoch))  # (ceil: 1 for epochs of log_every steps)
        self.log_every, self.eval_every, self.ckpt_every = cfg.log_every, cfg.eval_every, cfg.ckpt_every
        self.evaluates = evaluates  # there is a judge
        self.budget_s = (cfg.minutes or 0) * 60  # 0: no time budget
        self.stop_after = stop_after
        self.milestone_steps = {pct * total // 100 for pct in MILESTONES}
        self.last = False  # the step `advance` was last called for is the last one
        self.frac_before = 0.0  # the fraction of training done at the step before that one
        self.frac_now = 0.0  # ... and at that one (what the milestones by time compare)
        self.ckpt_s = cfg.ckpt_minutes * 60  # training seconds between checkpoints by time; 0: none
        self.ckpt_at = 0.0  # training seconds at the last checkpoint

    def fraction(self, done: int) -> float:
        """How much of the training is done: of the steps, or of the time budget if that is further."""
        return max(done / self.total, self.clock.train_s() / self.budget_s) if self.budget_s else done / self.total

    def tick(self, done: int) -> bool:
        """Whether step `done` ends in a log tick (asked before it runs, so that the step before a
        tick computes the gradient norms the tick reads)."""
        return done % self.log_every == 0 or self.epoch_end(done) or self.last or done == self.total

    def advance(self, done: int) -> None:
        """The schedule's one change per step, made once step `done` has trained and before its
        maintenance asks anything: whether it is the last (the step limit), and the fraction of
        training done before it and now. Every other method only answers."""
        self.last = self.last or done == self.total
        self.frac_before, self.frac_now = self.frac_now, 1.0 if self.last else self.fraction(done)

    def finish(self) -> None:
        self.last = True

    def epoch_end(self, done: int) -> bool:
        """Step `done` ends an epoch whose end work is due (every `epochs_per_end`-th epoch)."""
        return done % (self.spe * self.epochs_per_end) == 0

    def epoch_boundary(self, done: int) -> bool:
        """Step `done` ends an epoch (what a grid's file name says: epoch_NNN.png, else step_N.png)."""
        return done % self.spe == 0

    def evaluation(self, done: int) -> bool:
        if not self.evaluates:
            return False
        due = self.epoch_end(done) if self.eval_every == -1 else done % self.eval_every == 0
        return self.last or due

    def milestone(self, done: int) -> bool:
        """Whether step `done` crossed one of MILESTONES: by steps, or by time under a budget (100 %
        is the last step)."""
        return self.last or (done in self.milestone_steps if not self.budget_s
                             else any(self.frac_before < pct / 100 <= self.frac_now for pct in MILESTONES[1:-1]))

    def planned(self, done: int) -> int:
        """The steps training will take as it looks now (the 100 % of the milestone strip)."""
        return done if self.last else max(done, round(done / max(self.frac_now, 1e-9)))

    def figures(self, done: int) -> bool:
        """The fixed-z grid and the plots: at epoch ends and at the end."""
        return self.epoch_end(done) or self.last

    def checkpoint(self, done: int) -> bool:
        return self.last or (self.epoch_end(done) and (done // self.spe) % self.ckpt_every == 0)

    def checkpoint_due_by_time(self) -> bool:
        """--ckpt-minutes of training since the last checkpoint (this process's clock)."""
        return self.ckpt_s > 0 and self.clock.train_s() - self.ckpt_at >= self.ckpt_s

    def checkpointed(self) -> None:
        self.ckpt_at = self.clock.train_s()

    def stop_asked(self, done: int) -> bool:
        """train(stop_after=N): stop at step N as a signal would."""
        return done == self.stop_after


STOP_CHECK_EVERY = 10  # steps between comparisons of the stop flag across ranks


class StopFlag:
    """Ctrl-C / SIGTERM set a host-side flag the loop reads once per step; a second Ctrl-C
    leaves at once (the last checkpoint is intact). Python delivers signals to the main thread
    only; elsewhere (a notebook worker thread) the caller's handlers stay."""

    def __init__(self):
        self.signum = 0
        self.handlers = ({s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
                         if threading.current_thread() is threading.main_thread() else {})

    def _on_signal(self, signum, frame):
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def check(self, ddp: Dist, done: int, tick: bool, budget_spent: bool, ckpt_due: bool) -> tuple[int, bool, bool]:
        """(signal number or 0, whether the time budget is spent, whether a checkpoint by time is
        due), agreed by every rank: across ranks they are compared every STOP_CHECK_EVERY steps
        and at ticks (a host collective), in one process every step. Rank 0's clock decides."""
        if not ddp.enabled:
            return self.signum, budget_spent, ckpt_due
        if done % STOP_CHECK_EVERY and not tick:
            return 0, False, False
        agreed = ddp.max(self.signum * 4 + 2 * int(budget_spent and ddp.main) + int(ckpt_due and ddp.main))
        return agreed // 4, bool(agreed & 2), bool(agreed & 1)

    def restore(self) -> None:
        for s, h in self.handlers.items():
            signal.signal(s, h)


@dataclass(kw_only=True)
class Loop:
    """Everything the loop and its maintenance share, made once by gankit.training.setup.start."""
    cfg: Config
    ddp: Dist
    device: torch.device
    nets: Nets
    tally: Tally
    clock: Clock
    out: Out
    objective: Objective
    schedule: Schedule
    autocast: contextlib.AbstractContextManager  # the forward passes' precision (gankit.device.autocast)
    data: TrainingData  # the training images (uint8, on the device or pinned), their classes, the probe
    sampler: EpochSampler  # the batch of each step
    judge: Judge | None  # scores the samples of an evaluation (rank 0, when quality is tracked)
    eval_z: torch.Tensor | None  # the fixed z of every evaluation (every rank)
    fixed_z: torch.Tensor  # the fixed z of the grids
    grid: tuple[torch.Tensor, torch.Tensor | None, int]  # the per-epoch grid's z, classes (or None), images per row
    row_y: torch.Tensor | None  # the classes of a milestone row's 8 images (conditional runs)
    stop: StopFlag  # Ctrl-C / SIGTERM
    bar: tqdm  # the progress bar (disabled when not shown)
    show_bar: bool  # a progress bar is shown (then no epoch lines)
    on_quality: Callable[[dict], bool] | None = None  # sees each quality row; True ends training there
    epoch_mean: EpochMean = field(default_factory=EpochMean)  # the epoch line's means

    @property
    def world(self) -> int:
        return self.ddp.world_size
