"""The domain evaluator: a small CNN classifier per dataset whose penultimate features and
softmax the metrics use, as Inception-v3's pool3 features and logits are used for FID and IS on
natural images (Heusel et al. 2017; Salimans et al. 2016). Inception features fit 28x28
grayscale garments poorly and are not available offline, so gankit trains its own, pins its
weights in the package (safetensors + a JSON card with accuracy and sha256) and names metrics
after it (`fid_fmnist10k`).
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..data import load_split, to_float
from ..errors import GankitError
from ..device import memory_format_for, resolve_precision
from ..files import cache_root, sha256_file

WEIGHTS_DIR = Path(__file__).parent / "weights"
FEATURE_DIM = 128
SHORT_NAMES = {"fashion-mnist": "fmnist", "mnist": "mnist"}


class Evaluator(nn.Module):
    """Two conv blocks (32, 64 channels) and a 128-d feature layer; ~0.5M parameters."""

    def __init__(self, num_classes: int = 10):
        super().__init__()

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.conv = nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),  # 14x14
                                  *block(32, 64), *block(64, 64), nn.MaxPool2d(2))  # 7x7
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [-1, 1] -> (B, 128) penultimate features."""
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


def check_images(x: torch.Tensor, what: str = "images") -> None:
    if x.ndim == 4 and x.shape[1] != 1:
        raise GankitError(f"{what}: {x.shape[1]}-channel images; the Fashion-MNIST/MNIST evaluator takes "
                          f"grayscale only. For RGB images use Inception features (--inception-weights PATH; "
                          f"for an image folder: --dataset folder --data-root DIR)")
    if x.ndim != 4 or x.shape[2:] != (28, 28):
        raise GankitError(f"{what}: the evaluator takes (N, 1, 28, 28) images, got shape {tuple(x.shape)}; "
                          f"for other sizes use Inception features (--inception-weights PATH)")
    if not torch.isfinite(x).all():
        raise GankitError(f"{what}: non-finite pixel values")


@torch.no_grad()
def embed(model: Evaluator, x: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), softmax probabilities (N, K)) of images in [-1, 1], on the CPU in
    float32. Eval mode: a sample's features do not depend on its batch."""
    check_images(x)
    model.eval()
    device = next(model.parameters()).device
    fmt = memory_format_for(model, device)
    model.to(memory_format=fmt)  # the same weights, in the faster layout
    feats, probs = [], []
    for chunk in x.split(batch):
        f = model.features(chunk.to(device).float().contiguous(memory_format=fmt))
        feats.append(f.float().cpu())
        probs.append(F.softmax(model.head(f).float(), 1).cpu())
    return torch.cat(feats), torch.cat(probs)


def user_dir() -> Path:
    """Where `gankit evaluator train` writes by default, and where gankit also looks: the user's cache."""
    return cache_root("evaluators")


def weights_path(dataset: str) -> Path | None:
    """The evaluator of a dataset: the one shipped in the package, else one in the user's cache."""
    for folder in (WEIGHTS_DIR, user_dir()):
        if (folder / f"{dataset}.safetensors").exists():
            return folder / f"{dataset}.safetensors"
    return None


def available() -> list[str]:
    """The datasets that have an evaluator (shipped or in the user's cache)."""
    return sorted({p.stem for folder in (WEIGHTS_DIR, user_dir()) for p in folder.glob("*.safetensors")})


def load_evaluator(dataset: str = "fashion-mnist", device: str | torch.device = "cpu",
                   path: str | Path | None = None) -> tuple[Evaluator, dict]:
    """A dataset's evaluator (or the one at `path`, a .safetensors beside its .json card) and its
    card, checked against the card's sha256. The card says whether it is the shipped one."""
    path = Path(path) if path else weights_path(dataset)
    if path is None:
        raise GankitError(f"no evaluator for dataset '{dataset}' (have: {', '.join(available()) or 'none'}); train "
                          f"one with `gankit evaluator train --dataset {dataset}` (it is written to {user_dir()})")
    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        raise GankitError(f"{path}: no evaluator there (a .safetensors file with its .json card beside it)")
    try:
        card = json.loads(card_path.read_text())
        model = Evaluator(card.get("num_classes", 10))
        if sha256_file(path) != card["sha256"]:
            raise GankitError(f"{path}: sha256 does not match {card_path.name}; reinstall gankit or retrain the evaluator")
        model.load_state_dict(load_file(str(path)))
    except GankitError:
        raise
    except Exception as e:  # a card that is not JSON, weights of another network, a file that is not safetensors
        raise GankitError(f"{path}: not a gankit evaluator ({type(e).__name__})") from None
    shipped = WEIGHTS_DIR / path.name
    card["shipped"] = shipped.is_file() and sha256_file(shipped) == card["sha256"]
    return model.to(device).eval(), card


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels (pad + crop) and horizontal flips, batched."""
    b = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0)
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()  # one shift per batch keeps it one op
    x = padded[:, :, dy:dy + 28, dx:dx + 28]
    flip = torch.rand(b, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


@torch.no_grad()
def accuracy(model: Evaluator, x_uint8: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for xb, yb in zip(x_uint8.split(1000), y.split(1000)):
        correct += (model(to_float(xb)).argmax(1) == yb).sum().item()
    return correct / len(y)


def train_evaluator(dataset: str = "fashion-mnist", epochs: int = 8, batch_size: int = 128, lr: float = 3e-3,
                    seed: int = 0, data_root: str | None = None, out_dir: Path | None = None,
                    precision: str = "auto", log=print) -> dict:
    """Train the evaluator with gankit's own loop (AdamW, one-cycle LR, shifts and flips) and write
    `<dataset>.safetensors` and its card `<dataset>.json` to out_dir (default: the user's cache,
    where gankit also looks; never the installed package unless given as out_dir). An evaluator
    already there is not overwritten. Returns the card."""
    out = Path(out_dir).expanduser() if out_dir else user_dir()
    if (out / f"{dataset}.safetensors").exists():
        raise GankitError(f"{out / f'{dataset}.safetensors'} exists; choose another --out, or delete it first")
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x_train, y_train = load_split(dataset, "train", data_root)
    x_test, y_test = load_split(dataset, "test", data_root)
    model = Evaluator()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = len(x_train) // batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    precision = resolve_precision(precision, torch.device("cpu"))  # bf16 only where it is native
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = _augment(to_float(x_train[idx]), g)
            with autocast:
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y_train[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(model, x_test, y_test)
        log(f"epoch {epoch + 1}/{epochs}: test accuracy {acc:.4f} ({time.perf_counter() - t0:.0f} s)")
    seconds = time.perf_counter() - t0
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{dataset}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    card = {
        "dataset": dataset, "num_classes": 10, "test_accuracy": round(acc, 4), "test_images": len(y_test),
        "feature_layer": "fc: Linear(3136, 128) + ReLU, the input of the classifier head (128-d)",
        "input": "(N, 1, 28, 28) float in [-1, 1]",
        "training_command": f"gankit evaluator train --dataset {dataset} --epochs {epochs} --seed {seed}",
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "precision": precision,
        "train_seconds": round(seconds, 1), "torch_version": torch.__version__,
        "python_version": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
        "sha256": sha256_file(path),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"wrote {path} (test accuracy {acc:.4f}, {seconds:.0f} s)")
    return card
