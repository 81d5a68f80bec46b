"""Before the loop: the checkpoint to resume from, the training data (gankit.data.TrainingData), the quality judge, the
networks, the run folder and its first records, all checked before any work; `start` puts them
together into the loop context (gankit.training.context.Loop)."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..config import Config
from ..data import EpochSampler, TrainingData, check_training_data, training_images
from ..device import autocast as autocast_for, bf16_warning, resolve_precision
from ..errors import ConfigError, GankitError, RunError
from ..files import atomic_write_text
from ..metrics import make_judge
from ..nets import OBJECTIVES
from ..runs import StatsLog, check_run_dir, milestone_path, save_grid, write_models_txt
from ..sample import grid_labels, sample_images, z_from_seed
from .checkpoint import load_checkpoint, newest_valid_checkpoint
from .context import Clock, Loop, Schedule, StopFlag
from .dist import Dist
from .lock import RunLock
from .maintenance import SMALL_DATA, save_checkpoint
from .output import Out, new_run
from .state import Tally, build_nets

UNBOUNDED = 10**15  # the step limit of a run that only its time budget ends (epochs 0)
RESUMABLE_CHANGES = {"epochs", "steps", "minutes", "log_every", "ckpt_every", "ckpt_minutes", "keep", "device", "out_dir",
                     "data_on_device", "host_sync", "optim_impl", "channels_last", "compile"}


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    """The step limit (a time budget, `minutes`, may end training before it); with epochs 0 and a
    budget, one no run reaches (the budget alone ends it)."""
    return cfg.steps if cfg.steps > 0 else cfg.epochs * steps_per_epoch if cfg.epochs else UNBOUNDED


def start(cfg: Config, ddp: Dist, device: torch.device, resume, command, progress: bool | None,
          stop_after: int | None, on_quality, run_name: str | None, held: contextlib.ExitStack) -> Loop:
    """The loop context of a new run, or of the run in `resume` at its newest valid checkpoint.
    Each part raises before anything is written when input is bad. Rank 0 takes the run folder's
    lock into `held`, which the caller leaves when training ends."""
    precision = resolve_precision(cfg.precision, device)
    state, notes, run_dir = read_resume(cfg, ddp, resume, held)
    data = stage_data(cfg, ddp, device, notes)
    sampler = EpochSampler(len(data), cfg.batch_size, cfg.seed, data.x.device, ddp.rank, ddp.world_size)
    T = total_steps(cfg, sampler.steps_per_epoch)
    if state is not None:
        check_more_to_train(state, cfg, ddp.world_size, sampler.steps_per_epoch, T, run_dir, notes)
    judge, eval_z = make_eval(cfg, ddp, device)
    nets = build_nets(cfg, ddp, device)
    channels_last = nets.memory_format == torch.channels_last
    tally = Tally.zeros(device)
    if state is not None:
        note = nets.load_state_dict(state)
        notes += [note] if note else []
        tally.load_state_dict(state)
    elif ddp.main:
        run_dir = new_run(cfg, device, precision, channels_last, ddp.world_size, command, run_name)
        held.enter_context(RunLock(run_dir))
        if (record := data.subset_record(cfg)) is not None:  # which images the run saw, for anyone checking
            atomic_write_text(run_dir / "subset.json", json.dumps(record) + "\n")
    out = open_run(ddp, run_dir, nets, tally, notes, resumed=state is not None)
    if eval_z is None and cfg.eval_every != 0:
        out.say(f"note: no evaluator for {cfg.dataset} at {cfg.image_size}x{cfg.image_size}, so sample quality "
                f"is not tracked during training")
    if len(data) < SMALL_DATA and cfg.augment == "none" and state is None:
        out.say(f"warning: {len(data)} training images and no augmentation: D may memorise them within minutes; "
                f"consider --augment diffaug")
    if precision == "bf16" and (why := bf16_warning(device)):
        out.warn(tally.step, why)
    out.say(describe_training(cfg, len(data), device, precision, channels_last, ddp, sampler.steps_per_epoch, T))
    clock = Clock(tally)
    clock.tick(tally.step)
    # The grids' fixed z; a conditional run's per-epoch grid has one z per row, one class per column.
    fixed_z = torch.randn(cfg.grid_size, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    K = cfg.num_classes
    show_bar = (sys.stderr.isatty() if progress is None else progress) and out.main
    budget = bool(cfg.minutes)
    return Loop(cfg=cfg, ddp=ddp, device=device, nets=nets, tally=tally, clock=clock, out=out,
                objective=OBJECTIVES[cfg.objective],
                schedule=Schedule(cfg, sampler.steps_per_epoch, T, clock, eval_z is not None, stop_after),
                autocast=autocast_for(precision, device), data=data, sampler=sampler,
                judge=judge, eval_z=eval_z, fixed_z=fixed_z,
                grid=grid_labels(fixed_z, K) if K else (fixed_z, None, 8),
                row_y=torch.arange(8, device=device) % K if K else None, stop=StopFlag(),
                bar=tqdm(total=None if budget else T, initial=tally.step, disable=not show_bar, unit="step",
                         dynamic_ncols=True), show_bar=show_bar, on_quality=on_quality)


def first_records(L: Loop) -> None:
    """A new run's step 0: its milestone row and a checkpoint, so it is resumable at once and a
    rollback has a base. Then the clocks start: the time budget counts training, from the first step."""
    if L.tally.step == 0:
        if L.out.main:
            save_grid(sample_images(L.nets.G_show, L.fixed_z[:8], L.row_y), milestone_path(L.out.run_dir, 0))
        save_checkpoint(L, 0, periodic=False)
    L.nets.G.train()
    L.nets.D.train()
    L.clock.restart()
    L.schedule.checkpointed()  # the next checkpoint by time counts from here
    L.schedule.frac_now = L.schedule.fraction(L.tally.step)  # (advance moves it to frac_before)


def open_run(ddp: Dist, run_dir: Path | None, nets, tally: Tally, notes: list[str], resumed: bool) -> Out:
    """The run folder's output: models.txt, the stats log (cut back to the checkpoint's step on a
    resume) and the notes so far (rank 0 writes)."""
    out = Out(ddp.share(run_dir), ddp.main)
    if out.main:
        (out.run_dir / "checkpoints").mkdir(exist_ok=True)
        models_text = write_models_txt(out.run_dir, nets.G, nets.D)
        out.log = StatsLog(out.run_dir, resume_step=tally.step if resumed else None)
        for note in notes:
            out.say(note)
        if not resumed:
            out.say(models_text.rstrip())
    out.say(f"run folder: {out.run_dir}")
    return out


def check_more_to_train(state: dict, cfg: Config, world: int, spe: int, T: int, run_dir: Path,
                        notes: list[str]) -> None:
    """A resumed run: its step counted at this launch's global batch, and something left to train."""
    adapt_to_world(state, cfg, world, notes)
    trained_s = state["elapsed"] - state.get("eval_s", 0.0)
    if state["step"] >= T or (cfg.minutes and trained_s >= cfg.minutes * 60):
        raise RunError(f"{run_dir} already trained {state['step']} steps ({state['step'] / spe:.2f} epochs) in "
                       f"{trained_s / 60:.1f} minutes; raise --epochs, --steps or --minutes to continue it")


