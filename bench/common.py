"""What every benchmark script shares: the repository on sys.path, the device's name for the
results, appending a dated result to a Markdown file, and training a study's cell unless an
earlier call trained it, in a pool of worker processes that does not outlive the study."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


# R3GAN's objective as the studies try it on gankit's models: the relativistic pairing loss with R1
# and R2 (gamma 0.1, lazily every 4th step) and Adam's beta1 at 0 (Huang et al. 2024).
R3GAN = dict(objective="rpgan", r1=0.1, r2=0.1, reg_every=4, g_betas=(0.0, 0.99), d_betas=(0.0, 0.99))


def device_name(device: str) -> str:
    """The device as results name it. For a CPU: its model, whether bf16 is native there (as
    gankit measures it: emulated on AVX2 and on AVX-512 without its BF16 extension), and any ISA cap
    set in the environment (how an AVX2-only CPU is emulated on an AVX-512 one:
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    from gankit.device import cpuinfo, native_bf16
    info = cpuinfo()
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                 platform.processor() or platform.machine())
    caps = [f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
            if k in os.environ]
    flags = ("AVX-512-BF16" if "avx512_bf16" in info else "AVX-512, no BF16" if "avx512f" in info
             else "AVX2" if "avx2" in info else "no AVX2")
    return (f"CPU {model} ({flags}" + (f", capped by {' '.join(caps)}" if caps else "")
            + f"; bf16 {'native' if native_bf16(torch.device('cpu')) else 'emulated'}), {os.cpu_count()} cores, "
            f"{torch.get_num_threads()} threads")


def append_result(path: str | Path, title: str, intro: str, text: str) -> None:
    """Append `text` to the Markdown file at `path`, creating it with `title` and `intro`."""
    out = Path(path)
    if not out.exists():
        out.write_text(f"# {title}\n\n{intro}\n")
    with out.open("a") as f:
        f.write(text)


def mean_std(xs: list[float], fmt: str = ".2f") -> str:
    """'mean ± std' over seeds (the std of one seed is not shown)."""
    return f"{statistics.mean(xs):{fmt}} ± {statistics.stdev(xs):{fmt}}" if len(xs) > 1 else f"{xs[0]:{fmt}}"


def plot_r_t_and_p(ax, cells: list[dict], augments, x: str) -> None:
    """r_t of each augmentation's seed-0 cell (and ADA's p, dashed) against `x` ('epochs' or
    'steps_logged') on a matplotlib axis: what the small-data studies' curve figures show."""
    for aug, colour in zip(augments, ("C0", "C1", "C2")):
        for c in (c for c in cells if c["augment"] == aug and c["seed"] == 0):
            ax.plot(c[x], c["r_t"], color=colour, label=f"r_t, {aug}")
            if c["ada_p"][-1] is not None:
                ax.plot(c[x], c["ada_p"], color=colour, ls="--", label="p (ada)")
    ax.set_ylim(-0.05, 1.05)


def earlier_run(out: str | Path, name: str, cfg) -> tuple[Path | None, int]:
    """A finished run folder under `out` named NNNNN-`name` whose settings are `cfg`'s (its steps,
    out_dir and data_root aside) and that trained at most cfg.steps steps: (folder, its steps), or
    (None, 0). The newest such folder if there are several."""
    from gankit.runs import read_stats
    want = {k: v for k, v in cfg.to_dict().items() if k not in ("steps", "out_dir", "data_root")}
    for run in sorted(Path(out).glob(f"*-{name}"), reverse=True):
        stats = read_stats(run) if (run / "stats.jsonl").exists() else []
        if not ((run / "generator.safetensors").exists() and stats and stats[-1]["step"] <= cfg.steps):
            continue
        saved = json.loads((run / "config.json").read_text())["config"]
        if all(saved.get(k) == v for k, v in want.items()):
            return run, stats[-1]["step"]
    return None, 0


def train_or_reuse(cfg, name: str, p_max: float | None = None) -> tuple[Path, float | None, int]:
    """Train a study's cell, or reuse the one an earlier call trained under cfg.out_dir: as it is if
    it trained cfg.steps steps, resumed from its last checkpoint to cfg.steps if it trained fewer
    (resume is bit-exact: the same run as one that never stopped). `p_max`: ADA's ceiling of p in
    this process (a leak check's cell; its name must say so, since the config does not). Returns
    (run folder, seconds trained in this call or None, the steps it had trained before)."""
    from gankit.training import train
    if p_max is not None:
        from gankit.nets import ada
        ada.P_MAX = p_max
    run, before = earlier_run(cfg.out_dir, name, cfg)
    if run is not None and before == cfg.steps:
        return run, None, before
    t0 = time.perf_counter()
    run = train(cfg, resume=run, progress=False, run_name=None if run else name)
    return run, round(time.perf_counter() - t0, 1), before


def cell_pool(workers: int, **kw):
    """A pool of `workers` spawned processes for a study's cells, used as `with cell_pool(2) as pool:`.
    A SIGTERM to the study (kill, pkill) ends it as Ctrl-C does: the `with` block's exit terminates
    the workers. Without that they train on, orphaned, into the run folders a next call resumes."""
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    return mp.get_context("spawn").Pool(workers, **kw)


def how_trained(cells: list[dict], steps: int) -> str:
    """How a study's cells came to their budget (train_or_reuse): e.g. 'every cell trained in this
    call' or '9 cells trained 2,000 steps by an earlier call and resumed to 6,000 in this one'."""
    new = sum(c["train_s"] is not None and not c["steps_before"] for c in cells)
    resumed = [c["steps_before"] for c in cells if c["train_s"] is not None and c["steps_before"]]
    reused = sum(c["train_s"] is None for c in cells)
    if new == len(cells):
        return "every cell trained in this call"
    parts = [f"{new} cells trained in this call"] if new else []
    parts += [f"{resumed.count(b)} cells trained {b:,} steps by an earlier call and resumed to {steps:,} in this one"
              for b in sorted(set(resumed))]
    parts += [f"{reused} cells trained by an earlier call and scored again"] if reused else []
    return ", ".join(parts)
