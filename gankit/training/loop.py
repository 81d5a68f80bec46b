"""train(cfg) -> run folder: the one training loop, readable top to bottom.

The loop follows the shape of StyleGAN2-ADA's training_loop() and nanoGPT's train.py. A *step*
is one D update on one real batch; G is updated on every n_critic-th step with the fake batch
that step already made, as in the labs' loops. Everything a step does is a function of (seed,
step, state), which is what makes resume exact: the batch comes from EpochSampler(seed, step),
the noise from a dedicated generator whose state is checkpointed (state.py).

No host synchronisation happens inside a step: statistics are summed on the device and read
once per log tick, where non-finite values are also caught before they can reach a checkpoint.
What comes before the loop is setup.py; what happens around the updates (ticks, evaluations,
rollback, checkpoints, stopping) is maintenance.py, each handed the loop context (context.py).
"""
from __future__ import annotations

import contextlib
import gc
from pathlib import Path
from typing import Callable

import torch

from ..config import Config
from ..data import to_float
from ..device import resolve_device
from ..nets import lr_factor
from ..nets.augment import make_augment
from ..nets.losses import class_loss, clip_weights, gradient_penalty, r1_r2_penalty
from . import balance
from .context import Loop
from .dist import setup as setup_dist
from .maintenance import Next, TrainingStopped, after_step
from .output import record_budget
from .setup import first_records, start

__all__ = ["train", "TrainingStopped"]


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
    calls this; rank 0 alone writes the run folder (holding its lock until the end)."""
    cfg = cfg.resolved().validate()
    ddp, device_name = setup_dist(cfg.device)
    finished = False
    try:
        with contextlib.ExitStack() as held:  # the run folder's lock, while this process writes it
            device = resolve_device(device_name)
            cfg.validate_launch(ddp.world_size, device.type)
            torch.backends.cudnn.benchmark = not cfg.deterministic
            if cfg.deterministic:
                torch.use_deterministic_algorithms(True, warn_only=False)
            L = start(cfg, ddp, device, resume, command, progress, stop_after, on_quality, run_name, held)
            try:
                first_records(L)
                training_loop(L)
            finally:
                L.bar.close()
                if L.out.main:
                    L.out.log.close()
                L.stop.restore()
            run_dir = finish(L)
            finished = True
            return run_dir
    except TrainingStopped as e:
        if not ddp.main:  # every rank stops at the same step; rank 0 reports it and carries the exit code
            e.exit_code, e.quiet = 0, True
        raise
    finally:
        if ddp.enabled:  # the DDP-wrapped modules (their reducer holds gloo work) go before the process group
            L = None
            gc.collect()
        ddp.close(finished)


def training_loop(L: Loop) -> None:
    """Steps until the schedule's end (or a stop): update D, update G, then the maintenance."""
    cfg, nets, tally, S = L.cfg, L.nets, L.tally, L.schedule
    G, D, G_train, D_train, D_frozen = nets.G, nets.D, nets.G_train, nets.D_train, nets.D_frozen
    objective, autocast = L.objective, L.autocast
    augment = make_augment(cfg.augment, cfg.diffaug_policy, tally.ada[0])  # None: D sees the images as they are
    rand = lambda *shape: draw(L, torch.rand, *shape, generator=nets.aug_noise)  # the augmentations' own stream
    A = (lambda x: augment(x, rand)) if augment else (lambda x: x)

    while tally.step < S.total:
        step, done = tally.step, tally.step + 1
        tick = S.tick(done)  # gradient norms are only read at log ticks: only the step before one computes them
        update_G = step % cfg.n_critic == cfg.n_critic - 1
        regularise = (cfg.r1 > 0 or cfg.r2 > 0) and step % cfg.reg_every == 0  # lazy R1/R2 (StyleGAN2)
        x_real, z, y_real, y_fake = batch(L, step)
        follow_lr_schedule(L, step)

        # Update D. The fake batch is made once, keeping G's graph only when G learns from it now. D sees
        # every image augmented (A) when --augment asks; each D splits its own output (AC-GAN: + classes).
        with torch.set_grad_enabled(update_G), autocast:
            x_fake = G_train(z, *y_fake)
        x_real_D, x_fake_D = A(x_real), A(x_fake.detach())
        if regularise:  # R1/R2 differentiate D's logits by its inputs: reuse this forward pass
            x_real_D = x_real_D.detach().requires_grad_(cfg.r1 > 0)
            x_fake_D = x_fake_D.detach().requires_grad_(cfg.r2 > 0)
        with autocast:
            with watching(D.decoders):  # a self-supervised D (fastgan) keeps its features of the real images
                d_real, c_real = D.split_logits(D_train(x_real_D, *y_real).float())
            recon = reconstruction(L, D.decoders, x_real_D)
            d_fake, c_fake = D.split_logits(D_train(x_fake_D, *y_fake).float())
        loss_D = loss_D_objective = objective.d_loss(d_real, d_fake)
        if recon is not None:
            loss_D = loss_D + cfg.recon_weight * recon
        if c_real is not None:
            loss_D = loss_D + cfg.ac_weight * (class_loss(c_real, *y_real) + class_loss(c_fake, *y_fake))
        if regularise:
            loss_D = loss_D + r1_r2(L, step, d_real, x_real_D, d_fake, x_fake_D)
        if cfg.gp_weight > 0:
            loss_D = loss_D + gp(L, x_real_D, x_fake_D.to(x_real.dtype), y_real)
        nets.opt_D.zero_grad(set_to_none=True)
        loss_D.backward()
        if tick:
            tally.grad_norms[0] = grad_norm(D)
        nets.opt_D.step()
        if cfg.clip > 0:
            clip_weights(D, cfg.clip)
        with torch.no_grad():  # the step's statistics (gankit.runs.stats), summed on the device
            tally.add("D", loss_D=loss_D.detach(), d_real=objective.score(d_real).mean(),
                      d_fake=objective.score(d_fake).mean(), wasserstein=d_real.mean() - d_fake.mean(),
                      r_t=count_real(L, d_real, d_fake))
        if cfg.host_sync:
            loss_D.item()

        # Update G. D's weights need no gradients here; switching them off saves that work.
        if update_G:
            D.requires_grad_(False)
            with autocast:
                d_fake_G, c_fake_G = D.split_logits(D_frozen(A(x_fake), *y_fake).float())
                # A relativistic loss pairs each fake with a real image, scored by D as it is now.
                d_real_G = D.split_logits(D_frozen(A(x_real), *y_real).float())[0] if objective.relativistic else None
            loss_G = loss_G_objective = objective.g_loss(d_fake_G, d_real_G)
            if c_fake_G is not None:
                loss_G = loss_G + cfg.ac_weight * class_loss(c_fake_G, *y_fake)
            nets.opt_G.zero_grad(set_to_none=True)
            loss_G.backward()
            if tick:
                tally.grad_norms[1] = grad_norm(G)
            nets.opt_G.step()
            D.requires_grad_(True)
            tally.add("G", loss_G=loss_G.detach(), **crossing(L, loss_G_objective, loss_D_objective))
            if cfg.host_sync:
                loss_G.item()
            if nets.G_ema is not None:
                nets.G_ema.update(G)

        # Maintenance: log ticks, evaluations, milestones, grids, checkpoints, stopping.
        tally.step = done
        L.bar.update(1)
        if after_step(L, done, tick) is Next.END:
            break