def check_unchanged(cfg: Config, state: dict, ckpt_path: Path, run_dir: Path) -> None:
    """A resumed run may change only RESUMABLE_CHANGES (a longer budget, where it runs, how often it logs)."""
    saved = Config.from_dict(state["config"], source=str(ckpt_path))
    changed = {k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v} - RESUMABLE_CHANGES
    if changed:
        raise RunError(f"{run_dir}: cannot resume with changed {', '.join(sorted(changed))} "
                       f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")


def check_start(cfg: Config, resume: str | Path | None = None, world: int = 1) -> int:
    """Everything a start of `cfg` would refuse before its first step, checked without training,
    decoding a folder or writing anything (what `gankit train --dry-run` runs): the training data
    and --subset (gankit.data.check_training_data), and for a resume the checkpoint, the fields
    that may not change and whether anything is left to train. Returns the number of training
    images, -1 for a dataset on no disk here (a start downloads it; its files were not checked)."""
    n = check_training_data(cfg)
    if resume is None:
        return n
    run_dir = check_run_dir(resume)
    ckpt_path, _ = newest_valid_checkpoint(run_dir)
    state = load_checkpoint(ckpt_path)
    check_unchanged(cfg, state, ckpt_path, run_dir)
    if n > 0:
        spe = ((cfg.subset or n) // world) // cfg.batch_size
        check_more_to_train(dict(state), cfg, world, spe, total_steps(cfg, spe), run_dir, [])
    return n


def read_resume(cfg: Config, ddp: Dist, resume, held: contextlib.ExitStack) -> tuple[dict | None, list[str], Path | None]:
    """The checkpoint to resume from, read and checked by rank 0 before any work and shared with
    the other ranks: (state, notes for the log, run folder); (None, [], None) for a new run. Rank 0
    first takes the folder's lock (into `held`): one writer per run folder."""
    if resume is None:
        return None, [], None
    notes: list[str] = []
    run_dir = Path(resume)
    try:
        state = None
        run_dir = check_run_dir(resume)  # (on other machines than rank 0's it may not exist: rank 0 decides)
        if ddp.main:
            held.enter_context(RunLock(run_dir))
            ckpt_path, notes = newest_valid_checkpoint(run_dir)
            state = load_checkpoint(ckpt_path)
            check_unchanged(cfg, state, ckpt_path, run_dir)
            notes.append(f"resuming from {ckpt_path.name} at step {state['step']}")
    except GankitError as e:
        state = e
    return ddp.share(state), notes, run_dir


def stage_data(cfg: Config, ddp: Dist, device: torch.device, notes: list[str]) -> TrainingData:
    """The run's TrainingData (gankit.data.training). Rank 0 reads the images first (for a folder:
    decodes and caches it); the other ranks then read its cache."""
    if ddp.main:
        try:
            images = training_images(cfg, say=notes.append)
            ddp.share(None)
        except GankitError as e:
            ddp.share(e)
    else:
        ddp.share(None)
        images = training_images(cfg, say=lambda msg: None, progress=False)
    return TrainingData.prepare(cfg, images, device, say=notes.append)


def describe_training(cfg: Config, n_images: int, device: torch.device, precision: str, channels_last: bool,
                      ddp: Dist, spe: int, T: int) -> str:
    """The log's one-line account of what is about to be trained, where and for how long."""
    W = ddp.world_size
    return (f"training {cfg.model} / {cfg.objective} on {cfg.dataset} ({n_images} images, {cfg.channels}x"
            f"{cfg.image_size}x{cfg.image_size}" + (f", {cfg.num_classes} classes" if cfg.num_classes else "")
            + f") on {device}, {precision}" + (", channels_last" if channels_last else "") + f"; batch {cfg.batch_size}"
            + (f" per process x {W} processes = global batch {cfg.batch_size * W} (DDP, "
               f"{torch.distributed.get_backend()})" if ddp.enabled else "")
            + f", {spe} steps per epoch, "
            + (f"{cfg.minutes:g} minutes of training" if T == UNBOUNDED else f"{T} steps ({T / spe:.2f} epochs)"
               + (f" or {cfg.minutes:g} minutes of training, whichever ends first" if cfg.minutes else ""))
            + f", G updated every {cfg.n_critic} step(s)"
            + (f", learning rates {cfg.lr_schedule} down to {cfg.lr_end:g} x g_lr/d_lr at the end" if cfg.lr_schedule != "constant"
               else "")
            + (f", R1/R2 gamma {cfg.gamma_schedule} down to {cfg.gamma_end:g} x at the end" if cfg.gamma_schedule != "constant"
               else ""))


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
        try:
            judge = make_judge(cfg.dataset, cfg.eval_n, cfg.seed + 2, cfg.z_dim, device, cfg.data_root)
            if judge is None and cfg.eval_every > 0:
                raise ConfigError(f"--eval-every {cfg.eval_every}: there is no evaluator for {cfg.dataset}; "
                                  f"train one with `gankit evaluator train --dataset {cfg.dataset}`")
        except GankitError as e:
            judge = e
    found = judge if isinstance(judge, BaseException) else judge is not None  # an error goes to all ranks
    return (judge, z_from_seed(cfg.seed + 2, cfg.eval_n, cfg.z_dim)) if ddp.share(found) else (None, None)
