"""The reference: a GAN training loop written the way the course labs write it, shared by the
benchmarks that measure gankit against it.

torchvision's FashionMNIST with per-sample ToTensor + Normalize, a DataLoader with 2 workers,
fp32, the labs' D ending in Sigmoid with BCELoss, D's real and fake losses backpropagated
separately, G's step backpropagating through D's weights, `.item()` on both losses every step.
The architecture is gankit's (the labs' layers, tested equal), so only the loop differs.
"""
from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import torch
from torch import nn

import common  # noqa: F401,E402  (puts the repository on sys.path)
from gankit.config import preset_config  # noqa: E402
from gankit.data import locate  # noqa: E402
from gankit.nets import build_models  # noqa: E402


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


def lab_loader(root: Path, batch: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    ds = datasets.FashionMNIST(str(root), train=True, download=False, transform=tf)
    return DataLoader(ds, batch_size=batch, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True)


class LabStep:
    """One step of the labs' loop (PyTorch DCGAN tutorial style) on gankit's `model`, with the
    dcgan-report preset's settings (N(0, 0.02) init, Adam 2e-4, betas (0.5, 0.999))."""

    def __init__(self, model: str, device: str, seed: int = 0):
        cfg = preset_config("dcgan-report", model=model)
        torch.manual_seed(seed)
        self.G, D = build_models(cfg)
        self.D = nn.Sequential(D, nn.Sigmoid())  # the labs' D ends in a sigmoid
        self.G, self.D = self.G.to(device), self.D.to(device)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.criterion = nn.BCELoss()
        self.device, self.z_dim = device, cfg.z_dim

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
