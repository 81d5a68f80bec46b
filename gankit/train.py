"""train(cfg) -> run folder: the one training loop, readable top to bottom.

The loop follows the shape of StyleGAN2-ADA's training_loop() and nanoGPT's train.py. A *step*
is one D update on one real batch; G is updated on every n_critic-th step with the fake batch
that step already made, as in the labs' loops. Everything a step does is a function of (seed,
step, state), which is what makes resume exact: the batch comes from EpochSampler(seed, step),
the noise from a dedicated generator whose state is checkpointed.

No host synchronisation happens inside a step: statistics are summed on the device and read
once per log tick, where non-finite values are also caught before they can reach a checkpoint.
"""
from __future__ import annotations

import contextlib
import math
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

from . import __version__
from .checkpoint import atomic_save, export_generator, load_checkpoint, newest_valid_checkpoint, prune
from .config import Config
from .data import EpochSampler, load_split, to_float
from .errors import ConfigError, GankitError, RunError
from .losses import OBJECTIVES, clip_weights, gradient_penalty
from .models import build_models
from .optim import make_optimizer
from .runs import (StatsLog, check_run_dir, create_run_dir, milestone_path, plot_curves,
                   plot_milestones, save_grid, truncate_after, write_models_txt)

MAX_ROLLBACKS = 3  # --on-nan rollback gives up after this many
MILESTONES = (0, 25, 50, 75, 100)  # percent of training at which the fixed-z row is kept
RESUMABLE_CHANGES = {"epochs", "steps", "log_every", "ckpt_every", "keep", "device", "out_dir"}


class TrainingStopped(GankitError):
    """Training ended early (signal or non-finite values); the message says why and where."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but CUDA is not available "
                          f"(torch {torch.__version__}); use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("device 'mps' requested but MPS is not available; use --device cpu or auto")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 where the hardware does bf16 matrix work natively (CUDA with bf16 support;
    CPUs with AVX-512-BF16 or AMX, where it runs ~2.6x faster than fp32), else fp32."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return "fp32"
        return "bf16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "fp32"
    return "fp32"


def ema_with_warmup(decay: float):
    """EMA update for AveragedModel with the usual warm-up: decay_t = min(decay, (1 + t) / (10 + t))
    after t updates (as TensorFlow's ExponentialMovingAverage with num_updates), so early in
    training the average follows G instead of staying near its random initial weights. t stays
    a device tensor: no host sync per step."""
    @torch.no_grad()
    def update(ema_params, params, num_averaged):
        if not ema_params[0].is_floating_point():  # BatchNorm's num_batches_tracked: follow G
            for e, p in zip(ema_params, params):
                e.copy_(p)
            return
        t = num_averaged.to(ema_params[0].dtype)
        d = torch.clamp((1 + t) / (10 + t), max=decay)
        torch._foreach_mul_(ema_params, d)
        torch._foreach_add_(ema_params, torch._foreach_mul(params, 1 - d))
    return update


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _grad_norm(module: torch.nn.Module) -> torch.Tensor:
    """L2 norm of all gradients as a device tensor (no host sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads))) if grads else torch.zeros(())


