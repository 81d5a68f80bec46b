"""What every benchmark script shares: the repository on sys.path, the device's name for the
results, and appending a dated result to a Markdown file."""
from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def device_name(device: str) -> str:
    """The device as results name it. For a CPU: its model, whether bf16 is native there (as
    gankit measures it), and any ISA cap set in the environment (how an AVX2-only CPU is emulated
    on an AVX-512 one: ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    from gankit.device import cpuinfo, native_bf16
    info = cpuinfo()
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                 platform.processor() or platform.machine())
    caps = [f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")
            if k in os.environ]
    flags = "AVX-512-BF16" if "avx512_bf16" in info else "AVX2" if "avx2" in info else "no AVX2"
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
