"""Training throughput: gankit's trainer against a loop written the way the course labs write it,
same architecture, batch size and device, in the same run.

    python bench/throughput.py [--models mlp dcgan dcgan-fc] [--batch 128] [--device cpu] [--out bench/RESULTS.md]

The reference loop: torchvision's FashionMNIST with per-sample ToTensor + Normalize, a DataLoader
with 2 workers, fp32, the labs' D ending in Sigmoid with BCELoss, D's real and fake losses
backpropagated separately, G's step backpropagating through D's weights, `.item()` on both losses
every step. gankit: `gankit.train` itself (data on the device, no per-step sync, D frozen in the G
step) in fp32 and with precision 'auto' (bf16 where the hardware has it).

Timing: reference, after 5 warm-up steps, 3 repeats of 20 steps, median; gankit, the median
images/s of the last 2 of 3 log ticks of 20 steps each (the first tick holds the warm-up).
Also printed: FLOPs of one training step (torch's FlopCounterMode on the reference step) and the
achieved FLOP/s as a share of this device's measured fp32 / bf16 matmul rate.
"""
from __future__ import annotations

import argparse
import gzip
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gankit.config import preset_config  # noqa: E402
from gankit.data import locate  # noqa: E402
from gankit.models import build_models  # noqa: E402
from gankit.train import train  # noqa: E402


def matmul_rate(dtype: torch.dtype, device: str, n: int = 2048, reps: int = 5) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


def torchvision_root() -> Path:
    """torchvision wants the decompressed files in ROOT/FashionMNIST/raw (the .gz MD5s differ
    from Debian's recompressed copies)."""
    root = Path(tempfile.mkdtemp(prefix="fmnist-tv-"))
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "test"):
        for path in locate("fashion-mnist", split, download=False):
            data = path.read_bytes()
            (raw / path.name.removesuffix(".gz")).write_bytes(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)
    return root


class LabStep:
    """One step of the labs' loop (PyTorch DCGAN tutorial style)."""

    def __init__(self, model: str, batch: int, device: str):
        cfg = preset_config("dcgan-report", model=model)
        torch.manual_seed(0)
        self.G, D = build_models(cfg)
        self.D = nn.Sequential(D, nn.Sigmoid())  # the labs' D ends in a sigmoid
        self.G, self.D = self.G.to(device), self.D.to(device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.criterion = nn.BCELoss()
        self.batch, self.device, self.z_dim = batch, device, cfg.z_dim

    def __call__(self, x: torch.Tensor) -> tuple[float, float]:
        x = x.to(self.device)
        ones = torch.ones(x.shape[0], device=self.device)
        zeros = torch.zeros(x.shape[0], device=self.device)
        self.D.zero_grad()
        err_real = self.criterion(self.D(x).view(-1), ones)
        err_real.backward()
        fake = self.G(torch.randn(x.shape[0], self.z_dim, device=self.device))
        err_fake = self.criterion(self.D(fake.detach()).view(-1), zeros)
        err_fake.backward()
        self.opt_D.step()
        self.G.zero_grad()
        err_G = self.criterion(self.D(fake).view(-1), ones)
        err_G.backward()
        self.opt_G.step()
        return (err_real + err_fake).item(), err_G.item()


def reference_images_per_s(model: str, batch: int, device: str, root: Path) -> tuple[float, float]:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    ds = datasets.FashionMNIST(str(root), train=True, download=False, transform=tf)
    loader = DataLoader(ds, batch_size=batch, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True)
    step = LabStep(model, batch, device)
    it = iter(loader)
    for _ in range(5):
        step(next(it)[0])
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(20):
            step(next(it)[0])
        rates.append(20 * batch / (time.perf_counter() - t0))
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        step(next(it)[0])
    return statistics.median(rates), counter.get_total_flops()


def gankit_images_per_s(model: str, batch: int, device: str, precision: str, out: Path) -> float:
    cfg = preset_config("dcgan-report", model=model, batch_size=batch, device=device, precision=precision,
                        steps=60, log_every=20, eval_every=0, out_dir=str(out), keep=0)
    run = train(cfg, progress=False)
    rows = [json.loads(x) for x in (run / "stats.jsonl").read_text().splitlines()]
    return statistics.median(r["img_per_s"] for r in rows[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["mlp", "dcgan", "dcgan-fc"])
    ap.add_argument("--batch", type=int, nargs="+", default=[128])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    args = ap.parse_args()
    rate32, rate16 = matmul_rate(torch.float32, args.device), matmul_rate(torch.bfloat16, args.device)
    root = torchvision_root()
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for batch in args.batch:
                ref, flops = reference_images_per_s(model, batch, args.device, root)
                g32 = gankit_images_per_s(model, batch, args.device, "fp32", Path(tmp))
                gauto = gankit_images_per_s(model, batch, args.device, "auto", Path(tmp))
                share32 = g32 / batch * flops / rate32  # FLOPs of the labs' step, the same arithmetic
                share16 = gauto / batch * flops / rate16
                line = (f"| {model} | {batch} | {ref:.0f} | {g32:.0f} | {g32 / ref:.2f}x | {gauto:.0f} | "
                        f"{gauto / ref:.2f}x | {flops / 1e9:.2f} | {100 * share32:.1f}% | {100 * share16:.1f}% |")
                print(line, flush=True)
                lines.append(line)
    shutil.rmtree(root, ignore_errors=True)
    device = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
              else f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads")
    text = (f"# Training throughput, gankit against the labs' loop\n\n"
            f"Measured by `python bench/throughput.py --device {args.device} --batch {' '.join(map(str, args.batch))}` on "
            f"{time.strftime('%Y-%m-%d')}: {device}, torch {torch.__version__}, Python {platform.python_version()}. "
            f"Measured matmul rate of this device (2048x2048): fp32 {rate32 / 1e9:.0f} GFLOP/s, bf16 {rate16 / 1e9:.0f} GFLOP/s. "
            f"Images/s of training (real images through D per second); `auto` is bf16 autocast where the hardware "
            f"has it. The FLOP share is one step's FLOPs (torch's FlopCounterMode) times steps/s over the matmul rate "
            f"of the precision used.\n\n"
            "| model | batch | labs' loop img/s | gankit fp32 img/s | ratio | gankit auto img/s | ratio | GFLOP per step (labs loop) | "
            "fp32 share | auto share |\n|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
