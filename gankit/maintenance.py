"""Everything the training loop does around the D and G updates, as plain functions: reading
the checkpoint to resume from, staging the data, the quality judge, the run folder's output, log
ticks, evaluations, the NaN rollback, checkpoints, and when to stop (signals, the time budget).
Rank 0 alone writes; the functions that need every rank say so."""
from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import atomic_save, export_generator, load_checkpoint, newest_valid_checkpoint, prune
from .config import Config
from .data import training_images, training_labels
from .dist import Dist
from .errors import ConfigError, DataError, GankitError, RunError
from .files import atomic_write_text
from .conditional import balanced_labels
from .latent import generate, sample_images, z_from_seed
from .losses import Objective
from .runs import StatsLog, check_run_dir, create_run_dir, plot_curves, plot_milestones, save_grid, truncate_after
from .state import Nets, Tally
from .version import __version__, git_commit

MAX_ROLLBACKS = 3  # --on-nan rollback gives up after this many
RESUMABLE_CHANGES = {"epochs", "steps", "minutes", "log_every", "ckpt_every", "keep", "device", "out_dir",
                     "data_on_device", "host_sync", "optim_impl", "channels_last", "compile"}
STOP_CHECK_EVERY = 10  # steps between comparisons of the stop flag across ranks
STAT_NAMES = ["loss_D", "D(x)", "D(G(z))", "wasserstein", "loss_G", "grad_norm_D", "grad_norm_G", "crossing_rate",
              "g_above"]  # Tally.means()


class TrainingStopped(GankitError):
    """Training ended early (signal or non-finite values); the message says why and where."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
        self.quiet = False  # True on DDP ranks other than 0: rank 0 says it


# ---- before the loop ------------------------------------------------------------------------------
def read_resume(cfg: Config, ddp: Dist, resume) -> tuple[dict | None, list[str], Path | None]:
    """The checkpoint to resume from, read and checked by rank 0 before any work and shared with
    the other ranks: (state, notes for the log, run folder); (None, [], None) for a new run."""
    if resume is None:
        return None, [], None
    notes: list[str] = []
    run_dir = Path(resume)
    try:
        state = None
        run_dir = check_run_dir(resume)  # (on other machines than rank 0's it may not exist: rank 0 decides)
        if ddp.main:
            ckpt_path, notes = newest_valid_checkpoint(run_dir)
            state = load_checkpoint(ckpt_path)
            saved = Config.from_dict(state["config"], source=str(ckpt_path))
            changed = {k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v} - RESUMABLE_CHANGES
            if changed:
                raise RunError(f"{run_dir}: cannot resume with changed {', '.join(sorted(changed))} "
                               f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
            notes.append(f"resuming from {ckpt_path.name} at step {state['step']}")
    except GankitError as e:
        state = e
    return ddp.share(state), notes, run_dir


def stage_data(cfg: Config, ddp: Dist, device: torch.device, notes: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The whole training set as one uint8 tensor on the device (or pinned on the host), and for a
    conditional run its labels beside it (int64, same device), so a batch's labels come with its
    images. Rank 0 reads first (for a folder: decodes and caches it); the other ranks then read its cache."""
    if ddp.main:
        try:
            x_train = training_images(cfg, say=notes.append)
            ddp.share(None)
        except GankitError as e:
            ddp.share(e)
    else:
        ddp.share(None)
        x_train = training_images(cfg, say=lambda msg: None, progress=False)
    y_train = training_labels(cfg) if cfg.num_classes else None
    if y_train is not None and (len(y_train) != len(x_train) or int(y_train.max()) >= cfg.num_classes):
        raise DataError(f"{cfg.data_root or cfg.dataset}: {len(x_train)} images with labels up to {int(y_train.max())}, "
                        f"but the run has {cfg.num_classes} classes (did the class folders change since it started?)")
    if cfg.data_on_device and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if x_train.nbytes > 0.5 * free:
            raise DataError(f"the training images need {x_train.nbytes / 2**30:.1f} GiB, more than half of the "
                            f"{free / 2**30:.1f} GiB free on {device}; use --no-data-on-device or a smaller --image-size")
    if cfg.data_on_device:
        return x_train.to(device), (y_train.to(device) if y_train is not None else None)
    if device.type == "cuda":
        return x_train.pin_memory(), (y_train.pin_memory() if y_train is not None else None)
    return x_train, y_train


