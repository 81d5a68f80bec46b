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

from . import __version__
from .checkpoint import atomic_save, export_generator, load_checkpoint, newest_valid_checkpoint, prune
from .config import Config
from .data import EpochSampler, to_float, training_images
from .dist import Dist, setup as setup_dist, wrap as wrap_ddp
from .ema import EMA
from .errors import ConfigError, DataError, GankitError, RunError
from .latent import generate, sample_images, z_from_seed
from .losses import OBJECTIVES, clip_weights, gradient_penalty
from .models import build_models
from .optim import make_optimizer
from .runs import (StatsLog, check_run_dir, create_run_dir, milestone_path, plot_curves,
                   plot_milestones, save_grid, truncate_after, write_models_txt)

MAX_ROLLBACKS = 3  # --on-nan rollback gives up after this many
MILESTONES = (0, 25, 50, 75, 100)  # percent of training at which the fixed-z row is kept
RESUMABLE_CHANGES = {"epochs", "steps", "log_every", "ckpt_every", "keep", "device", "out_dir",
                     "data_on_device", "host_sync", "optim_impl", "channels_last", "compile"}
STOP_CHECK_EVERY = 10  # steps between comparisons of the stop flag across ranks


class TrainingStopped(GankitError):
    """Training ended early (signal or non-finite values); the message says why and where."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
        self.quiet = False  # True on DDP ranks other than 0: rank 0 says it


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


def total_steps(cfg: Config, steps_per_epoch: int) -> int:
    return cfg.steps if cfg.steps > 0 else cfg.epochs * steps_per_epoch


def train(cfg: Config, resume: str | Path | None = None, command: list[str] | None = None,
          progress: bool | None = None, stop_after: int | None = None) -> Path:
    """Train as `cfg` says and return the run folder. With `resume`, continue the run in that
    folder from its newest valid checkpoint; `cfg` may differ from the saved one only in
    RESUMABLE_CHANGES (e.g. more epochs). `stop_after` stops at that step as a signal would
    (checkpoint, no extra log tick), leaving the run resumable. Under torchrun every rank calls
    this; rank 0 alone writes the run folder."""
    cfg = cfg.resolved().validate()
    ddp, device_name = setup_dist(cfg.device)
    try:
        return _train(cfg, ddp, resolve_device(device_name), resume, command, progress, stop_after)
    except TrainingStopped as e:
        if not ddp.main:  # every rank stops at the same step; rank 0 reports it and carries the exit code
            e.exit_code, e.quiet = 0, True
        raise
    finally:
        ddp.close()


def _train(cfg: Config, ddp: Dist, device: torch.device, resume, command, progress, stop_after) -> Path:
    torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=False)
    objective = OBJECTIVES[cfg.objective]
    precision = resolve_precision(cfg.precision, device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16"
                else contextlib.nullcontext())
    W = ddp.world_size
    if cfg.sync_bn and ddp.enabled and device.type != "cuda":
        raise ConfigError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only; on the CPU each "
                          "rank's BatchNorm uses its own batch (drop --sync-bn)")
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    # Checkpoint to resume from, read and checked by rank 0 before any work, shared with the rest.
    state, notes, run_dir = None, [], None
    if resume is not None:
        try:
            run_dir = check_run_dir(resume)
            ckpt_path, notes = newest_valid_checkpoint(run_dir) if ddp.main else (None, [])
            state = load_checkpoint(ckpt_path) if ddp.main else None
            if ddp.main:
                saved = Config.from_dict(state["config"], source=str(ckpt_path))
                changed = {k for k, v in cfg.to_dict().items() if saved.to_dict()[k] != v} - RESUMABLE_CHANGES
                if changed:
                    raise RunError(f"{run_dir}: cannot resume with changed {', '.join(sorted(changed))} "
                                   f"(only {', '.join(sorted(RESUMABLE_CHANGES))} may change)")
                notes.append(f"resuming from {ckpt_path.name} at step {state['step']}")
        except GankitError as e:
            state = e
        state = ddp.share(state)

    # Data: the whole training set as one uint8 tensor on the device; each rank takes its own
    # slice of every global batch. Rank 0 reads first (for a folder: decodes and caches it), the
    # others then read its cache.
    if ddp.main:
        try:
            x_train = training_images(cfg, say=notes.append)
            ddp.share(None)
        except GankitError as e:
            ddp.share(e)
    else:
        ddp.share(None)
        x_train = training_images(cfg, say=lambda msg: None, progress=False)
    if cfg.data_on_device and device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if x_train.nbytes > 0.5 * free:
            raise DataError(f"the training images need {x_train.nbytes / 2**30:.1f} GiB, more than half of the "
                            f"{free / 2**30:.1f} GiB free on {device}; use --no-data-on-device or a smaller --image-size")
    if cfg.data_on_device:
        x_train = x_train.to(device)
    elif device.type == "cuda":
        x_train = x_train.pin_memory()
    sampler = EpochSampler(len(x_train), cfg.batch_size, cfg.seed, x_train.device, ddp.rank, W)
    spe = sampler.steps_per_epoch
    T = total_steps(cfg, spe)
    if state is not None:
        saved_world = state.get("world_size", 1)
        if saved_world != W:  # same images seen, counted in steps of the new global batch
            images = state["step"] * cfg.batch_size * saved_world
            state["step"] = images // (cfg.batch_size * W)
            notes.append(f"the run was trained by {saved_world} process(es), now {W}: its {images} images "
                         f"are step {state['step']} at the new global batch {cfg.batch_size * W}; the data "
                         f"order from here differs from an uninterrupted run")
    if state is not None and state["step"] >= T:
        raise RunError(f"{run_dir} already trained {state['step']} steps ({state['step'] / spe:.2f} epochs) of "
                       f"the {T} asked; raise --epochs or --steps to continue it")

    # Quality judge: the dataset's evaluator and reference features on rank 0; every rank makes
    # its share of the samples from the same fixed z.
    judge, eval_z = None, None
    judgeable = cfg.image_size == 28 and cfg.dataset != "folder"  # the evaluators judge 28x28 digits/clothes
    if cfg.eval_every != 0 and judgeable:  # (validate() refused --eval-every N > 0 for the others)
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
        if ddp.share(found):
            eval_z = z_from_seed(cfg.seed + 2, cfg.eval_n, cfg.z_dim)

    # Models, EMA, optimisers. Weights are drawn on the CPU from the seed, so every device and
    # every rank starts from the same weights.
    torch.manual_seed(cfg.seed)
    G, D = build_models(cfg)
    if ddp.enabled and cfg.sync_bn:
        G, D = (torch.nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in (G, D))
    G = G.to(device, memory_format=memory_format)
    D = D.to(device, memory_format=memory_format)
    G_ema = EMA(G, cfg.ema) if cfg.ema > 0 else None
    opt_G = make_optimizer(cfg.g_optimizer, G.parameters(), cfg.g_lr, cfg.g_betas, cfg.g_weight_decay, cfg.optim_impl)
    opt_D = make_optimizer(cfg.d_optimizer, D.parameters(), cfg.d_lr, cfg.d_betas, cfg.d_weight_decay, cfg.optim_impl)
    noise = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    fixed_z = torch.randn(cfg.grid_size, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(device)
    G_show = G_ema.module if G_ema is not None else G  # the weights grids and exports show

    # What the step calls: G and D themselves, or DDP wrappers and compiled versions of them (the
    # weights stay in G and D, which checkpoints save). D_train takes D's two passes of the D
    # update; D_frozen (no DDP: its weights get no gradients there) judges the fake batch in G's
    # update. D's buffers are not broadcast (rank 0's would overwrite BatchNorm statistics between
    # the real and fake passes); G's are, so every rank's G is rank 0's.
    G_train, D_train, D_frozen = G, D, D
    if ddp.enabled:
        G_train = wrap_ddp(G, device, sync_buffers=True)
        D_train = wrap_ddp(D, device, sync_buffers=False)
    if cfg.compile:
        mode = "reduce-overhead" if device.type == "cuda" else None
        G_train, D_train = torch.compile(G_train, mode=mode), torch.compile(D_train, mode=mode)
        D_frozen = torch.compile(D, mode=mode) if ddp.enabled else D_train

    def draw(fn, *shape: int) -> torch.Tensor:
        """This rank's rows of one global draw (fn: torch.randn or torch.rand) of W * shape[0] rows
        from the noise generator, so W ranks with batch B see the same noise as one process with
        batch W * B, and the draws resume exactly with the generator's state."""
        return fn(W * shape[0], *shape[1:], device=device, generator=noise)[ddp.rank::W]

    # Statistics summed on the device between log ticks: [loss_D, D(x), D(G(z)), wasserstein].
    acc_D = torch.zeros(4, device=device)
    acc_G = torch.zeros(1, device=device)
    grad_norms = torch.zeros(2, device=device)
    n_D = n_G = 0
    start, elapsed = 0, 0.0  # steps done and training seconds before this process
    eval_s = 0.0  # of all seconds so far, those spent on quality evaluations
    best_fid = math.inf  # best FID so far; best.safetensors holds that generator
    low_D_ticks = 0  # consecutive log ticks with loss_D near 0

    rollbacks = 0  # times the NaN policy reloaded the last good checkpoint

    def restore(state: dict) -> tuple:
        """Load a checkpoint into the live models, optimisers, RNGs and accumulators; returns the
        loop's counters (step, n_D, n_G, elapsed, eval_s, best_fid, low_D_ticks, rollbacks)."""
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        if G_ema is not None:
            ema_state = state["G_ema"]
            if "n_averaged" in ema_state:  # written by gankit 0.1's AveragedModel
                ema_state = {k: v for k, v in ema_state.items() if k != "n_averaged"}
                ema_state["n_updates"] = state["G_ema"]["n_averaged"]
            G_ema.load_state_dict(ema_state)
        opt_G.load_state_dict(state["opt_G"])
        opt_D.load_state_dict(state["opt_D"])
        noise.set_state(state["rng"]["noise"])
        torch.set_rng_state(state["rng"]["torch"])
        acc_D.copy_(state["acc_D"])
        acc_G.copy_(state["acc_G"])
        grad_norms.copy_(state["grad_norms"])
        return (state["step"], state["n_D"], state["n_G"], state["elapsed"], state.get("eval_s", 0.0), state["best_fid"],
                state["low_D_ticks"], state["rollbacks"])

    if state is not None:
        start, n_D, n_G, elapsed, eval_s, best_fid, low_D_ticks, rollbacks = restore(state)
    elif ddp.main:
        run_dir = create_run_dir(cfg.out_dir, f"{cfg.preset}-{cfg.dataset}")
        cfg.save(run_dir / "config.json", gankit_version=__version__, git_commit=_git_commit(),
                 torch_version=torch.__version__, device=str(device), precision=precision, world_size=W,
                 command=command or sys.argv, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    run_dir = ddp.share(run_dir)
    milestone_steps = {pct * T // 100 for pct in MILESTONES}
    main = ddp.main
    if main:
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        models_text = write_models_txt(run_dir, G, D)
        log = StatsLog(run_dir, resume_step=start if state is not None else None)
    say = _printer(run_dir) if main else (lambda msg: None)
    for note in notes:
        say(note)
    if state is None and main:
        say(models_text.rstrip())
    say(f"run folder: {run_dir}")
    if eval_z is None and cfg.eval_every != 0:
        say(f"note: no evaluator for {cfg.dataset} at {cfg.image_size}x{cfg.image_size}, so sample quality "
            f"is not tracked during training")

    def warn(step: int, message: str) -> None:
        say(f"warning (step {step}): {message}")
        log.warning(step, message)
    say(f"training {cfg.model} / {cfg.objective} on {cfg.dataset} ({len(x_train)} images, {cfg.channels}x{cfg.image_size}x"
        f"{cfg.image_size}) on {device}, "
        f"{precision}; batch {cfg.batch_size}"
        + (f" per process x {W} processes = global batch {cfg.batch_size * W} (DDP, "
           f"{torch.distributed.get_backend()})" if ddp.enabled else "")
        + f", {spe} steps per epoch, {T} steps ({T / spe:.2f} epochs), G updated every {cfg.n_critic} step(s)")

    def save_checkpoint(done: int, periodic: bool) -> None:
        # A non-finite weight must never reach a checkpoint: it would poison every resume.
        # (Every rank checks, so every rank stops together.)
        params = [*G.parameters(), *D.parameters()]
        if not bool(torch.stack([p.isfinite().all() for p in params]).all()):
            raise TrainingStopped(f"non-finite weights at step {done}; not checkpointed. The last "
                                  f"good checkpoint is kept in {run_dir / 'checkpoints'}", exit_code=3)
        if not main:
            return
        ckpt = {
            "config": cfg.to_dict(), "gankit_version": __version__, "step": done, "world_size": W,
            "G": G.state_dict(), "D": D.state_dict(),
            "G_ema": G_ema.state_dict() if G_ema is not None else None,
            "opt_G": opt_G.state_dict(), "opt_D": opt_D.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "noise": noise.get_state()},
            "acc_D": acc_D, "acc_G": acc_G, "grad_norms": grad_norms, "n_D": n_D, "n_G": n_G,
            "elapsed": elapsed + time.perf_counter() - t_start, "eval_s": eval_s,
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
    show_bar = (sys.stderr.isatty() if progress is None else progress) and main
    from tqdm import tqdm
    bar = tqdm(total=T, initial=start, disable=not show_bar, unit="step", dynamic_ncols=True)
    t_start = t_tick = time.perf_counter()
    if start == 0:
        if main:
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
            x_real = x_train[sampler.indices(step)].to(device, non_blocking=True)
            x_real = to_float(x_real)  # (B, C, H, W) in [-1, 1]
            if cfg.hflip:  # half the batch mirrored, drawn like the noise (resumable, rank-consistent)
                flip = draw(torch.rand, cfg.batch_size) < 0.5
                x_real = torch.where(flip[:, None, None, None], x_real.flip(-1), x_real)
            x_real = x_real.contiguous(memory_format=memory_format)
            z = draw(torch.randn, cfg.batch_size, cfg.z_dim)

            # Update D. The fake batch is made once; it keeps G's graph only when G learns from
            # it in this step.
            with torch.set_grad_enabled(update_G), autocast:
                x_fake = G_train(z)
            with autocast:
                d_real = D_train(x_real).float()
                d_fake = D_train(x_fake.detach()).float()
            loss_D = objective.d_loss(d_real, d_fake)
            if cfg.gp_weight > 0:
                eps = draw(torch.rand, cfg.batch_size, 1, 1, 1)
                loss_D = loss_D + cfg.gp_weight * gradient_penalty(D, x_real, x_fake.detach().to(x_real.dtype), eps=eps)
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
            if cfg.host_sync:
                loss_D.item()
            n_D += 1

            # Update G. D's weights need no gradients here; switching them off saves that work.
            if update_G:
                D.requires_grad_(False)
                with autocast:
                    d_fake_G = D_frozen(x_fake).float()
                loss_G = objective.g_loss(d_fake_G)
                opt_G.zero_grad(set_to_none=True)
                loss_G.backward()
                if tick:
                    grad_norms[1] = _grad_norm(G)
                opt_G.step()
                D.requires_grad_(True)
                acc_G += loss_G.detach()
                if cfg.host_sync:
                    loss_G.item()
                n_G += 1
                if G_ema is not None:
                    G_ema.update(G)

            # Maintenance: log ticks, milestones, epoch ends, checkpoints, signals.
            done = step + 1
            bar.update(1)
            epoch_end = done % spe == 0
            if tick:
                values = ddp.all_mean(torch.cat([acc_D / max(n_D, 1), acc_G / max(n_G, 1), grad_norms])).tolist()
                problem = nonfinite(values, done)
                if problem and cfg.on_nan == "rollback" and rollbacks < MAX_ROLLBACKS:
                    # Reload the last good checkpoint, halve both learning rates, go on from there.
                    ckpt_path = newest_valid_checkpoint(run_dir)[0] if main else None
                    # The rollback count spans the run, so it is not taken from the checkpoint.
                    step, n_D, n_G, _, _, best_fid, low_D_ticks, _ = restore(
                        ddp.share(load_checkpoint(ckpt_path) if main else None))
                    rollbacks += 1
                    for opt, lr in ((opt_G, cfg.g_lr), (opt_D, cfg.d_lr)):
                        for group in opt.param_groups:
                            group["lr"] = lr * 0.5 ** rollbacks
                    if main:
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
                row = {"step": done, "epoch": round(done / spe, 4), "images": done * cfg.batch_size * W,
                       "loss_D": values[0], "loss_G": values[4] if n_G else None,
                       "d_real": values[1], "d_fake": values[2],
                       "wasserstein": values[3] if objective.wasserstein else None,
                       "grad_norm_D": values[5], "grad_norm_G": values[6] if n_G else None,
                       "lr_D": opt_D.param_groups[0]["lr"], "lr_G": opt_G.param_groups[0]["lr"],
                       "img_per_s": round((done - done_tick) * cfg.batch_size * W / max(now - t_tick, 1e-9), 1),
                       "time_s": round(elapsed + now - t_start, 2)}
                if main:
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
                if low_D_ticks == 5 and main:
                    warn(done, f"D has won outright for 5 log ticks ({5 * cfg.log_every} steps): loss_D "
                               f"{values[0]:.4f}, D(x) {values[1]:.3f}, D(G(z)) {values[2]:.3f}; G's gradient "
                               f"vanishes. Consider a lower --d-lr, a smaller D, or another objective")
                acc_D.zero_()
                acc_G.zero_()
                n_D = n_G = 0
                t_tick, done_tick = time.perf_counter(), done
            if done in milestone_steps and main:
                save_grid(sample_images(G_show, fixed_z[:8]), milestone_path(run_dir, done))
            # Quality: evaluator metrics, best generator by FID, collapse warnings. Every rank
            # makes its rows of the samples; rank 0 scores them all.
            if eval_z is not None and (done == T or (epoch_end if cfg.eval_every == -1 else done % cfg.eval_every == 0)):
                t_eval = time.perf_counter()
                n_pad = -(-len(eval_z) // W) * W
                z_mine = torch.cat([eval_z, eval_z[:n_pad - len(eval_z)]])[ddp.rank::W]
                images = ddp.gather_rows(generate(G_show, z_mine).to(device))[:len(eval_z)]
                if main:
                    q = judge.score(images)
                    eval_s += time.perf_counter() - t_eval
                    wall = elapsed + time.perf_counter() - t_start
                    log.quality({"step": done, "epoch": round(done / spe, 4), "time_s": round(wall, 2),
                                 "train_time_s": round(wall - eval_s, 2), **q})
                    fid, coverage = q[f"fid_{judge.tag}"], q[f"coverage_{judge.tag}"]
                    say(f"quality at step {done}: fid_{judge.tag} {fid:.2f}, coverage {coverage:.3f}, "
                        f"class entropy {q[f'class_entropy_{judge.tag}']:.3f}")
                    if fid < best_fid:
                        export_generator(run_dir, G, G_ema.module if G_ema is not None else None, cfg, done,
                                         name="best", **{f"fid_{judge.tag}": fid})
                    if coverage < 0.1 or q[f"rarest_class_share_{judge.tag}"] == 0:
                        warn(done, f"mode collapse: coverage {coverage:.3f}, rarest class share "
                                   f"{q[f'rarest_class_share_{judge.tag}']:.3f} (classes G no longer makes)")
                    best_fid = min(best_fid, fid)
                best_fid = ddp.share(best_fid)
            # Epoch end: the fixed-z grid, plots, checkpoint.
            if epoch_end or done == T:
                if main:
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
            # A signal on any rank stops all of them: across ranks the signal numbers are compared
            # every STOP_CHECK_EVERY steps (a host collective), in one process every step.
            signum = stop_signal[0] if stop_signal else 0
            if ddp.enabled:
                signum = ddp.max(signum) if done % STOP_CHECK_EVERY == 0 or tick else 0
            if signum:
                save_checkpoint(done, periodic=False)
                raise TrainingStopped(f"stopped by {signal.Signals(signum).name} at step {done}"
                                      + (f" (sent to one or more of the {W} processes)" if W > 1 else "")
                                      + f"; checkpoint saved. Continue with: gankit train --resume {run_dir}",
                                      exit_code=128 + signum)
    finally:
        bar.close()
        if main:
            log.close()
        for s, h in handlers.items():
            signal.signal(s, h)

    if W > 1:
        diff = ddp.max_param_difference(torch.nn.ModuleList([G, D]))
        say(f"ranks in sync: max |parameter difference| between rank 0 and the other {W - 1} rank(s) = {diff:g}")
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
