"""Everything the training loop does around the D and G updates, after each step: log ticks,
evaluations, the NaN rollback, milestones, grids and plots, checkpoints, and when to stop (signals,
the time budget, a quality target). Each function takes the loop context (gankit.training.context.Loop);
rank 0 alone writes, and the functions that need every rank say so."""
from __future__ import annotations

import signal
import time
from enum import Enum

import torch

from ..errors import GankitError
from ..data import to_float
from ..export import export_generator
from ..runs import milestone_path, save_grid, truncate_after
from ..sample import balanced_labels, generate, sample_images
from ..version import __version__
from ..nets import ada
from .checkpoint import atomic_save, load_checkpoint, newest_valid_checkpoint, prune
from ..runs import stats as catalogue
from .context import Loop

MAX_ROLLBACKS = 3  # --on-nan rollback gives up after this many
OVERFIT_R_T = 0.9  # r_t above this for 5 log ticks (small data, no augmentation): a warning that D may be memorising
SMALL_DATA = 10_000  # fewer training images than this count as a small dataset


class TrainingStopped(GankitError):
    """Training ended early (signal or non-finite values); the message says why and where."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
        self.quiet = False  # True on DDP ranks other than 0: rank 0 says it


class Next(Enum):
    """What after_step answers the loop."""
    GO_ON = "go on"  # train the next step (also after a rollback: from the reloaded checkpoint)
    END = "end"      # training is over: the last step, or stop_after's


class Tick(Enum):
    """What a log tick did."""
    LOGGED = "logged"            # wrote its row; maintenance goes on
    ROLLED_BACK = "rolled back"  # found non-finite values and reloaded the last checkpoint


def after_step(L: Loop, done: int, tick: bool) -> Next:
    """The maintenance after step `done`, in order: the log tick (after a rollback there the loop
    goes on at once, from the checkpoint), an evaluation, a milestone row, the fixed-z grid and
    plots, a checkpoint; then whether training goes on. Raises TrainingStopped for non-finite
    values or a signal (after checkpointing)."""
    S = L.schedule
    S.advance(done)
    if L.cfg.augment == "ada" and done % ada.INTERVAL == 0:
        adapt_augmentation(L)
    if tick and log_tick(L, done) is Tick.ROLLED_BACK:
        return Next.GO_ON
    if S.evaluation(done):
        quality = evaluate(L, done)
        if L.on_quality is not None and not S.last:
            if L.ddp.share(bool(L.on_quality(quality)) if L.ddp.main else None):
                S.finish()
                L.out.say(f"stopping at step {done}: on_quality asked to")
    if S.milestone(done) and L.out.main:
        save_grid(sample_images(L.nets.G_show, L.fixed_z[:8], L.row_y), milestone_path(L.out.run_dir, done))
    if S.figures(done):
        if L.out.main:
            write_grid(L, done)
        if S.checkpoint(done):
            save_checkpoint(L, done, periodic=S.epoch_end(done))
    if S.last:
        return Next.END
    if S.stop_asked(done):
        save_checkpoint(L, done, periodic=False)
        L.out.say(f"stopped at step {done} as asked; continue with: gankit train --resume {L.out.run_dir}")
        return Next.END
    signum, budget_spent, ckpt_due = L.stop.check(L.ddp, done, tick, S.budget_s > 0 and L.clock.train_s() >= S.budget_s,
                                                  S.checkpoint_due_by_time())
    if budget_spent:
        S.finish()  # the next step is the last
    if signum:
        stopped_by_signal(L, done, signum)
    if ckpt_due:  # within an epoch: a kill now loses at most --ckpt-minutes of training
        save_checkpoint(L, done, periodic=False)
    return Next.GO_ON


def adapt_augmentation(L: Loop) -> None:
    """ADA: move p toward keeping r_t at the target, from the r_t of the last ada.INTERVAL steps
    averaged over the ranks (so p stays equal on every rank). On the device, no host sync."""
    t, cfg = L.tally.ada, L.cfg
    r_t = L.ddp.all_mean(t[1:2].clone())[0] / ada.INTERVAL
    t[0] = ada.adjust(t[0], r_t, cfg.ada_target, ada.INTERVAL * cfg.batch_size * L.world, cfg.ada_speed)
    t[1] = 0


def stopped_by_signal(L: Loop, done: int, signum: int) -> None:
    """Ctrl-C or SIGTERM: checkpoint, redraw the plots as of this step, and stop (every rank)."""
    save_checkpoint(L, done, periodic=False)
    if L.out.main:  # (at epoch ends they are only redrawn when due)
        L.out.write_plots(L.objective.score_label, L.objective.score_is_probability, L.schedule.planned(done))
    raise TrainingStopped(f"stopped by {signal.Signals(signum).name} at step {done}"
                          + (f" (sent to one or more of the {L.world} processes)" if L.world > 1 else "")
                          + f"; checkpoint saved. Continue with: gankit train --resume {L.out.run_dir}",
                          exit_code=128 + signum)


# ---- each log tick --------------------------------------------------------------------------------
def log_tick(L: Loop, done: int) -> Tick:
    """The tick's statistics, averaged over the ranks and checked: non-finite values roll back
    (--on-nan rollback) or stop training; otherwise one stats.jsonl row (and
    TensorBoard), the progress bar's figures, the epoch line when no bar shows, and the warning
    when D has won outright for long. Every rank."""
    stats = catalogue.named(L.ddp.all_mean(L.tally.means()))
    problem = catalogue.nonfinite(stats, done)
    if problem and L.cfg.on_nan == "rollback" and L.tally.rollbacks < MAX_ROLLBACKS:
        rollback(L, problem)
        return Tick.ROLLED_BACK
    if problem:
        raise TrainingStopped(
            f"{problem}. Nothing after the last checkpoint was saved"
            + (f" ({L.tally.rollbacks} rollbacks already tried)" if L.tally.rollbacks else "")
            + "; lower the learning rates, try another objective, or use --on-nan rollback", exit_code=3)
    row = tick_row(L, stats, done)
    if L.out.main:
        L.out.log.write(row)
    if not L.show_bar:
        L.epoch_mean.add(done - L.clock.step_tick, {k: stats[k] for k in EPOCH_LINE})
    if L.schedule.epoch_end(done) and not L.show_bar:
        m = L.epoch_mean.take()  # the epoch's means (of the steps this process trained), not the last interval's
        L.out.say(f"epoch {done // L.schedule.spe} step {done}: "
                  + " ".join(f"{catalogue.STATS[k].label} {m[k]:{f}}" for k, f in EPOCH_LINE.items())
                  + f" {row['img_per_s']:.0f} img/s ("
                  + (f"means of the last {L.schedule.epochs_per_end} epochs)" if L.schedule.epochs_per_end > 1
                     else "epoch means)"))
    warn_if_D_wins(L, stats, done)
    L.tally.reset_tick()
    L.clock.tick(done)
    L.bar.set_postfix(loss_D=f"{stats['loss_D']:.3f}", loss_G=f"{stats['loss_G']:.3f}", Dx=f"{stats['d_real']:.3f}",
                      DGz=f"{stats['d_fake']:.3f}", img_s=f"{row['img_per_s']:.0f}", refresh=False)
    return Tick.LOGGED


EPOCH_LINE = {"loss_D": ".4f", "loss_G": ".4f", "d_real": ".3f", "d_fake": ".3f"}  # the epoch line's statistics


def tick_row(L: Loop, stats: dict[str, float], done: int) -> dict:
    """The stats.jsonl row of a tick: the statistics of gankit.runs.stats in its order, each None
    where it does not apply (G's before its first update, the Wasserstein estimate of another
    objective, the balance index without a balance line, R1/R2 in a tick whose steps computed none)."""
    had_G, cfg = L.tally.n_G > 0, L.cfg
    seconds = L.clock.train_s() - L.clock.train_tick  # evaluations since the last tick not counted
    batch = cfg.batch_size * L.world
    values = {**stats, **heldout_gap(L), "lr_D": L.nets.opt_D.param_groups[0]["lr"],
              "lr_G": L.nets.opt_G.param_groups[0]["lr"],
              "img_per_s": round((done - L.clock.step_tick) * batch / max(seconds, 1e-9), 1)}
    holds = {"always": True, "G": had_G, "wasserstein": L.objective.wasserstein,
             "balance": had_G and L.objective.balance_scale is not None, "ada": cfg.augment == "ada",
             "probe": L.data.probe is not None}
    if cfg.r1 or cfg.r2:  # (rows of runs without R1/R2 have no such keys; likewise without a decoder)
        holds |= {"r1": L.tally.n_reg > 0 and cfg.r1 > 0, "r2": L.tally.n_reg > 0 and cfg.r2 > 0}
    if L.nets.D.decoders is not None:
        holds["decoder"] = L.tally.n_recon > 0
    return {"step": done, "epoch": round(done / L.schedule.spe, 4), "images": done * batch,
            **catalogue.row(values, holds), "time_s": round(L.clock.wall(), 2), "train_time_s": round(L.clock.train_s(), 2)}


def heldout_gap(L: Loop) -> dict:
    """D's mean score on a fixed slice of the training images and on as many held-out real images
    (the test split, or the images of a folder that --subset left out), and their gap: a D that
    memorises its training images scores them higher than real images it never saw (None without
    held-out images). Every rank (a SyncBatchNorm D gathers over them all); rank 0 logs it. D runs
    as in training; its buffers (BatchNorm statistics, spectral norm's vectors) are put back, so
    training is unchanged by looking."""
    if L.data.probe is None:
        return {"d_train_probe": None, "d_heldout": None, "heldout_gap": None}  # (the row says None: "probe" fails)
    D = L.nets.D
    saved = [b.clone() for b in D.buffers()]
    scores = []
    with torch.no_grad(), L.autocast:
        for x, y in L.data.probe:
            x = to_float(x).contiguous(memory_format=L.nets.memory_format)
            logits, _ = D.split_logits(D(x, *([y] if y is not None else [])).float())
            scores.append(float(L.objective.score(logits).mean()))
    for b, s in zip(D.buffers(), saved):
        b.copy_(s)
    return {"d_train_probe": scores[0], "d_heldout": scores[1], "heldout_gap": scores[0] - scores[1]}


def warn_if_D_wins(L: Loop, stats: dict[str, float], done: int) -> None:
    """D's loss pinned near 0 for long: D wins every comparison and G learns nothing. (For a
    probability score, D(x) - D(G(z)) saturating near 1 says the same.) And D calling nearly every
    training image real for long (r_t, Karras et al. 2020) on a small dataset without augmentation:
    it may be memorising them."""
    pinned = not L.objective.wasserstein and (
        stats['loss_D'] < 0.05 or (L.objective.score_is_probability and stats['d_real'] - stats['d_fake'] > 0.98))
    L.tally.low_D_ticks = L.tally.low_D_ticks + 1 if pinned else 0
    if L.tally.low_D_ticks == 5:
        L.out.warn(done, f"D has won outright for 5 log ticks ({5 * L.cfg.log_every} steps): loss_D "
                         f"{stats['loss_D']:.4f}, D(x) {stats['d_real']:.3f}, D(G(z)) {stats['d_fake']:.3f}; G's gradient "
                         f"vanishes. Consider a lower --d-lr, a smaller D, or another objective")
    overfitting = (not L.objective.wasserstein and stats['r_t'] > OVERFIT_R_T and L.cfg.augment == "none"
                   and len(L.data) < SMALL_DATA)  # (on a large dataset a confident D is no sign of memorising)
    L.tally.overfit_ticks = L.tally.overfit_ticks + 1 if overfitting else 0
    if L.tally.overfit_ticks == 5:
        L.out.warn(done, f"D calls nearly every training image real (r_t = E[sign(D(x))] = {stats['r_t']:.2f} for 5 log "
                         f"ticks): it may be memorising them; try --augment ada (or diffaug)")


def rollback(L: Loop, problem: str) -> None:
    """--on-nan rollback: reload the last good checkpoint (every rank) and halve both learning
    rates, at most MAX_ROLLBACKS times over the run. The rows logged after it are dropped, and
    the step limit counts again."""
    ddp, nets, tally, out = L.ddp, L.nets, L.tally, L.out
    ckpt_path = newest_valid_checkpoint(out.run_dir)[0] if ddp.main else None
    state = ddp.share(load_checkpoint(ckpt_path) if ddp.main else None)
    nets.load_state_dict(state)
    # Time and the rollback count span the run, so they are not taken from the checkpoint.
    tally.load_state_dict(state, keep=("elapsed", "eval_s", "rollbacks"))
    tally.rollbacks += 1
    nets.scale_learning_rates(L.cfg, 0.5 ** tally.rollbacks)
    if ddp.main:
        for path in (out.log.path, out.log.quality_path, out.log.warnings_path):
            truncate_after(path, tally.step)
    out.warn(tally.step, f"{problem}; rolled back to {ckpt_path.name if ckpt_path else 'the last checkpoint'} "
                         f"(step {tally.step}) with learning rates halved to G {nets.opt_G.param_groups[0]['lr']:.3g}, "
                         f"D {nets.opt_D.param_groups[0]['lr']:.3g} (rollback {tally.rollbacks} of {MAX_ROLLBACKS})")
    L.bar.reset(total=None if L.schedule.budget_s else L.schedule.total)
    L.bar.update(tally.step)
    L.clock.tick(tally.step)
    L.epoch_mean.take()  # (the steps rolled back leave the epoch's means)
    L.schedule.last = False


# ---- quality ---------------------------------------------------------------------------------------
def evaluate(L: Loop, done: int) -> dict | None:
    """Evaluator metrics of the fixed eval z, the best generator by FID, collapse warnings. Every
    rank makes its rows of the samples; rank 0 scores them all and returns the quality row (the
    other ranks None)."""
    t_eval, row = time.perf_counter(), None
    ddp, cfg, nets, tally, W = L.ddp, L.cfg, L.nets, L.tally, L.world
    n_pad = -(-len(L.eval_z) // W) * W
    mine = lambda t: torch.cat([t, t[:n_pad - len(t)]])[ddp.rank::W]  # noqa: E731 (this rank's rows)
    y = balanced_labels(len(L.eval_z), cfg.num_classes) if cfg.num_classes else None  # every class as often
    images = generate(nets.G_show, mine(L.eval_z), y=None if y is None else mine(y))
    images = ddp.gather_rows(images.to(L.device))[:len(L.eval_z)]
    if ddp.main:
        q = L.judge.score(images, y)
        tally.eval_s += time.perf_counter() - t_eval
        row = {"step": done, "epoch": round(done / L.schedule.spe, 4), "time_s": round(L.clock.wall(), 2),
               "train_time_s": round(L.clock.train_s(), 2), **q}
        L.out.log.quality(row)
        say_quality(L, q, done, conditional=y is not None)
        fid = q[f"fid_{L.judge.tag}"]
        if fid < tally.best_fid:
            export_generator(L.out.run_dir, nets.G, nets.G_ema.module if nets.G_ema is not None else None, cfg, done,
                             name="best", **{f"fid_{L.judge.tag}": fid})
        tally.best_fid = min(tally.best_fid, fid)
    tally.best_fid, tally.eval_s = ddp.share((tally.best_fid, tally.eval_s))
    return row


def say_quality(L: Loop, q: dict, done: int, conditional: bool) -> None:
    """The evaluation's line in the log, and a warning when G has stopped making some classes."""
    tag = L.judge.tag
    fid, coverage, rarest = q[f"fid_{tag}"], q[f"coverage_{tag}"], q[f"rarest_class_share_{tag}"]
    L.out.say(f"quality at step {done}: fid_{tag} {fid:.2f}, coverage {coverage:.3f}, "
              f"class entropy {q[f'class_entropy_{tag}']:.3f}"
              + (f", class accuracy {q[f'class_accuracy_{tag}']:.3f}" if conditional else ""))
    if coverage < 0.1 or rarest == 0:
        L.out.warn(done, f"mode collapse: coverage {coverage:.3f}, rarest class share {rarest:.3f} "
                         f"(classes G no longer makes)")