def describe_training(cfg: Config, n_images: int, device: torch.device, precision: str, channels_last: bool,
                      ddp: Dist, spe: int, T: int) -> str:
    """The log's one-line account of what is about to be trained, where and for how long."""
    W = ddp.world_size
    return (f"training {cfg.model} / {cfg.objective} on {cfg.dataset} ({n_images} images, {cfg.channels}x"
            f"{cfg.image_size}x{cfg.image_size}" + (f", {cfg.num_classes} classes" if cfg.num_classes else "")
            + f") on {device}, {precision}" + (", channels_last" if channels_last else "") + f"; batch {cfg.batch_size}"
            + (f" per process x {W} processes = global batch {cfg.batch_size * W} (DDP, "
               f"{torch.distributed.get_backend()})" if ddp.enabled else "")
            + f", {spe} steps per epoch, {T} steps ({T / spe:.2f} epochs)"
            + (f" or {cfg.minutes:g} minutes of training, whichever ends first" if cfg.minutes else "")
            + f", G updated every {cfg.n_critic} step(s)"
            + (f", learning rates {cfg.lr_schedule} down to {cfg.lr_end:g} x g_lr/d_lr at the end" if cfg.lr_schedule != "constant"
               else ""))


def write_figures(out: "Out", nets: Nets, grid: tuple, objective: Objective, done: int, spe: int, epoch_end: bool,
                  planned: int, last: bool) -> None:
    """At an epoch's end (or the last step): the fixed-z grid (grid = (z, labels or None, per row)),
    and, when due (out.plots_due) or at the last step, the loss and D-output curves and the
    milestone strip with `planned` steps as its 100 %."""
    z, y, nrow = grid
    name = f"epoch_{done // spe:03d}.png" if epoch_end else f"step_{done:08d}.png"
    out.log.image("samples/fixed_z", save_grid(sample_images(nets.G_show, z, y), out.run_dir / "images" / name, nrow),
                  done)
    if last or out.plots_due():
        write_plots(out, objective, planned)


def write_plots(out: "Out", objective: Objective, planned: int) -> None:
    """loss_curve.png, d_outputs.png, fid_curve.png and milestones.png from the run folder's logs."""
    t0 = time.perf_counter()
    plot_curves(out.run_dir, objective.score_label, objective.score_is_probability)
    plot_milestones(out.run_dir, planned)
    out.plotted(time.perf_counter() - t0)


def adapt_to_world(state: dict, cfg: Config, world: int, notes: list[str]) -> None:
    """A run resumed on another number of processes: the images seen so far, counted in steps of
    the new global batch."""
    saved_world = state.get("world_size", 1)
    if saved_world != world:
        images = state["step"] * cfg.batch_size * saved_world
        state["step"] = images // (cfg.batch_size * world)
        notes.append(f"the run was trained by {saved_world} process(es), now {world}: its {images} images "
                     f"are step {state['step']} at the new global batch {cfg.batch_size * world}; the data "
                     f"order from here differs from an uninterrupted run")


def make_eval(cfg: Config, ddp: Dist, device: torch.device):
    """(judge, eval_z): the dataset's evaluator with its reference features on rank 0 (None on the
    others), and the fixed z every rank makes its share of the samples from; (None, None) when
    quality is not tracked."""
    if cfg.eval_every == 0 or not cfg.judged_in_training():
        return None, None  # (validate() refused --eval-every N > 0 for runs the evaluator cannot judge)
    judge = None
    if ddp.main:
        from .metrics import make_judge
        try:
            judge = make_judge(cfg.dataset, cfg.eval_n, cfg.seed + 2, cfg.z_dim, device, cfg.data_root)
            if judge is None and cfg.eval_every > 0:
                raise ConfigError(f"--eval-every {cfg.eval_every}: there is no evaluator for {cfg.dataset}; "
                                  f"train one with `gankit evaluator train --dataset {cfg.dataset}`")
        except GankitError as e:
            judge = e
    found = judge if isinstance(judge, BaseException) else judge is not None  # an error goes to all ranks
    return (judge, z_from_seed(cfg.seed + 2, cfg.eval_n, cfg.z_dim)) if ddp.share(found) else (None, None)


# ---- the run folder's output ----------------------------------------------------------------------
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


