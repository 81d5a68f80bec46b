"""train(cfg) -> run folder: the one training loop, readable top to bottom.

The loop follows the shape of StyleGAN2-ADA's training_loop() and nanoGPT's train.py. A *step*
is one D update on one real batch; G is updated on every n_critic-th step with the fake batch
that step already made, as in the labs' loops. Everything a step does is a function of (seed,
step, state), which is what makes resume exact: the batch comes from EpochSampler(seed, step),
the noise from a dedicated generator whose state is checkpointed (gankit/state.py).

No host synchronisation happens inside a step: statistics are summed on the device and read
once per log tick, where non-finite values are also caught before they can reach a checkpoint.
What happens around the updates (ticks, evaluations, rollback, checkpoints, stopping) lives in
gankit/maintenance.py as plain functions.
"""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Callable

import torch

from . import balance
from .config import Config
from .data import EpochSampler, to_float
from .device import autocast as autocast_for, bf16_warning, resolve_device, resolve_precision
from .dist import Dist, setup as setup_dist
from .errors import ConfigError, RunError
from .latent import sample_images
from .conditional import grid_labels, split_logits
from .losses import OBJECTIVES, class_loss, clip_weights, gradient_penalty
from .optim import lr_factor
from .maintenance import (MAX_ROLLBACKS, Clock, Out, StopFlag, TrainingStopped, adapt_to_world, describe_training,
                          evaluate, log_tick, make_eval, new_run, nonfinite, read_resume, record_budget, rollback,
                          save_checkpoint, stage_data, write_figures, write_plots)
from .runs import MILESTONES, StatsLog, milestone_path, save_grid, write_models_txt
from .state import Tally, build_nets

