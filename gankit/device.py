"""Where gankit runs and how: the device, the precision and the memory format, chosen per device.

bf16 is fast only where the hardware multiplies in bf16: CUDA GPUs with bf16 support and CPUs with
AVX-512-BF16 or AMX, where a bf16 matmul runs ~2.6-4x faster than fp32. Elsewhere PyTorch
emulates it, ~100x *slower* than fp32 (a 512x512 bf16 matmul at 1.2 GFLOP/s on an AVX2 EPYC,
against 134 GFLOP/s for fp32). The CPU's flags are not proof on their own (oneDNN may be capped
below them, e.g. by ONEDNN_MAX_CPU_ISA), so on a CPU that claims bf16 a short probe measures it
(24 ms where native, ~0.1 s where emulated, on a 2-core EPYC). `auto` picks bf16 only where it is native; an explicit `bf16` where it is not gets
a warning with the measured ratio.

channels_last (NHWC) convolutions: on the CPU oneDNN's NHWC kernels are faster for the DCGAN
models in both fp32 and bf16 (bench/RESULTS.md), so `auto` turns them on there for models with
convolutions; on CUDA nothing has been measured yet, so `auto` leaves the default format.
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path

import torch

from .errors import ConfigError


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


def cpuinfo() -> str:
    """/proc/cpuinfo ("" where there is none): the CPU's model name and flags."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def device_name(device: torch.device) -> str:
    """What a person calls the machine a run trained on: the GPU's name, or the CPU's model name with
    its core count and whether it multiplies in bf16 natively (what decides the precision `auto`
    picks, and how fast a run goes)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return str(device)
    info = cpuinfo()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                 "a CPU")
    bf16 = "AVX-512-BF16" if "avx512_bf16" in info else "AMX-BF16" if "amx_bf16" in info else "no native bf16"
    return f"{model}, {os.cpu_count() or '?'} cores, {bf16}"


def _matmul_seconds(dtype: torch.dtype, n: int = 256, reps: int = 4) -> float:
    """Best seconds per n x n matmul in `dtype` over a few rounds, after a warm-up (the first
    products of a process also start its thread pool)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, (time.perf_counter() - t) / reps)
        if dtype == torch.bfloat16 and best > 5e-3:  # emulated (~15-30 ms a product): one round says enough
            break
    return best


@functools.cache
def cpu_matmul_seconds() -> tuple[float, float] | None:
    """(fp32, bf16) seconds of a 256x256 matmul on this CPU, measured once per process, on one
    thread: a multi-threaded product on a busy machine waits for its slowest core, which can make
    fp32 look as slow as emulated bf16; the kernels' ratio is the same per thread. None without
    the CPU flags (no bf16 kernels to measure)."""
    flags = cpuinfo()
    if "avx512_bf16" not in flags and "amx_bf16" not in flags:
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _matmul_seconds(torch.float32), _matmul_seconds(torch.bfloat16)
    finally:
        torch.set_num_threads(threads)


def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of the probe: ~3-4 where bf16 is native, ~0.02 where it is emulated;
    0.0 without the CPU flags (not measured)."""
    times = cpu_matmul_seconds()
    return times[0] / times[1] if times else 0.0


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_bf16_speedup() >= 1.0
    return False


def bf16_warning(device: torch.device) -> str | None:
    """Why bf16 would be slow on `device`, with the measurement; None where it is native."""
    if native_bf16(device):
        return None
    if device.type != "cpu":
        return f"{device} has no native bf16 support; bf16 may be slow or unsupported there"
    times = cpu_matmul_seconds()
    if times is None:
        return ("this CPU has no native bf16 (no avx512_bf16/amx_bf16 in /proc/cpuinfo): PyTorch emulates it, "
                "~100x slower than fp32, so bf16 training runs many times slower than fp32 here; use "
                "--precision fp32 or auto")
    fp32_s, bf16_s = times
    return (f"this CPU has no native bf16: a 256x256 bf16 matmul took {bf16_s * 1e3:.1f} ms against "
            f"{fp32_s * 1e3:.2f} ms in fp32 (one thread, {bf16_s / fp32_s:.0f}x slower), so bf16 training runs "
            f"many times slower than fp32 here; use --precision fp32 or auto")


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' is bf16 on a CPU that does bf16 matrix work natively, else fp32. On a GPU these small
    models are bound by kernel launches, not arithmetic, and bf16's extra casts made every one of
    them slower than fp32 on an H100 (bench/RESULTS_CUDA.md); an explicit bf16 still runs there."""
    if name != "auto":
        return name
    return "bf16" if device.type == "cpu" and native_bf16(device) else "fp32"


def autocast(precision: str, device: torch.device):
    """The context the forward passes run in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _has_convs(*nets: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.conv._ConvNd) for net in nets for m in net.modules())


def resolve_channels_last(setting: bool | None, G: torch.nn.Module, D: torch.nn.Module,
                          device: torch.device) -> bool:
    """`None` (auto): channels_last on the CPU when G or D has convolutions, else off."""
    if setting is not None:
        return setting
    return device.type == "cpu" and _has_convs(G, D)


def memory_format_for(net: torch.nn.Module, device: torch.device) -> torch.memory_format:
    """The memory format inference runs in (generation, the evaluator), by the same rule as
    training's auto: channels_last for networks with convolutions on the CPU (~35 % faster there
    for 10k samples of the DCGAN and the evaluator's features, in fp32 on both CPU kinds)."""
    return torch.channels_last if device.type == "cpu" and _has_convs(net) else torch.contiguous_format