def new_run(cfg: Config, device: torch.device, precision: str, channels_last: bool, world: int,
            command: list[str] | None, name: str | None = None) -> Path:
    """A new numbered run folder NNNNN-<name or preset-dataset> with its config.json (rank 0)."""
    run_dir = create_run_dir(cfg.out_dir, name or f"{cfg.preset}-{cfg.dataset}")
    cfg.save(run_dir / "config.json", gankit_version=__version__, git_commit=git_commit(),
             torch_version=torch.__version__, device=str(device), precision=precision,
             channels_last=channels_last, world_size=world, command=command or sys.argv,
             created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return run_dir


def record_budget(run_dir: Path, minutes: float, step: int, steps_per_epoch: int, train_s: float) -> str:
    """What a time budget bought, said in the log and kept in config.json under `budget`."""
    path = run_dir / "config.json"
    saved = json.loads(path.read_text())
    saved["budget"] = {"minutes": minutes, "steps": step, "epochs": round(step / steps_per_epoch, 4),
                       "train_time_s": round(train_s, 1)}
    atomic_write_text(path, json.dumps(saved, indent=2) + "\n")
    return (f"the {minutes:g}-minute budget bought {step} steps ({step / steps_per_epoch:.2f} epochs) "
            f"in {train_s:.0f} s of training")


# ---- time ----------------------------------------------------------------------------------------
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


# ---- each log tick --------------------------------------------------------------------------------
def nonfinite(values: list[float], step: int) -> str | None:
    bad = ", ".join(f"{k}={v}" for k, v in zip(STAT_NAMES, values) if not math.isfinite(v))
    return f"non-finite values in the steps up to step {step}: {bad}" if bad else None


def log_tick(values: list[float], done: int, cfg: Config, nets: Nets, tally: Tally, clock: Clock,
             out: Out, objective: Objective, spe: int, world: int, say_epoch: bool) -> dict:
    """One stats.jsonl row (and TensorBoard), the epoch line when no progress bar shows, and the
    warning when D has won outright for long. Returns the row."""
    had_G = tally.n_G > 0
    seconds = clock.train_s() - clock.train_tick  # evaluations since the last tick not counted
    row = {"step": done, "epoch": round(done / spe, 4), "images": done * cfg.batch_size * world,
           "loss_D": values[0], "loss_G": values[4] if had_G else None,
           "d_real": values[1], "d_fake": values[2],
           "wasserstein": values[3] if objective.wasserstein else None,
           "grad_norm_D": values[5], "grad_norm_G": values[6] if had_G else None,
           "crossing_rate": values[7] if had_G and objective.balance_scale else None,
           "g_above": values[8] if had_G and objective.balance_scale else None,
           "lr_D": nets.opt_D.param_groups[0]["lr"], "lr_G": nets.opt_G.param_groups[0]["lr"],
           "img_per_s": round((done - clock.step_tick) * cfg.batch_size * world / max(seconds, 1e-9), 1),
           "time_s": round(clock.wall(), 2)}
    if out.main:
        out.log.write(row)
    if say_epoch:
        out.say(f"epoch {done // spe} step {done}: loss_D {values[0]:.4f} loss_G {values[4]:.4f} "
                f"D(x) {values[1]:.3f} D(G(z)) {values[2]:.3f} {row['img_per_s']:.0f} img/s")
    # D's loss pinned near 0 for long: D wins every comparison and G learns nothing. (For a
    # probability score the same shows as D(x) - D(G(z)) saturating near 1.)
    pinned = not objective.wasserstein and (
        values[0] < 0.05 or (objective.score_is_probability and values[1] - values[2] > 0.98))
    tally.low_D_ticks = tally.low_D_ticks + 1 if pinned else 0
    if tally.low_D_ticks == 5:
        out.warn(done, f"D has won outright for 5 log ticks ({5 * cfg.log_every} steps): loss_D "
                       f"{values[0]:.4f}, D(x) {values[1]:.3f}, D(G(z)) {values[2]:.3f}; G's gradient "
                       f"vanishes. Consider a lower --d-lr, a smaller D, or another objective")
    tally.reset_tick()
    clock.tick(done)
    return row


def rollback(problem: str, cfg: Config, ddp: Dist, nets: Nets, tally: Tally, out: Out) -> None:
    """--on-nan rollback: reload the last good checkpoint (every rank) and halve both learning
    rates, at most MAX_ROLLBACKS times over the run. The rows logged after it are dropped."""
    ckpt_path = newest_valid_checkpoint(out.run_dir)[0] if ddp.main else None
    state = ddp.share(load_checkpoint(ckpt_path) if ddp.main else None)
    nets.load_state_dict(state)
    # Time and the rollback count span the run, so they are not taken from the checkpoint.
    tally.load_state_dict(state, keep=("elapsed", "eval_s", "rollbacks"))
    tally.rollbacks += 1
    nets.scale_learning_rates(cfg, 0.5 ** tally.rollbacks)
    if ddp.main:
        for path in (out.log.path, out.log.quality_path, out.log.warnings_path):
            truncate_after(path, tally.step)
    out.warn(tally.step, f"{problem}; rolled back to {ckpt_path.name if ckpt_path else 'the last checkpoint'} "
                         f"(step {tally.step}) with learning rates halved to G {nets.opt_G.param_groups[0]['lr']:.3g}, "
                         f"D {nets.opt_D.param_groups[0]['lr']:.3g} (rollback {tally.rollbacks} of {MAX_ROLLBACKS})")


# ---- quality ---------------------------------------------------------------------------------------
def evaluate(judge, eval_z: torch.Tensor, done: int, spe: int, cfg: Config, ddp: Dist, nets: Nets,
             tally: Tally, clock: Clock, out: Out, device: torch.device) -> dict | None:
    """Evaluator metrics of the fixed eval z, the best generator by FID, collapse warnings. Every
    rank makes its rows of the samples; rank 0 scores them all and returns the quality row (the
    other ranks None)."""
    t_eval, row = time.perf_counter(), None
    W = ddp.world_size
    n_pad = -(-len(eval_z) // W) * W
    mine = lambda t: torch.cat([t, t[:n_pad - len(t)]])[ddp.rank::W]  # noqa: E731 (this rank's rows)
    y = balanced_labels(len(eval_z), cfg.num_classes) if cfg.num_classes else None  # every class as often
    images = generate(nets.G_show, mine(eval_z), y=None if y is None else mine(y))
    images = ddp.gather_rows(images.to(device))[:len(eval_z)]
    if ddp.main:
        q = judge.score(images, y)
        tally.eval_s += time.perf_counter() - t_eval
        row = {"step": done, "epoch": round(done / spe, 4), "time_s": round(clock.wall(), 2),
               "train_time_s": round(clock.train_s(), 2), **q}
        out.log.quality(row)
        tag = judge.tag
        fid, coverage = q[f"fid_{tag}"], q[f"coverage_{tag}"]
        out.say(f"quality at step {done}: fid_{tag} {fid:.2f}, coverage {coverage:.3f}, "
                f"class entropy {q[f'class_entropy_{tag}']:.3f}"
                + (f", class accuracy {q[f'class_accuracy_{tag}']:.3f}" if y is not None else ""))
        if fid < tally.best_fid:
            export_generator(out.run_dir, nets.G, nets.G_ema.module if nets.G_ema is not None else None, cfg, done,
                             name="best", **{f"fid_{tag}": fid})
        if coverage < 0.1 or q[f"rarest_class_share_{tag}"] == 0:
            out.warn(done, f"mode collapse: coverage {coverage:.3f}, rarest class share "
                           f"{q[f'rarest_class_share_{tag}']:.3f} (classes G no longer makes)")
        tally.best_fid = min(tally.best_fid, fid)
    tally.best_fid, tally.eval_s = ddp.share((tally.best_fid, tally.eval_s))
    return row


# ---- checkpoints and stopping ---------------------------------------------------------------------
def save_checkpoint(done: int, periodic: bool, cfg: Config, ddp: Dist, nets: Nets, tally: Tally,
                    clock: Clock, out: Out) -> None:
    """last.pt (and step_N.pt when periodic) and the generator export. A non-finite weight never
    reaches a checkpoint: it would poison every resume. (Every rank checks, so all stop together.)"""
    if not nets.finite():
        raise TrainingStopped(f"non-finite weights at step {done}; not checkpointed. The last "
                              f"good checkpoint is kept in {out.run_dir / 'checkpoints'}", exit_code=3)
    if not ddp.main:
        return
    ckpt = {"config": cfg.to_dict(), "gankit_version": __version__, "world_size": ddp.world_size,
            **nets.state_dict(), **tally.state_dict(), "step": done, "elapsed": clock.wall()}
    folder = out.run_dir / "checkpoints"
    atomic_save(ckpt, folder / "last.pt")
    if periodic and cfg.keep > 0:
        atomic_save(ckpt, folder / f"step_{done:08d}.pt")
        prune(folder, cfg.keep)
    export_generator(out.run_dir, nets.G, nets.G_ema.module if nets.G_ema is not None else None, cfg, done)


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

    def check(self, ddp: Dist, done: int, tick: bool, budget_spent: bool) -> tuple[int, bool]:
        """(signal number or 0, whether the time budget is spent), agreed by every rank: across
        ranks they are compared every STOP_CHECK_EVERY steps and at ticks (a host collective),
        in one process every step. Rank 0's clock decides the budget."""
        if not ddp.enabled:
            return self.signum, budget_spent
        if done % STOP_CHECK_EVERY and not tick:
            return 0, False
        both = ddp.max(self.signum * 2 + int(budget_spent and ddp.main))
        return both // 2, bool(both % 2)

    def restore(self) -> None:
        for s, h in self.handlers.items():
            signal.signal(s, h)