def follow_lr_schedule(L: Loop, step: int) -> None:
    """Both learning rates follow --lr-schedule (and any rollback's halving)."""
    cfg = L.cfg
    if cfg.lr_schedule != "constant":
        factor = lr_factor(cfg.lr_schedule, L.schedule.fraction(step), cfg.lr_end)
        L.nets.scale_learning_rates(cfg, 0.5 ** L.tally.rollbacks * factor)


def gp(L: Loop, x_real: torch.Tensor, x_fake: torch.Tensor, y_real: tuple) -> torch.Tensor:
    """WGAN-GP's penalty, weighted, on interpolates drawn from the noise stream."""
    eps = draw(L, torch.rand, L.cfg.batch_size, 1, 1, 1)
    return L.cfg.gp_weight * gradient_penalty(L.nets.D.critic, x_real, x_fake, eps=eps,
                                              labels=y_real[0] if L.cfg.num_classes else None)


def r1_r2(L: Loop, step: int, d_real, x_real, d_fake, x_fake) -> torch.Tensor:
    """gamma/2 E||grad D||^2 on real (R1) and generated (R2) images from D's own pass, x reg_every
    when lazy, gamma following --gamma-schedule; both penalties added to the tick's statistics."""
    cfg = L.cfg
    r1 = r1_r2_penalty(d_real, x_real) if cfg.r1 > 0 else d_real.new_zeros(())
    r2 = r1_r2_penalty(d_fake, x_fake) if cfg.r2 > 0 else d_real.new_zeros(())
    decay = (lr_factor(cfg.gamma_schedule, L.schedule.fraction(step), cfg.gamma_end)
             if cfg.gamma_schedule != "constant" else 1)
    L.tally.add("reg", r1=r1.detach(), r2=r2.detach())
    return cfg.reg_every * decay * (cfg.r1 / 2 * r1 + cfg.r2 / 2 * r2)


