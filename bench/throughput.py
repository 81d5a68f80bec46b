"""Training throughput: gankit's trainer against a loop written the way the course labs write it
(bench/labloop.py), same architecture, batch size and device, in the same run.

    python bench/throughput.py [--models mlp dcgan dcgan-fc] [--batch 128 256] [--device cpu]
                               [--variants plain fp32 auto auto+cl] [--rounds 1] [--out bench/RESULTS.md]

gankit variants (each a switch of the Config, so each part of the fast path is measured):
  plain    the plain path: data on the CPU copied per batch, .item() every step, per-tensor
           optimizer updates, fp32, contiguous (what gankit's loop does with the fast path switched off)
  fp32     the fast path in fp32: data on the device, no per-step sync, foreach optimizers
  fp32+cl  fp32 with channels_last convolutions
  bf16     the fast path with bf16 autocast (channels_last as auto picks it); emulated on a CPU without native bf16
  auto     precision and channels_last chosen for the device (bf16 where native; channels_last on the CPU)
  auto-cl  auto without channels_last;  auto+fused  with fused optimizers;  auto+compile  with torch.compile
  default  the `default` preset itself (auto precision, its leaner G and D, Adam 4e-4, an EMA of G) with the model and batch asked
  default+rpgan    default with R3GAN's relativistic pairing loss (its G step scores the real batch too; Adam β1 0,
                   D without BatchNorm), no penalty
  default+r1r2/4   ... with R1 and R2 (γ 0.1) every 4th step, scaled by 4 (lazy regularisation)
  default+r1r2/1   ... with R1 and R2 every step: what the lazy schedule saves

Timing: reference, after 5 warm-up steps, 5 repeats of 20 steps, median; gankit, the median
images/s of the last 5 of 6 log ticks of 20 steps each (the first tick holds the warm-up and, for
compile, the compilation). With --rounds R the reference and every variant are measured R times,
interleaved (round 1: reference, variant 1, variant 2, ...; round 2: reference, the variants in
reverse order; ...): a CPU whose speed drifts over minutes slows a whole round alike, so the ratios
are the medians of each round's own ratios, and the column "vs FIRST" compares each variant with
the first of --variants the same way (a part's cost: `--variants default default+r1r2/4 --rounds 5`).
FLOPs per step: torch's FlopCounterMode around gankit runs of 8 and 4
steps, difference / 4 (everything else those runs do is the same), and around one reference step.
Share: achieved FLOP/s over this device's best measured matmul rate in the precision used.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import R3GAN, device_name
from labloop import LabStep, lab_loader, torchvision_root
from gankit.config import preset_config
from gankit.device import native_bf16, resolve_precision
from gankit.runs import read_stats
from gankit.training import train

VARIANTS = {
    "plain": dict(precision="fp32", data_on_device=False, host_sync=True, optim_impl="loop", channels_last=False),
    "fp32": dict(precision="fp32", channels_last=False),
    "fp32+cl": dict(precision="fp32", channels_last=True),
    "bf16": dict(precision="bf16"),
    "auto-cl": dict(precision="auto", channels_last=False),
    "auto": dict(precision="auto"),
    "auto+fused": dict(precision="auto", optim_impl="fused"),
    "auto+compile": dict(precision="auto", compile=True),
    "default": dict(preset="default"),
    "default+rpgan": dict(preset="default", **{**R3GAN, "r1": 0.0, "r2": 0.0, "reg_every": 1}, d_norm="none"),
    "default+r1r2/4": dict(preset="default", **R3GAN, d_norm="none"),
    "default+r1r2/1": dict(preset="default", **{**R3GAN, "reg_every": 1}, d_norm="none"),
}
# The fields that change what a step computes (the others change how fast it runs): FLOPs are
# counted once per distinct set of them.
FLOP_FIELDS = ("preset", "objective", "d_norm", "r1", "r2", "reg_every")


def flop_key(variant: str) -> tuple:
    return tuple((k, v) for k, v in VARIANTS[variant].items() if k in FLOP_FIELDS)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_rate(dtype: torch.dtype, device: str, sizes=(1024, 2048, 4096)) -> float:
    """The best FLOP/s of square matmuls of a few sizes: what this device can reach. Only called
    for bf16 where it is native: emulated, a 4096^2 bf16 product alone takes about a minute."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        for _ in range(3):
            a @ b
        sync(device)
        for _ in range(5):
            t0 = time.perf_counter()
            a @ b
            sync(device)
            best = max(best, 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def reference(model: str, batch: int, device: str, root: Path, tick: int = 20) -> tuple[float, float]:
    """(images/s, FLOPs of one step) of the labs' loop."""
    step = LabStep(model, device)
    it = iter(lab_loader(root, batch))
    for _ in range(5):
        step(next(it)[0])
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(tick):
            step(next(it)[0])
        rates.append(tick * batch / (time.perf_counter() - t0))
    with FlopCounterMode(display=False) as counter:
        step(next(it)[0])
    return statistics.median(rates), counter.get_total_flops()


def gankit_cfg(model: str, batch: int, device: str, out: Path, preset: str = "dcgan-report", **kw):
    return preset_config(preset, model=model, batch_size=batch, device=device, eval_every=0,
                         out_dir=str(out), keep=0, **kw)


def gankit_images_per_s(model: str, batch: int, device: str, variant: str, out: Path, tick: int = 20) -> float:
    run = train(gankit_cfg(model, batch, device, out, steps=6 * tick, log_every=tick, **VARIANTS[variant]),
                progress=False)
    rows = read_stats(run)
    return statistics.median(r["img_per_s"] for r in rows[1:])


def gankit_step_flops(model: str, batch: int, device: str, out: Path, preset: str = "dcgan-report", **kw) -> float:
    """FLOPs of one step of `preset` (with the fields `kw`) with `model` (the `default` preset's
    networks are leaner). With R1/R2 every Kth step: the mean over K steps. NaN where torch's
    FlopCounterMode cannot follow the step (its module hooks refuse R1/R2's autograd.grad)."""
    counts = []
    k = kw.get("reg_every", 1)
    if kw.get("r1") or kw.get("r2"):
        return float("nan")
    for steps in (4 * k, 8 * k):
        with FlopCounterMode(display=False) as counter:
            train(gankit_cfg(model, batch, device, out, preset, steps=steps, log_every=100, precision="fp32", **kw),
                  progress=False)
        counts.append(counter.get_total_flops())
    return (counts[1] - counts[0]) / (4 * k)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "dcgan", "dcgan-fc"])
    ap.add_argument("--batch", type=int, nargs="+", default=[128])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", nargs="+", default=["plain", "fp32", "fp32+cl", "default"], choices=VARIANTS)
    ap.add_argument("--tick", type=int, default=20, help="steps per timing window (tiny for a smoke test)")
    ap.add_argument("--rounds", type=int, default=1, help="measure the reference and every variant this many "
                                                            "times, interleaved; report medians of per-round ratios")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = ap.parse_args()
    if args.rounds < 1:
        raise SystemExit(f"--rounds {args.rounds}: at least 1")
    auto = resolve_precision("auto", torch.device(args.device))
    native = native_bf16(torch.device(args.device))
    sizes = (1024, 2048, 4096) if args.tick >= 20 else (256,)
    rates = {"fp32": matmul_rate(torch.float32, args.device, sizes),
             "bf16": matmul_rate(torch.bfloat16, args.device, sizes) if native else float("nan")}
    root = torchvision_root()
    lines, ratios, round_lines = [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            flops = {key: gankit_step_flops(model, args.batch[0], args.device, Path(tmp), **dict(key)) / args.batch[0]
                     for key in {flop_key(v) for v in args.variants}}  # per image
            for batch in args.batch:
                refs, ips = [], {v: [] for v in args.variants}
                for _ in range(args.rounds):  # interleaved: drift slows a whole round alike
                    ref, ref_flops = reference(model, batch, args.device, root, args.tick)
                    refs.append(ref)
                    order = args.variants if len(refs) % 2 else args.variants[::-1]  # alternate the order
                    for variant in order:
                        ips[variant].append(gankit_images_per_s(model, batch, args.device, variant, Path(tmp), args.tick))
                    first = args.variants[0]
                    round_lines.append(f"{model} b{batch} round {len(refs)}: labs' loop {ref:.0f} img/s, " + ", ".join(
                        f"{v} {ips[v][-1]:.0f} ({ips[v][-1] / ips[first][-1]:.2f}x {first})" for v in args.variants))
                    print(round_lines[-1], flush=True)
                ref = statistics.median(refs)
                line = (f"| {model} | {batch} | labs' loop | {ref:.0f} | 1.00x | - | {ref_flops / 1e9:.2f} | "
                        f"{100 * ref * ref_flops / batch / rates['fp32']:.1f}% |")
                lines.append(line)
                for variant in args.variants:
                    rate = statistics.median(ips[variant])
                    ratios[model, batch, variant] = statistics.median(i / r for i, r in zip(ips[variant], refs))
                    vs_first = statistics.median(i / f for i, f in zip(ips[variant], ips[first]))
                    prec = VARIANTS[variant].get("precision", "auto").replace("auto", auto)
                    f = flops[flop_key(variant)]
                    line = (f"| {model} | {batch} | gankit {variant} ({prec}) | {rate:.0f} | "
                            f"{ratios[model, batch, variant]:.2f}x | {vs_first:.2f}x | "
                            f"{f * batch / 1e9:.2f} | {100 * rate * f / rates[prec]:.1f}% |")
                    lines.append(line)
    shutil.rmtree(root, ignore_errors=True)
    device = device_name(args.device)
    text = (f"# Training throughput, gankit against the labs' loop\n\n"
            f"Measured by `python bench/throughput.py --device {args.device} --batch {' '.join(map(str, args.batch))} "
            f"--models {' '.join(args.models)} --variants {' '.join(args.variants)} --rounds {args.rounds}` on "
            f"{time.strftime('%Y-%m-%d')}: {device}, torch {torch.__version__}, Python {platform.python_version()}. "
            f"Best measured matmul rate of this device: fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s, "
            + (f"bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s; `auto` is {auto}" if native else
               "bf16 not native here (not measured; `auto` is fp32)") + ". Images/s of training (real images through D per second); "
            f"the ratio is against the labs' loop at the same batch in this run ({'the median of ' + str(args.rounds) + ' interleaved rounds, each round its own ratio' if args.rounds > 1 else 'one round'}); "
            f"\"vs {args.variants[0]}\" compares with the first variant the same way. GFLOP per step: torch's "
            "FlopCounterMode (gankit's step skips D's weight gradients in G's update, so it does less "
            "arithmetic than the labs' step). Share: achieved FLOP/s over the matmul rate of the precision used. "
            "Variants are explained at the top of bench/throughput.py.\n\n"
            f"| model | batch | loop | img/s | vs labs' loop | vs {args.variants[0]} | GFLOP per step | share of matmul peak |\n"
            "|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
            + ("\nA share above 100% means the convolution kernels outran the matmul probe: the probe's rate is "
               "what torch's matmul reaches here, not the hardware's peak.\n"
               if any(float(x.split("|")[-2].strip().rstrip("%")) > 100 for x in lines) else "")
            + ("\nEach round as measured (the variants' order alternates between rounds):\n\n"
               + "\n".join(f"    {x}" for x in round_lines) + "\n" if args.rounds > 1 else ""))
    Path(args.out).write_text(text)
    print(text)
    best = max(ratios, key=ratios.get)
    print("gankit against the labs' loop: " + ", ".join(f"{m} b{b} {v} {r:.2f}x" for (m, b, v), r in ratios.items())
          + f"; best {best[2]} on {best[0]} at batch {best[1]}: {ratios[best]:.2f}x")


if __name__ == "__main__":
    main()