# ---- grids, checkpoints and stopping --------------------------------------------------------------
def write_grid(L: Loop, done: int) -> None:
    """At an epoch's end (or the last step): the fixed-z grid, and, when due (Out.plots_due) or at
    the last step, the loss and D-output curves and the milestone strip (rank 0)."""
    z, y, nrow = L.grid
    name = f"epoch_{done // L.schedule.spe:03d}.png" if L.schedule.epoch_boundary(done) else f"step_{done:08d}.png"
    L.out.log.image("samples/fixed_z", save_grid(sample_images(L.nets.G_show, z, y), L.out.run_dir / "images" / name,
                                                 nrow), done)
    if L.schedule.last or L.out.plots_due():
        L.out.write_plots(L.objective.score_label, L.objective.score_is_probability, L.schedule.planned(done))


def save_checkpoint(L: Loop, done: int, periodic: bool) -> None:
    """last.pt (and step_N.pt when periodic) and the generator export. A non-finite weight never
    reaches a checkpoint: it would poison every resume. (Every rank checks, so all stop together.)"""
    cfg, nets, out = L.cfg, L.nets, L.out
    if not nets.finite():
        raise TrainingStopped(f"non-finite weights at step {done}; not checkpointed. The last "
                              f"good checkpoint is kept in {out.run_dir / 'checkpoints'}", exit_code=3)
    L.schedule.checkpointed()
    if not L.ddp.main:
        return
    ckpt = {"config": cfg.to_dict(), "gankit_version": __version__, "world_size": L.world,
            **nets.state_dict(), **L.tally.state_dict(), "step": done, "elapsed": L.clock.wall()}
    folder = out.run_dir / "checkpoints"
    atomic_save(ckpt, folder / "last.pt")
    if periodic and cfg.keep > 0:
        atomic_save(ckpt, folder / f"step_{done:08d}.pt")
        prune(folder, cfg.keep)
    export_generator(out.run_dir, nets.G, nets.G_ema.module if nets.G_ema is not None else None, cfg, done)