def crossing(L: Loop, loss_G: torch.Tensor, loss_D: torch.Tensor) -> dict:
    """Do the loss curves cross at this G step (balance.py)? Zeros for an objective without a balance
    line (its rows say None)."""
    scale = L.objective.balance_scale
    if scale is None:
        zero = loss_G.new_zeros(())
        return {"crossing_rate": zero, "g_above": zero}
    crossed, above = balance.update(L.tally.balance, loss_G, loss_D, scale)
    return {"crossing_rate": crossed, "g_above": above}


@contextlib.contextmanager
def watching(decoders):
    """While D judges the real images, its decoders (if any) keep the features they reconstruct from."""
    if decoders is None:
        yield
        return
    decoders.watching = True
    try:
        yield
    finally:
        decoders.watching = False


def reconstruction(L: Loop, decoders, x_real: torch.Tensor) -> torch.Tensor | None:
    """FastGAN's self-supervision: D's decoders' mean squared error on the real images it just saw
    (each image's quarter for the crop decoder drawn from the augmentations' stream), added to the
    tick's statistics; None for a D without decoders."""
    if decoders is None:
        return None
    corner = (draw(L, torch.rand, x_real.shape[0], generator=L.nets.aug_noise) * 4).long().clamp_(max=3)
    recon = decoders.loss(x_real.detach(), corner)
    L.tally.add("recon", recon=recon.detach())
    return recon


def count_real(L: Loop, d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    """r_t = E[sign(D(x))] of this step (Karras et al. 2020), on the device: is D memorising the
    training images? A critic's boundary lies midway between its real and fake means. ADA's p
    follows it every few steps (maintenance.adapt_augmentation)."""
    boundary = (d_real.mean() + d_fake.mean()) / 2 if L.objective.wasserstein else 0
    r = torch.sign(d_real - boundary).mean()
    if L.cfg.augment == "ada":
        L.tally.ada[1] += r
    return r


def draw(L: Loop, fn, *shape: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """This rank's rows of one global draw (fn: torch.randn or torch.rand) of W * shape[0] rows from
    the noise generator (or `generator`: the augmentations'), so W ranks with batch B see the same
    noise as one process with batch W * B, and the draws resume exactly with the generator's state."""
    W, generator = L.world, L.nets.noise if generator is None else generator
    return fn(W * shape[0], *shape[1:], device=L.device, generator=generator)[L.ddp.rank::W]


def batch(L: Loop, step: int) -> tuple[torch.Tensor, torch.Tensor, tuple, tuple]:
    """(x_real, z, y_real, y_fake) of a step, drawn in a fixed order: the real batch by index (and its
    flips), then z, then the fake batch's classes. A conditional run's real labels come with its
    images; its fake classes are drawn uniformly from the noise stream. (Unconditional: no labels.)"""
    cfg, K = L.cfg, L.cfg.num_classes
    idx = L.sampler.indices(step)
    x_real = to_float(L.data.x[idx].to(L.device, non_blocking=True))  # (B, C, H, W) in [-1, 1]
    if cfg.hflip:  # half the batch mirrored, drawn like the noise (resumable, rank-consistent)
        flip = draw(L, torch.rand, cfg.batch_size) < 0.5
        x_real = torch.where(flip[:, None, None, None], x_real.flip(-1), x_real)
    x_real = x_real.contiguous(memory_format=L.nets.memory_format)
    z = draw(L, torch.randn, cfg.batch_size, cfg.z_dim)
    y_real = (L.data.y[idx].to(L.device, non_blocking=True),) if K else ()
    y_fake = ((draw(L, torch.rand, cfg.batch_size) * K).long().clamp_(max=K - 1),) if K else ()
    return x_real, z, y_real, y_fake


def grad_norm(module: torch.nn.Module) -> torch.Tensor:
    """L2 norm of all gradients as a device tensor (no host sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


def finish(L: Loop) -> Path:
    """After the loop: the ranks compared, what a time budget bought, the last line."""
    if L.world > 1:
        diff = L.ddp.max_param_difference(torch.nn.ModuleList([L.nets.G, L.nets.D]))
        L.out.say(f"ranks in sync: max |parameter difference| between rank 0 and the other {L.world - 1} "
                  f"rank(s) = {diff:g}")
    if L.schedule.last:
        if L.schedule.budget_s and L.out.main:
            L.out.say(record_budget(L.out.run_dir, L.cfg.minutes, L.tally.step, L.schedule.spe, L.clock.train_s(),
                                    L.schedule.total, L.cfg.steps))
        L.out.say(f"done: {L.tally.step} steps. Run folder: {L.out.run_dir}")
    return L.out.run_dir
