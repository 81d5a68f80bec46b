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

from ..data import class_folders, class_names, folder_labels, load_folder, load_split, subset_indices, to_float
from ..errors import GankitError
from ..device import memory_format_for, resolve_precision
from ..files import cache_root, sha256_file

WEIGHTS_DIR = Path(__file__).parent / "weights"
FEATURE_DIM = 128
SHORT_NAMES = {"fashion-mnist": "fmnist", "mnist": "mnist"}


class Evaluator(nn.Module):
    """Conv blocks (32, 32 | 64, 64 | 64) with 2x2 max-pools, then a 128-d feature layer. At 28x28
    (Fashion-MNIST, MNIST; ~0.5M parameters) two pools leave 7x7. A folder's images (32, 64 or 128
    pixels) are averaged down to 32x32 first (what a class needs, at a quarter of 64x64's cost),
    and a third block and pool bring them to 4x4 (~0.24M parameters)."""

    def __init__(self, num_classes: int = 10, channels: int = 1, size: int = 28):
        super().__init__()
        if size not in (28, 32, 64, 128):
            raise GankitError(f"an evaluator takes images of 28, 32, 64 or 128 pixels square; got {size}")
        self.channels, self.size = channels, size

        def block(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        layers = [nn.AvgPool2d(size // 32)] if size > 32 else []
        layers += [*block(channels, 32), *block(32, 32), nn.MaxPool2d(2),  # 14x14 (16)
                   *block(32, 64), *block(64, 64), nn.MaxPool2d(2)]  # 7x7 (8)
        if size != 28:
            layers += [*block(64, 64), nn.MaxPool2d(2)]  # 4x4
        side = 7 if size == 28 else 4
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(64 * side * side, FEATURE_DIM), nn.ReLU(inplace=True))
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) in [-1, 1] -> (B, 128) penultimate features."""
        return self.fc(self.conv(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


@torch.no_grad()
def fold_batchnorm(model: Evaluator) -> Evaluator:
    """The evaluator for inference: each convolution with the eval-mode BatchNorm after it folded into
    one convolution with a bias (w * s, beta - mean * s, s = gamma / sqrt(var + eps)) and the norm
    replaced by Identity, in place. The same function to float precision (features move in their
    last bits) without the normalisation's pass over every activation; reference caches hold the
    embedding in their key."""
    layers = list(model.conv)
    for i, (conv, bn) in enumerate(zip(layers, layers[1:])):
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            s = bn.weight / (bn.running_var + bn.eps).sqrt()
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                               bias=True).to(conv.weight.device)
            folded.weight.copy_(conv.weight * s[:, None, None, None])
            folded.bias.copy_(bn.bias - bn.running_mean * s)
            model.conv[i], model.conv[i + 1] = folded, nn.Identity()
    return model.eval()


FOLDED = "batchnorm folded into the convolutions"  # a loaded evaluator's card["embedding"] (reference cache keys)


def check_images(x: torch.Tensor, what: str = "images", model: Evaluator | None = None) -> None:
    c, s = (model.channels, model.size) if model is not None else (1, 28)
    if x.ndim == 4 and x.shape[1] != c:
        raise GankitError(f"{what}: {x.shape[1]}-channel images; this evaluator takes "
                          + ("grayscale only. For RGB images use Inception features (--inception-weights PATH), "
                             "or train an evaluator on a folder's classes (`gankit evaluator train --dataset folder`)"
                             if c == 1 else f"{c}-channel images"))
    if x.ndim != 4 or x.shape[2] != x.shape[3] or not (x.shape[-1] == s or s >= 32 and x.shape[-1] % s == 0):
        raise GankitError(f"{what}: the evaluator takes (N, {c}, {s}, {s}) images"
                          + (f" (or a whole multiple of {s} px, averaged down to it)" if s >= 32 else "")
                          + f", got shape {tuple(x.shape)}; for other sizes use Inception features "
                            f"(--inception-weights PATH) or an evaluator trained at that size")
    if not torch.isfinite(x).all():
        raise GankitError(f"{what}: non-finite pixel values")


@torch.no_grad()
def embed(model: Evaluator, x: torch.Tensor, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, 128), softmax probabilities (N, K)) of images in [-1, 1], on the CPU in
    float32. Eval mode: a sample's features do not depend on its batch. Batches of 250 on a CPU
    (their activations stay in its caches; bench/eval_time.py times them against 1,000 and checks
    the features are the same bit for bit), 1,000 on a GPU. A folder's evaluator (32 px or more, which
    averages its images down to 32x32 anyway) takes images a whole multiple of its size, averaged
    down to it first: a 64-px folder's evaluator scores a model trained on it at 128 px."""
    check_images(x, model=model)
    model.eval()
    device = next(model.parameters()).device
    batch = batch or (250 if device.type == "cpu" else 1000)
    fmt = memory_format_for(model, device)
    model.to(memory_format=fmt)  # the same weights, in the faster layout
    feats, probs = [], []
    for chunk in x.split(batch):
        if chunk.shape[-1] != model.size:
            chunk = F.avg_pool2d(chunk.float(), chunk.shape[-1] // model.size)
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


def _card(path: Path) -> dict:
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def available(folders: bool = False) -> list[str]:
    """The datasets that have an evaluator (shipped or in the user's cache, named after the dataset):
    the IDX datasets', or with folders=True the evaluators trained on image folders (named after
    the folder, or as `--name` said)."""
    found = set()
    for p in (p for folder in (WEIGHTS_DIR, user_dir()) for p in folder.glob("*.safetensors")):
        card = _card(p)
        if folders and card.get("source") == "folder":
            found.add(p.stem)
        elif not folders and card.get("source") != "folder" and card.get("dataset", p.stem) == p.stem:
            found.add(p.stem)
    return sorted(found)


def load_evaluator(dataset: str = "fashion-mnist", device: str | torch.device = "cpu",
                   path: str | Path | None = None) -> tuple[Evaluator, dict]:
    """A dataset's evaluator (or the one at `path`: a .safetensors beside its .json card, or the
    name of one gankit has, e.g. a folder's `emoji`) and its card, checked against the card's
    sha256. The card says whether it is the shipped one."""
    if path and Path(path).suffix != ".safetensors" and not Path(path).is_file():  # a name
        if weights_path(str(path)) is None:
            raise GankitError(f"no evaluator named '{path}' (have: {', '.join(available() + available(True))}); "
                              f"give a .safetensors path, or train one with `gankit evaluator train`")
        path = weights_path(str(path))
    path = Path(path) if path else weights_path(dataset)
    if path is None:
        raise GankitError(f"no evaluator for dataset '{dataset}' (have: {', '.join(available()) or 'none'}); train "
                          f"one with `gankit evaluator train --dataset {dataset}` (it is written to {user_dir()})")
    card_path = path.with_suffix(".json")
    if not path.is_file() or not card_path.is_file():
        raise GankitError(f"{path}: no evaluator there (a .safetensors file with its .json card beside it)")
    try:
        card = json.loads(card_path.read_text())
        model = Evaluator(card.get("num_classes", 10), card.get("channels", 1), card.get("image_size", 28))
        if sha256_file(path) != card["sha256"]:
            raise GankitError(f"{path}: sha256 does not match {card_path.name}; reinstall gankit or retrain the evaluator")
        model.load_state_dict(load_file(str(path)))
    except GankitError:
        raise
    except Exception as e:  # a card that is not JSON, weights of another network, a file that is not safetensors
        raise GankitError(f"{path}: not a gankit evaluator ({type(e).__name__})") from None
    shipped = WEIGHTS_DIR / path.name
    card["shipped"] = shipped.is_file() and sha256_file(shipped) == card["sha256"]
    card["path"] = str(path)
    card["embedding"] = FOLDED
    return fold_batchnorm(model.to(device).eval()), card


def _augment(x: torch.Tensor, g: torch.Generator, pad: str = "black") -> torch.Tensor:
    """Random shifts of up to 2 pixels (pad with black, or the edge pixels repeated, + crop) and
    horizontal flips, batched."""
    b, size = x.shape[0], x.shape[-1]
    padded = F.pad(x, (2, 2, 2, 2), value=-1.0) if pad == "black" else F.pad(x, (2, 2, 2, 2), mode="replicate")
    dx, dy = torch.randint(0, 5, (2,), generator=g).tolist()  # one shift per batch keeps it one op
    x = padded[:, :, dy:dy + size, dx:dx + size]
    flip = torch.rand(b, generator=g) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


@torch.no_grad()
def accuracy(model: Evaluator, x_uint8: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for xb, yb in zip(x_uint8.split(1000), y.split(1000)):
        correct += (model(to_float(xb)).argmax(1) == yb).sum().item()
    return correct / len(y)


def folder_splits(root: str | Path, image_size: int, channels: int, log=print) -> dict:
    """A folder of class sub-folders (root/CLASS/image.png) as an evaluator's data: its images at
    image_size, each one's class, and a held-out test split of 15 % of every class (a fixed
    choice, the same for every seed)."""
    x = torch.from_numpy(load_folder(root, image_size, channels, say=log, progress=False))
    y = torch.from_numpy(folder_labels(root, image_size, channels))
    test = torch.zeros(len(x), dtype=torch.bool)
    test[subset_indices(len(x), max(len(class_folders(root)), round(0.15 * len(x))), y)] = True
    return {"x_train": x[~test], "y_train": y[~test], "x_test": x[test], "y_test": y[test],
            "classes": [p.name for p in class_folders(root)]}


def train_evaluator(dataset: str = "fashion-mnist", epochs: int | None = None, batch_size: int = 128,
                    lr: float = 3e-3, seed: int = 0, data_root: str | None = None, out_dir: Path | None = None,
                    precision: str = "auto", image_size: int = 64, channels: int = 3, name: str | None = None,
                    log=print) -> dict:
    """Train the evaluator with gankit's own loop (AdamW, one-cycle LR, shifts and flips) and write
    `<name>.safetensors` and its card `<name>.json` to out_dir (default: the user's cache, where
    gankit also looks; never the installed package unless given as out_dir). An IDX dataset's
    evaluator is named after it and trains 8 epochs by default; a folder's (dataset 'folder': the
    class sub-folders of data_root, at image_size and channels) after the folder, 20 epochs. An
    evaluator already there is not overwritten. Returns the card."""
    folder = dataset == "folder"
    name = name or (Path(data_root).expanduser().resolve().name if folder and data_root else dataset)
    epochs = (20 if folder else 8) if epochs is None else epochs
    out = Path(out_dir).expanduser() if out_dir else user_dir()
    if (out / f"{name}.safetensors").exists():
        raise GankitError(f"{out / f'{name}.safetensors'} exists; choose another --out or --name, or delete it first")
    if epochs < 1:
        raise GankitError(f"--epochs must be >= 1, got {epochs}")
    if folder:
        data = folder_splits(data_root, image_size, channels, log)
    else:
        (x, y), (xt, yt) = load_split(dataset, "train", data_root), load_split(dataset, "test", data_root)
        data = {"x_train": x, "y_train": y, "x_test": xt, "y_test": yt, "classes": class_names(dataset, 10)}
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x_train, y_train, x_test, y_test = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    model = Evaluator(len(data["classes"]), *x_train.shape[1:3])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = max(1, len(x_train) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    precision = resolve_precision(precision, torch.device("cpu"))  # bf16 only where it is native
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    t0 = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x_train), generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            x = _augment(to_float(x_train[idx]), g, "edge" if folder else "black")
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
    path = out / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    c, s = model.channels, model.size
    command = (f"gankit evaluator train --dataset folder --data-root {data_root} --image-size {s} --channels {c} "
               f"--name {name}" if folder else f"gankit evaluator train --dataset {dataset}")
    card = {
        "dataset": name if folder else dataset, "name": name, "source": "folder" if folder else "idx",
        "num_classes": len(data["classes"]),
        "classes": data["classes"], "channels": c, "image_size": s,
        "test_accuracy": round(acc, 4), "test_images": len(y_test), "train_images": len(y_train),
        "feature_layer": f"fc: {model.fc[1]} + ReLU, the input of the classifier head (128-d)",
        "input": f"(N, {c}, {s}, {s}) float in [-1, 1]",
        "training_command": f"{command} --epochs {epochs} --seed {seed}",
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed, "precision": precision,
        "train_seconds": round(seconds, 1), "torch_version": torch.__version__,
        "python_version": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
        "sha256": sha256_file(path),
    }
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"wrote {path} (test accuracy {acc:.4f}, {seconds:.0f} s)")
    return card