__all__ = ["train", "TrainingStopped", "MILESTONES", "total_steps"]


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    """L2 norm of all gradients as a device tensor (no host sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    """The step limit (a time budget, `minutes`, may end training before it)."""
    return cfg.steps if cfg.steps > 0 else cfg.epochs * steps_per_epoch


def train(cfg: Config, resume: str | Path | None = None, command: list[str] | None = None,
          progress: bool | None = None, stop_after: int | None = None,
          on_quality: Callable[[dict], bool] | None = None, run_name: str | None = None) -> Path:
    """Train as `cfg` says and return the run folder. With `resume`, continue the run in that
    folder from its newest valid checkpoint; `cfg` may differ from the saved one only in
    RESUMABLE_CHANGES (e.g. more epochs or minutes). `stop_after` stops at that step as a signal
    would (checkpoint, no extra log tick), leaving the run resumable. `on_quality` sees each row of
    quality.jsonl as it is written; when it returns True the run ends there as a finished run does
    (final grid, checkpoint, export): a quality target, or a tuner's pruning. `run_name` replaces
    "<preset>-<dataset>" in a new run folder's name (NNNNN-<run_name>). Under torchrun every rank
    calls this; rank 0 alone writes the run folder."""
    cfg = cfg.resolved().validate()
    ddp, device_name = setup_dist(cfg.device)
    try:
        return _train(cfg, ddp, resolve_device(device_name), resume, command, progress, stop_after, on_quality,
                      run_name)
    except TrainingStopped as e:
        if not ddp.main:  # every rank stops at the same step; rank 0 reports it and carries the exit code
            e.exit_code, e.quiet = 0, True
        raise
    finally:
        ddp.close()


def _train(cfg: Config, ddp: Dist, device: torch.device, resume, command, progress, stop_after, on_quality,
           run_name) -> Path:
    torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
    if cfg.sync_bn and ddp.enabled and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only; on the CPU each "
                          "rank's BatchNorm uses its own batch (drop --sync-bn)")
    if cfg.lr_schedule != "constant" and cfg.minutes and ddp.enabled:
        raise ConfigError(f"--lr-schedule {cfg.lr_schedule} with --minutes under torchrun: the schedule would follow "
                          f"each rank's own clock, so the ranks' learning rates, and then their weights, would drift "
                          f"apart; give the budget as --steps or --epochs")
    objective = OBJECTIVES[cfg.objective]
    precision = resolve_precision(cfg.precision, device)
    autocast = autocast_for(precision, device)
    W = ddp.world_size

    # Checkpoint, data, judge, networks. Each raises before anything is written when input is bad.
    state, notes, run_dir = read_resume(cfg, ddp, resume)
    x_train, y_train = stage_data(cfg, ddp, device, notes)
    sampler = EpochSampler(len(x_train), cfg.batch_size, cfg.seed, x_train.device, ddp.rank, W)
    spe = sampler.steps_per_epoch
    T = total_steps(cfg, spe)
    budget_s = (cfg.minutes or 0) * 60  # 0: no time budget
    if state is not None:
        adapt_to_world(state, cfg, W, notes)
        if state["step"] >= T or (budget_s and state["elapsed"] - state.get("eval_s", 0.0) >= budget_s):
            raise RunError(f"{run_dir} already trained {state['step']} steps ({state['step'] / spe:.2f} epochs) in "
                           f"{(state['elapsed'] - state.get('eval_s', 0.0)) / 60:.1f} minutes; raise --epochs, --steps "
                           f"or --minutes to continue it")
    judge, eval_z = make_eval(cfg, ddp, device)
    nets = build_nets(cfg, ddp, device)
    G, D, G_train, D_train, D_frozen = nets.G, nets.D, nets.G_train, nets.D_train, nets.D_frozen
    channels_last = nets.memory_format == torch.channels_last
    tally = Tally.zeros(device)
    if state is not None:
        note = nets.load_state_dict(state)
        notes += [note] if note else []
        tally.load_state_dict(state)
    elif ddp.main:
        run_dir = new_run(cfg, device, precision, channels_last, W, command, run_name)

    # The run folder: models, stats log, what this run is.
    out = Out(ddp.share(run_dir), ddp.main)
    if out.main:
        (out.run_dir / "checkpoints").mkdir(exist_ok=True)
        models_text = write_models_txt(out.run_dir, G, D)
        out.log = StatsLog(out.run_dir, resume_step=tally.step if state is not None else None)
        for note in notes:
            out.say(note)
        if state is None:
            out.say(models_text.rstrip())
    out.say(f"run folder: {out.run_dir}")
    if eval_z is None and cfg.eval_every != 0:
        out.say(f"note: no evaluator for {cfg.dataset} at {cfg.image_size}x{cfg.image_size}, so sample quality "
                f"is not tracked during training")
    if precision == "bf16" and (why := bf16_warning(device)):
        out.warn(tally.step, why)
    out.say(describe_training(cfg, len(x_train), device, precision, channels_last, ddp, spe, T))

    def draw(fn, *shape: int) -> torch.Tensor:
        """This rank's rows of one global draw (fn: torch.randn or torch.rand) of W * shape[0] rows
        from the noise generator, so W ranks with batch B see the same noise as one process with
        batch W * B, and the draws resume exactly with the generator's state."""
        return fn(W * shape[0], *shape[1:], device=device, generator=nets.noise)[ddp.rank::W]

    def fraction(done: int) -> float:
        """How much of the training is done: of the steps, or of the time budget if that is further."""
        return max(done / T, clock.train_s() / budget_s) if budget_s else done / T

    fixed_z = torch.randn(cfg.grid_size, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    K = cfg.num_classes  # 0: unconditional
    # The per-epoch grid: 8 per row; a conditional run's: one z per row, one class per column.
    grid_z, grid_y, grid_nrow = grid_labels(fixed_z, K) if K else (fixed_z, None, 8)
    row_y = torch.arange(8, device=device) % K if K else None  # the 8 images of a milestone row
    milestone_steps = {pct * T // 100 for pct in MILESTONES}
    stop = StopFlag()
    show_bar = (sys.stderr.isatty() if progress is None else progress) and out.main
    from tqdm import tqdm
    bar = tqdm(total=None if budget_s else T, initial=tally.step, disable=not show_bar, unit="step",
               dynamic_ncols=True)
    clock = Clock(tally)
    clock.tick(tally.step)
    if tally.step == 0:
        if out.main:
            save_grid(sample_images(nets.G_show, fixed_z[:8], row_y), milestone_path(out.run_dir, 0))
        save_checkpoint(0, False, cfg, ddp, nets, tally, clock, out)  # resumable at once; a base for rollback
    G.train()
    D.train()
    clock.restart()  # the time budget counts training, from the first step
    frac_before, last_step = fraction(tally.step), False

    try:
        while tally.step < T:
            step = tally.step
            done = step + 1
            last_step = last_step or done == T  # (a spent time budget sets it for the step after)
            update_G = step % cfg.n_critic == cfg.n_critic - 1
            # Gradient norms are only read at log ticks, so only the step before one computes them.
            tick = done % cfg.log_every == 0 or done % spe == 0 or last_step
            idx = sampler.indices(step)
            x_real = to_float(x_train[idx].to(device, non_blocking=True))  # (B, C, H, W) in [-1, 1]
            if cfg.hflip:  # half the batch mirrored, drawn like the noise (resumable, rank-consistent)
                flip = draw(torch.rand, cfg.batch_size) < 0.5
                x_real = torch.where(flip[:, None, None, None], x_real.flip(-1), x_real)
            x_real = x_real.contiguous(memory_format=nets.memory_format)
            z = draw(torch.randn, cfg.batch_size, cfg.z_dim)
            # A conditional run: the real batch's labels come with its images; the fake batch's
            # classes are drawn uniformly from the noise stream. (Unconditional: no labels.)
            y_real = (y_train[idx].to(device, non_blocking=True),) if K else ()
            y_fake = ((draw(torch.rand, cfg.batch_size) * K).long().clamp_(max=K - 1),) if K else ()
            if cfg.lr_schedule != "constant":  # both learning rates follow the schedule (and any rollback's halving)
                nets.scale_learning_rates(cfg, 0.5 ** tally.rollbacks * lr_factor(cfg.lr_schedule, fraction(step), cfg.lr_end))

            # Update D. The fake batch is made once; it keeps G's graph only when G learns from
            # it in this step. An AC-GAN D also returns class logits, scored by class_loss.
            with torch.set_grad_enabled(update_G), autocast:
                x_fake = G_train(z, *y_fake)
            with autocast:
                d_real, c_real = split_logits(D_train(x_real, *y_real).float())
                d_fake, c_fake = split_logits(D_train(x_fake.detach(), *y_fake).float())
            loss_D = loss_D_objective = objective.d_loss(d_real, d_fake)
            if c_real is not None:
                loss_D = loss_D + cfg.ac_weight * (class_loss(c_real, *y_real) + class_loss(c_fake, *y_fake))
            if cfg.gp_weight > 0:
                eps = draw(torch.rand, cfg.batch_size, 1, 1, 1)
                loss_D = loss_D + cfg.gp_weight * gradient_penalty(D, x_real, x_fake.detach().to(x_real.dtype), eps=eps,
                                                                   labels=y_real[0] if K else None)
            nets.opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            if tick:
                tally.grad_norms[0] = _grad_norm(D)
            nets.opt_D.step()
            if cfg.clip > 0:
                clip_weights(D, cfg.clip)
            with torch.no_grad():
                tally.acc_D += torch.stack([loss_D.detach(), objective.score(d_real).mean(),
                                            objective.score(d_fake).mean(), d_real.mean() - d_fake.mean()])
            if cfg.host_sync:
                loss_D.item()
            tally.n_D += 1

            # Update G. D's weights need no gradients here; switching them off saves that work.
            if update_G:
                D.requires_grad_(False)
                with autocast:
                    d_fake_G, c_fake_G = split_logits(D_frozen(x_fake, *y_fake).float())
                loss_G = loss_G_objective = objective.g_loss(d_fake_G)
                if c_fake_G is not None:
                    loss_G = loss_G + cfg.ac_weight * class_loss(c_fake_G, *y_fake)
                nets.opt_G.zero_grad(set_to_none=True)
                loss_G.backward()
                if tick:
                    tally.grad_norms[1] = _grad_norm(G)
                nets.opt_G.step()
                D.requires_grad_(True)
                tally.acc_G += loss_G.detach()
                if objective.balance_scale is not None:  # do the loss curves cross? (gankit/balance.py)
                    balance.update(tally.balance, loss_G_objective, loss_D_objective, objective.balance_scale)
                if cfg.host_sync:
                    loss_G.item()
                tally.n_G += 1
                if nets.G_ema is not None:
                    nets.G_ema.update(G)

            # Maintenance: log ticks, milestones, evaluations, epoch ends, checkpoints, stopping.
            tally.step = done
            bar.update(1)
            epoch_end = done % spe == 0
            if tick:
                values = ddp.all_mean(tally.means()).tolist()
                problem = nonfinite(values, done)
                if problem and cfg.on_nan == "rollback" and tally.rollbacks < MAX_ROLLBACKS:
                    rollback(problem, cfg, ddp, nets, tally, out)
                    bar.reset(total=None if budget_s else T)
                    bar.update(tally.step)
                    clock.tick(tally.step)
                    last_step = False
                    continue
                if problem:
                    raise TrainingStopped(
                        f"{problem}. Nothing after the last checkpoint was saved"
                        + (f" ({tally.rollbacks} rollbacks already tried)" if tally.rollbacks else "")
                        + "; lower the learning rates, try another objective, or use --on-nan rollback",
                        exit_code=3)
                row = log_tick(values, done, cfg, nets, tally, clock, out, objective, spe, W,
                               say_epoch=epoch_end and not show_bar)
                bar.set_postfix(loss_D=f"{values[0]:.3f}", loss_G=f"{values[4]:.3f}", Dx=f"{values[1]:.3f}",
                                DGz=f"{values[2]:.3f}", img_s=f"{row['img_per_s']:.0f}", refresh=False)
            if eval_z is not None and (last_step or (epoch_end if cfg.eval_every == -1 else done % cfg.eval_every == 0)):
                quality = evaluate(judge, eval_z, done, spe, cfg, ddp, nets, tally, clock, out, device)
                if on_quality is not None and not last_step:
                    last_step = bool(ddp.share(bool(on_quality(quality)) if ddp.main else None))
                    if last_step:
                        out.say(f"stopping at step {done}: on_quality asked to")
            frac = 1.0 if last_step else fraction(done)
            crossed = last_step or (done in milestone_steps if not budget_s  # (100 % is the last step)
                                    else any(frac_before < pct / 100 <= frac for pct in MILESTONES[1:-1]))
            frac_before = frac
            if crossed and out.main:
                save_grid(sample_images(nets.G_show, fixed_z[:8], row_y), milestone_path(out.run_dir, done))
            if epoch_end or last_step:  # the fixed-z grid, plots, checkpoint
                if out.main:
                    write_figures(out, nets, (grid_z, grid_y, grid_nrow), objective, done, spe, epoch_end,
                                  done if last_step else max(done, round(done / max(frac, 1e-9))), last_step)
                if last_step or (done // spe) % cfg.ckpt_every == 0:
                    save_checkpoint(done, epoch_end, cfg, ddp, nets, tally, clock, out)
            if last_step:
                break
            if done == stop_after:
                save_checkpoint(done, False, cfg, ddp, nets, tally, clock, out)
                out.say(f"stopped at step {done} as asked; continue with: gankit train --resume {out.run_dir}")
                break
            signum, last_step = stop.check(ddp, done, tick, budget_s > 0 and clock.train_s() >= budget_s)
            if signum:
                save_checkpoint(done, False, cfg, ddp, nets, tally, clock, out)
                if out.main:  # the plots as of this step (at epoch ends they are only redrawn when due)
                    write_plots(out, objective, max(done, round(done / max(frac, 1e-9))))
                raise TrainingStopped(f"stopped by {signal.Signals(signum).name} at step {done}"
                                      + (f" (sent to one or more of the {W} processes)" if W > 1 else "")
                                      + f"; checkpoint saved. Continue with: gankit train --resume {out.run_dir}",
                                      exit_code=128 + signum)
    finally:
        bar.close()
        if out.main:
            out.log.close()
        stop.restore()

    if W > 1:
        diff = ddp.max_param_difference(torch.nn.ModuleList([G, D]))
        out.say(f"ranks in sync: max |parameter difference| between rank 0 and the other {W - 1} rank(s) = {diff:g}")
    if last_step:
        if budget_s and out.main:
            out.say(record_budget(out.run_dir, cfg.minutes, tally.step, spe, clock.train_s()))
        out.say(f"done: {tally.step} steps. Run folder: {out.run_dir}")
    return out.run_dir