@torch.no_grad()
def sample_images(G: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """G(z) in eval mode (BatchNorm uses running statistics, so a sample does not depend on the
    rest of the batch), restoring G's mode afterwards."""
    was_training = G.training
    G.eval()
    try:
        return G(z).float()
    finally:
        G.train(was_training)


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    return cfg.steps if cfg.steps > 0 else cfg.epochs * steps_per_epoch


def train(cfg: Config, resume: str | Path | None = None, command: list[str] | None = None,
          progress: bool | None = None, stop_after: int | None = None) -> Path:
    """Train as `cfg` says and return the run folder. With `resume`, continue the run in that
    folder from its newest valid checkpoint; `cfg` may differ from the saved one only in
    RESUMABLE_CHANGES (e.g. more epochs). `stop_after` stops at that step as a signal would
    (checkpoint, no extra log tick), leaving the run resumable."""
    cfg = cfg.resolved().validate()
    device = resolve_device(cfg.device)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
    objective = OBJECTIVES[cfg.objective]
    precision = resolve_precision(cfg.precision, device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())

    # Checkpoint to resume from, checked before any work.
    state, notes = None, []
    if resume is not None:
        run_dir = check_run_dir(resume)
        ckpt_path, notes = newest_valid_checkpoint(run_dir)
        state = load_checkpoint(ckpt_path)
        saved = Config.from_dict(state["config"], source=str(ckpt_path))
        changed = {k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v} - RESUMABLE_CHANGES
        if changed:
            raise RunError(f"{run_dir}: cannot resume with changed {', '.join(sorted(changed))} "
                           f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
        notes.append(f"resuming from {ckpt_path.name} at step {state['step']}")

    # Data: the whole split as one uint8 tensor on the device.
    x_train, _ = load_split(cfg.dataset, "train", cfg.data_root)
    x_train = x_train.to(device)
    sampler = EpochSampler(len(x_train), cfg.batch_size, cfg.seed, device)
    spe = sampler.steps_per_epoch
    T = total_steps(cfg, spe)
    if state is not None and state["step"] >= T:
        raise RunError(f"{run_dir} already trained {state['step']} steps ({state['step'] / spe:.2f} epochs) of "
                       f"the {T} asked; raise --epochs or --steps to continue it")

    # Quality judge: the dataset's evaluator, its reference features and fixed z, set up once.
    judge = None
    if cfg.eval_every != 0:
        from .metrics import make_judge
        judge = make_judge(cfg.dataset, cfg.eval_n, cfg.seed + 2, cfg.z_dim, device, cfg.data_root)
        if judge is None and cfg.eval_every > 0:
            raise ConfigError(f"--eval-every {cfg.eval_every}: there is no evaluator for {cfg.dataset}; "
                              f"train one with `gankit evaluator train --dataset {cfg.dataset}`")

    # Models, EMA, optimisers. Weights are drawn on the CPU, so a seed gives the same
    # initial weights on every device.
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg)
    G, D = G.to(device), D.to(device)
    G_ema = (AveragedModel(G, multi_avg_fn=ema_with_warmup(cfg.ema), use_buffers=True)
             if cfg.ema > 0 else None)
    opt_G = make_optimizer(cfg.g_optimizer, G.parameters(), cfg.g_lr, cfg.g_betas, cfg.g_weight_decay, device)
    opt_D = make_optimizer(cfg.d_optimizer, D.parameters(), cfg.d_lr, cfg.d_betas, cfg.d_weight_decay, device)
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    fixed_z = torch.randn(cfg.grid_size, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    G_show = G_ema.module if G_ema is not None else G  # the weights grids and exports show

    # Statistics summed on the device between log ticks: [loss_D, D(x), D(G(z)), wasserstein].
    acc_D = torch.zeros(4, device=device)
    acc_G = torch.zeros(1, device=device)
    grad_norms = torch.zeros(2, device=device)
    n_D = n_G = 0
    start, elapsed = 0, 0.0  # steps done and training seconds before this process
    best_fid = math.inf  # best FID so far; best.safetensors holds that generator
    low_D_ticks = 0  # consecutive log ticks with loss_D near 0

    rollbacks = 0  # times the NaN policy reloaded the last good checkpoint

    def restore(state: dict) -> tuple:
        """Load a checkpoint into the live models, optimisers, RNGs and accumulators; returns the
        loop's counters (step, n_D, n_G, elapsed, best_fid, low_D_ticks, rollbacks)."""
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        if G_ema is not None:
            G_ema.load_state_dict(state["G_ema"])
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        noise.set_state(state["rng"]["noise"])
        torch.set_rng_state(state["rng"]["torch"])
        acc_D.copy_(state["acc_D"])
        acc_G.copy_(state["acc_G"])
        grad_norms.copy_(state["grad_norms"])
        return (state["step"], state["n_D"], state["n_G"], state["elapsed"], state["best_fid"],
                state["low_D_ticks"], state["rollbacks"])

    if state is not None:
        start, n_D, n_G, elapsed, best_fid, low_D_ticks, rollbacks = restore(state)
    else:
        desc = f"{cfg.preset}-{cfg.dataset}"
        run_dir = create_run_dir(cfg.out_dir, desc)
        cfg.save(run_dir / "config.json", gankit_version=__version__, git_commit=_git_commit(),
                 torch_version=torch.__version__, device=str(device), precision=precision,
                 command=command or sys.argv, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    models_text = write_models_txt(run_dir, G, D)
    log = StatsLog(run_dir, resume_step=start if state is not None else None)
    milestone_steps = {pct * T // 100 for pct in MILESTONES}

    say = _printer(run_dir)
    for note in notes:
        say(note)
    if state is None:
        say(models_text.rstrip())
    say(f"run folder: {run_dir}")
    if judge is None and cfg.eval_every != 0:
        say(f"note: no evaluator for {cfg.dataset}, so sample quality is not tracked")

    def warn(step: int, message: str) -> None:
        say(f"warning (step {step}): {message}")
        log.warning(step, message)
    say(f"training {cfg.model} / {cfg.objective} on {cfg.dataset} ({len(x_train)} images) on {device}, "
        f"{precision}; batch {cfg.batch_size}, {spe} steps per epoch, {T} steps "
        f"({T / spe:.2f} epochs), G updated every {cfg.n_critic} step(s)")

    def save_checkpoint(done: int, periodic: bool) -> None:
        # A non-finite weight must never reach a checkpoint: it would poison every resume.
        params = [*G.parameters(), *D.parameters()]
        if not bool(torch.stack([p.isfinite().all() for p in params]).all()):
            raise TrainingStopped(f"non-finite weights at step {done}; not checkpointed. The last "
                                  f"good checkpoint is kept in {run_dir / 'checkpoints'}", exit_code=3)
        ckpt = {
            "config": cfg.to_dict(), "gankit_version": __version__, "step": done,
            "G": G.state_dict(), "D": D.state_dict(),
            "G_ema": G_ema.state_dict() if G_ema is not None else None,
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "noise": noise.get_state()},
            "acc_D": acc_D, "acc_G": acc_G, "grad_norms": grad_norms, "n_D": n_D, "n_G": n_G,
            "elapsed": elapsed + time.perf_counter() - t_start,
            "best_fid": best_fid, "low_D_ticks": low_D_ticks, "rollbacks": rollbacks,
        }
        folder = run_dir / "checkpoints"
        atomic_save(ckpt, folder / "last.pt")
        if periodic and cfg.keep > 0:
            atomic_save(ckpt, folder / f"step_{done:08d}.pt")
            prune(folder, cfg.keep)
        export_generator(run_dir, G, G_ema.module if G_ema is not None else None, cfg, done)

    def nonfinite(values: list[float], done: int) -> str | None:
        names = ["loss_D", "D(x)", "D(G(z))", "wasserstein", "loss_G", "grad_norm_D", "grad_norm_G"]
        bad = ", ".join(f"{k}={v}" for k, v in zip(names, values) if not math.isfinite(v))
        return f"non-finite values in the steps up to step {done}: {bad}" if bad else None

    stop_signal: list[int] = []  # set by the handler, read once per step (a host-side flag)

    def on_signal(signum, frame):
        if stop_signal:  # a second Ctrl-C: leave at once; the last checkpoint is intact
            raise KeyboardInterrupt
        stop_signal.append(signum)

    # Python delivers signals to the main thread only; elsewhere (a notebook worker thread)
    # the caller's handlers stay.
    handlers = ({s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
                if threading.current_thread() is threading.main_thread() else {})
    show_bar = sys.stderr.isatty() if progress is None else progress
    from tqdm import tqdm
    bar = tqdm(total=T, initial=start, disable=not show_bar, unit="step", dynamic_ncols=True)
    t_start = t_tick = time.perf_counter()
    if start == 0:
        save_grid(sample_images(G_show, fixed_z[:8]), milestone_path(run_dir, 0))
        plot_milestones(run_dir, T)
        save_checkpoint(0, periodic=False)  # resumable at once, and a base for --on-nan rollback
    done_tick = start
    G.train()
    D.train()

    try:
        step = start
        while step < T:
            update_G = step % cfg.n_critic == cfg.n_critic - 1
            # Gradient norms are only read at log ticks, so only the step before one computes them.
            tick = (step + 1) % cfg.log_every == 0 or (step + 1) % spe == 0 or step + 1 == T
            x_real = to_float(x_train[sampler.indices(step)])  # (B, C, H, W) in [-1, 1]
            z = torch.randn(cfg.batch_size, cfg.z_dim, device=device, generator=noise)

            # Update D. The fake batch is made once; it keeps G's graph only when G learns from
            # it in this step.
            with torch.set_grad_enabled(update_G), autocast:
                x_fake = G(z)
            with autocast:
                d_real = D(x_real).float()
                d_fake = D(x_fake.detach()).float()
            loss_D = objective.d_loss(d_real, d_fake)
            if cfg.gp_weight > 0:
                loss_D = loss_D + cfg.gp_weight * gradient_penalty(D, x_real, x_fake.detach().to(x_real.dtype), noise)
            opt_D.zero_grad(set_to_none=True)
            loss_D.backward()
            if tick:
                grad_norms[0] = _grad_norm(D)
            opt_D.step()
            if cfg.clip > 0:
                clip_weights(D, cfg.clip)
            with torch.no_grad():
                acc_D += torch.stack([loss_D.detach(), objective.score(d_real).mean(),
                                      objective.score(d_fake).mean(), d_real.mean() - d_fake.mean()])
            n_D += 1

            # Update G. D's weights need no gradients here; switching them off saves that work.
            if update_G:
                D.requires_grad_(False)
                with autocast:
                    d_fake_G = D(x_fake).float()
                loss_G = objective.g_loss(d_fake_G)
                opt_G.zero_grad(set_to_none=True)
                loss_G.backward()
                if tick:
                    grad_norms[1] = _grad_norm(G)
                opt_G.step()
                D.requires_grad_(True)
                acc_G += loss_G.detach()
                n_G += 1
                # Update G_ema.
                if G_ema is not None:
                    G_ema.update_parameters(G)

            # Maintenance: log ticks, milestones, epoch ends, checkpoints, signals.
            done = step + 1
            bar.update(1)
            epoch_end = done % spe == 0
            if tick:
                values = torch.cat([acc_D / max(n_D, 1), acc_G / max(n_G, 1), grad_norms]).tolist()
                problem = nonfinite(values, done)
                if problem and cfg.on_nan == "rollback" and rollbacks < MAX_ROLLBACKS:
                    # Reload the last good checkpoint, halve both learning rates, go on from there.
                    ckpt_path, _ = newest_valid_checkpoint(run_dir)
                    # The rollback count spans the run, so it is not taken from the checkpoint.
                    step, n_D, n_G, _, best_fid, low_D_ticks, _ = restore(load_checkpoint(ckpt_path))
                    rollbacks += 1
                    for opt, lr in ((opt_G, cfg.g_lr), (opt_D, cfg.d_lr)):
                        for group in opt.param_groups:
                            group["lr"] = lr * 0.5 ** rollbacks
                    for path in (log.path, log.quality_path, log.warnings_path):
                        truncate_after(path, step)
                    warn(step, f"{problem}; rolled back to {ckpt_path.name} (step {step}) with learning rates "
                               f"halved to G {opt_G.param_groups[0]['lr']:.3g}, D {opt_D.param_groups[0]['lr']:.3g} "
                               f"(rollback {rollbacks} of {MAX_ROLLBACKS})")
                    bar.reset(total=T)
                    bar.update(step)
                    t_tick, done_tick = time.perf_counter(), step
                    continue
                if problem:
                    raise TrainingStopped(
                        f"{problem}. Nothing after the last checkpoint was saved"
                        + (f" ({rollbacks} rollbacks already tried)" if rollbacks else "")
                        + "; lower the learning rates, try another objective, or use --on-nan rollback",
                        exit_code=3)
                now = time.perf_counter()
                row = {"step": done, "epoch": round(done / spe, 4), "images": done * cfg.batch_size,
                       "loss_D": values[0], "loss_G": values[4] if n_G else None,
                       "d_real": values[1], "d_fake": values[2],
                       "wasserstein": values[3] if objective.wasserstein else None,
                       "grad_norm_D": values[5], "grad_norm_G": values[6] if n_G else None,
                       "lr_D": opt_D.param_groups[0]["lr"], "lr_G": opt_G.param_groups[0]["lr"],
                       "img_per_s": round((done - done_tick) * cfg.batch_size / max(now - t_tick, 1e-9), 1),
                       "time_s": round(elapsed + now - t_start, 2)}
                log.write(row)
                bar.set_postfix(loss_D=f"{values[0]:.3f}", loss_G=f"{values[4]:.3f}",
                                Dx=f"{values[1]:.3f}", DGz=f"{values[2]:.3f}",
                                img_s=f"{row['img_per_s']:.0f}", refresh=False)
                if not show_bar and epoch_end:
                    say(f"epoch {done // spe}/{math.ceil(T / spe)} step {done}/{T}: loss_D {values[0]:.4f} "
                        f"loss_G {values[4]:.4f} D(x) {values[1]:.3f} D(G(z)) {values[2]:.3f} "
                        f"{row['img_per_s']:.0f} img/s")
                # D's loss pinned near 0 for long: D wins every comparison and G learns nothing.
                # (For BCE the same shows as D(x) - D(G(z)) saturating near 1.)
                pinned = not objective.wasserstein and (
                    values[0] < 0.05 or (objective.score is torch.sigmoid and values[1] - values[2] > 0.98))
                low_D_ticks = low_D_ticks + 1 if pinned else 0
                if low_D_ticks == 5:
                    warn(done, f"D has won outright for 5 log ticks ({5 * cfg.log_every} steps): loss_D "
                               f"{values[0]:.4f}, D(x) {values[1]:.3f}, D(G(z)) {values[2]:.3f}; G's gradient "
                               f"vanishes. Consider a lower --d-lr, a smaller D, or another objective")
                acc_D.zero_()
                acc_G.zero_()
                n_D = n_G = 0
                t_tick, done_tick = time.perf_counter(), done
            if done in milestone_steps:
                save_grid(sample_images(G_show, fixed_z[:8]), milestone_path(run_dir, done))
            # Quality: evaluator metrics, best generator by FID, collapse warnings.
            if judge is not None and (done == T or (epoch_end if cfg.eval_every == -1 else done % cfg.eval_every == 0)):
                q = judge(G_show)
                log.quality({"step": done, "epoch": round(done / spe, 4), **q})
                fid, coverage = q[f"fid_{judge.tag}"], q[f"coverage_{judge.tag}"]
                say(f"quality at step {done}: fid_{judge.tag} {fid:.2f}, coverage {coverage:.3f}, "
                    f"class entropy {q[f'class_entropy_{judge.tag}']:.3f}")
                if fid < best_fid:
                    best_fid = fid
                    export_generator(run_dir, G, G_ema.module if G_ema is not None else None, cfg, done,
                                     name="best", **{f"fid_{judge.tag}": fid})
                if coverage < 0.1 or q[f"rarest_class_share_{judge.tag}"] == 0:
                    warn(done, f"mode collapse: coverage {coverage:.3f}, rarest class share "
                               f"{q[f'rarest_class_share_{judge.tag}']:.3f} (classes G no longer makes)")
            # Epoch end: the fixed-z grid, plots, checkpoint.
            if epoch_end or done == T:
                name = f"epoch_{done // spe:03d}.png" if epoch_end else f"step_{done:08d}.png"
                grid = save_grid(sample_images(G_show, fixed_z), run_dir / "images" / name)
                log.image("samples/fixed_z", grid, done)
                plot_curves(run_dir, objective.score_label)
                plot_milestones(run_dir, T)
                if done == T or (done // spe) % cfg.ckpt_every == 0:
                    save_checkpoint(done, periodic=epoch_end)
            step = done
            if done == stop_after and done < T:
                save_checkpoint(done, periodic=False)
                say(f"stopped at step {done} as asked; continue with: gankit train --resume {run_dir}")
                break
            if stop_signal:
                save_checkpoint(done, periodic=False)
                signum = stop_signal[0]
                raise TrainingStopped(f"stopped by {signal.Signals(signum).name} at step {done}; "
                                      f"checkpoint saved. Continue with: gankit train --resume {run_dir}",
                                      exit_code=128 + signum)
    finally:
        bar.close()
        log.close()
        for s, h in handlers.items():
            signal.signal(s, h)

    if step == T:
        say(f"done: {T} steps. Run folder: {run_dir}")
    return run_dir


def _printer(run_dir: Path):
    """print() that also appends to the run's log.txt."""
    def say(msg: str) -> None:
        print(msg, flush=True)
        with open(run_dir / "log.txt", "a") as f:
            f.write(msg + "\n")
    return say
