"""Sample quality as a library: `compute_metrics(source, reference, names, n)`.

Features and class probabilities come from the dataset's evaluator (gankit.metrics.evaluator);
metric names carry the feature network and the sample count (`fid_fmnist10k`), so numbers from
different protocols never mix. Reference features are cached under a hash of what produced them
(dataset, split, evaluator sha256, n).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..data import load_split, to_float
from ..errors import GankitError
from ..files import atomic_path, atomic_write_text, cache_root, sha256_file
from . import scores
from .evaluator import SHORT_NAMES, embed, load_evaluator

METRICS = ("fid", "kid", "is", "precision", "recall", "density", "coverage", "classes")
DEFAULT_N = 10000  # samples and reference images of `gankit eval` (the fmnist10k protocol)
# How tables name each score (score_features' keys without the protocol tag), in table order.
LABELS = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall",
          "density": "density", "coverage": "coverage", "class_entropy": "class entropy",
          "rarest_class_share": "rarest class", "class_accuracy": "class accuracy"}


def protocol(dataset: str, n: int, net: str | None = None) -> str:
    """`fmnist10k` for 10,000 samples scored with the Fashion-MNIST evaluator; `inception10k`
    with Inception features (net='inception')."""
    return (net or SHORT_NAMES.get(dataset, dataset)) + (f"{n // 1000}k" if n % 1000 == 0 else str(n))


# ---- sources ----------------------------------------------------------------------------------
def load_images(source: str | Path, n: int, seed: int = 0, ema: bool | None = None,
                device: str = "cpu") -> torch.Tensor:
    """n images (N, C, H, W) in [-1, 1] from a run folder or generator file (sampled with `seed`),
    a folder of PNGs, or an .npy/.pt tensor (uint8 in [0, 255] or float in [-1, 1])."""
    return load_labelled_images(source, n, seed, ema, device)[0]


def load_labelled_images(source: str | Path, n: int, seed: int = 0, ema: bool | None = None,
                         device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor | None]:
    """load_images, and the class each image was made for when the source is a conditional
    generator (every class equally often); None otherwise."""
    p = Path(source)
    if not p.exists():
        raise GankitError(f"{p}: no such run, generator, image folder or tensor file")
    if p.suffix == ".safetensors" or (p.is_dir() and (p / "generator.safetensors").exists()):
        from ..checkpoint import load_generator
        from ..conditional import balanced_labels
        from ..latent import generate, z_from_seed
        G = load_generator(p, ema=ema, device=device)
        y = balanced_labels(n, G.num_classes) if G.num_classes else None
        return generate(G, z_from_seed(seed, n, G.z_dim), y=y), y
    return _load_files(p, n), None


def _load_files(p: Path, n: int) -> torch.Tensor:
    if p.is_dir():
        from PIL import Image
        files = sorted(f for f in p.rglob("*") if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
        if not files:
            raise GankitError(f"{p}: no images (PNG, JPEG, BMP, WebP) and no generator.safetensors in it")
        if len(files) < n:
            raise GankitError(f"{p}: {len(files)} images, fewer than the {n} asked (--n)")
        arrays, mode = [], None
        for f in files[:n]:
            try:
                with Image.open(f) as im:
                    if mode is None:  # the first image decides: grayscale stays 1 channel, colour is RGB
                        mode = "L" if im.mode in ("1", "L", "LA", "I", "I;16", "F") else "RGB"
                    arrays.append(np.asarray(im.convert(mode)))
            except Exception as e:
                raise GankitError(f"{f}: cannot read image ({type(e).__name__})") from None
        if len({a.shape for a in arrays}) > 1:
            raise GankitError(f"{p}: images of different sizes ({sorted({a.shape for a in arrays})[:3]}); "
                              f"metrics need one size")
        x = torch.from_numpy(np.stack(arrays))
        return to_float(x[:, None] if mode == "L" else x.permute(0, 3, 1, 2).contiguous())
    if p.suffix in (".npy", ".pt"):
        x = (torch.from_numpy(np.load(p, allow_pickle=False)) if p.suffix == ".npy"
             else torch.load(p, map_location="cpu", weights_only=True))
        if not isinstance(x, torch.Tensor):
            raise GankitError(f"{p}: holds a {type(x).__name__}, not a tensor")
        if x.ndim == 3:
            x = x[:, None]
        if len(x) < n:
            raise GankitError(f"{p}: {len(x)} images, fewer than the {n} asked (--n)")
        x = x[:n]
        if x.dtype == torch.uint8:
            return to_float(x.clone())
        x = x.float()
        if torch.isfinite(x).all() and (x.min() < -1.001 or x.max() > 1.001):
            raise GankitError(f"{p}: float images must lie in [-1, 1] (got {x.min():.3g}..{x.max():.3g}); "
                              f"save uint8 in [0, 255] otherwise")
        return x
    raise GankitError(f"{p}: not a run folder, generator.safetensors, image folder, .npy or .pt file")


# ---- reference features, cached ---------------------------------------------------------------
def _folder_split(data_root: str | None, split: str, n: int, shape: tuple[int, int]) -> tuple[torch.Tensor, str]:
    """A folder has no test split: 'test' is n images of a fixed shuffle of it, 'train' the next
    n, so the real-data floor compares two disjoint halves. Returns (images, folder key)."""
    from ..folder import cache_key, find_images, load_folder
    channels, size = shape
    x = torch.from_numpy(load_folder(data_root, size, channels, say=lambda m: None, progress=False))
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    part = order[:n] if split == "test" else order[n:2 * n]
    if len(part) < n:
        raise GankitError(f"{data_root}: {len(x)} readable images, too few for {n} {split} images "
                          f"({'n' if split == 'test' else '2n'} needed); lower --n")
    root = Path(data_root).expanduser()
    return x[part], cache_key(root, find_images(root), size, channels)


def reference_features(dataset: str, split: str, n: int, embed_fn, card: dict,
                       data_root: str | None = None, shape: tuple[int, int] = (3, 64)) -> tuple[torch.Tensor, torch.Tensor]:
    """Features and probabilities of the first n images of a split, cached under a hash of
    (dataset, split, evaluator sha256, n). For dataset 'folder' (the images under data_root,
    decoded at shape = (channels, size)) the key also holds the folder's contents."""
    x, folder_key = None, ""
    if dataset == "folder":
        x, folder_key = _folder_split(data_root, split, n, shape)
    key = hashlib.sha256(f"{dataset}|{split}|{card['sha256']}|{n}|{folder_key}".encode()).hexdigest()[:16]
    path = cache_root("reference") / f"{dataset}-{split}-{n}-{key}.pt"
    if path.exists():
        cached = torch.load(path, weights_only=True)
        return cached["features"], cached["probs"]
    if x is None:
        x, _ = load_split(dataset, split, data_root)
    if len(x) < n:
        raise GankitError(f"{dataset} {split} has {len(x)} images, fewer than n={n}")
    feats, probs = embed_fn(to_float(x[:n]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"features": feats, "probs": probs}, tmp)
    return feats, probs


# ---- the metrics ------------------------------------------------------------------------------
def score_features(feats: torch.Tensor, probs: torch.Tensor, ref_feats: torch.Tensor, tag: str,
                   names=METRICS, labels: torch.Tensor | None = None, ref_labels: torch.Tensor | None = None) -> dict:
    """Every asked metric of (feats, probs) against reference features, keyed `<metric>_<tag>`.
    With the classes the samples were made for (`labels`, a conditional G), also the class
    accuracy and, with the reference images' `ref_labels`, the FID per class."""
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise GankitError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    out = {}
    if "fid" in names:
        out[f"fid_{tag}"] = scores.fid(feats, ref_feats)
    if "kid" in names:
        out[f"kid_{tag}"], out[f"kid_{tag}_std"] = scores.kid(feats, ref_feats)
    if "is" in names:
        out[f"is_{tag}"], out[f"is_{tag}_std"] = scores.inception_score(probs)
    if "precision" in names or "recall" in names:
        out[f"precision_{tag}"], out[f"recall_{tag}"] = scores.precision_recall(ref_feats, feats)
    if "density" in names or "coverage" in names:
        out[f"density_{tag}"], out[f"coverage_{tag}"] = scores.density_coverage(ref_feats, feats)
    if "classes" in names:
        hist = scores.class_histogram(probs)
        out[f"class_entropy_{tag}"] = hist["class_entropy"]
        out[f"rarest_class_share_{tag}"] = hist["rarest_class_share"]
        out[f"class_shares_{tag}"] = hist["class_shares"]
    if labels is not None:
        out.update({f"{k}_{tag}": v for k, v in scores.class_scores(feats, probs, labels, ref_feats, ref_labels).items()})
    return out


def _feature_network(reference: str, inception_weights: str | None, device):
    """(embed function, a card with a sha256 naming the network, the metric-name prefix)."""
    if inception_weights:
        from .inception import embed_inception, load_inception
        model = load_inception(inception_weights, device)
        return (lambda x: embed_inception(model, x)), {"sha256": sha256_file(Path(inception_weights))}, "inception"
    if reference == "folder":
        raise GankitError("an image folder has no evaluator of its own: score it with Inception features "
                          "(--inception-weights PATH, torch-fidelity's pt_inception-2015-12-05 weights)")
    model, card = load_evaluator(reference, device)
    return (lambda x: embed(model, x)), card, SHORT_NAMES.get(reference, reference)


def compute_metrics(source, reference: str = "fashion-mnist", names=METRICS, n: int = DEFAULT_N, seed: int = 0,
                    ema: bool | None = None, split: str = "test", data_root: str | None = None,
                    device: str = "cpu", inception_weights: str | None = None,
                    labels: torch.Tensor | None = None) -> dict:
    """Score n images from `source` (run folder, generator file, PNG folder, .npy/.pt tensor)
    against the first n images of `reference`'s `split`, with that dataset's evaluator, or with
    Inception-v3 features when `inception_weights` is given (names then read `fid_inception10k`).
    Images of a conditional generator (or a tensor given with the `labels` it was made for) are
    also scored per class."""
    embed_fn, card, net = _feature_network(reference, inception_weights, device)
    x, y = (source, labels) if isinstance(source, torch.Tensor) else load_labelled_images(source, n, seed, ema, device)
    ref_feats, _ = reference_features(reference, split, n, embed_fn, card, data_root, (x.shape[1], x.shape[-1]))
    feats, probs = embed_fn(x)
    ref_labels = load_split(reference, split, data_root)[1][:n] if y is not None and reference != "folder" else None
    return score_features(feats, probs, ref_feats, protocol(reference, n, net), names, labels=y, ref_labels=ref_labels)


def real_floor(reference: str = "fashion-mnist", names=METRICS, n: int = DEFAULT_N,
               data_root: str | None = None, device: str = "cpu", inception_weights: str | None = None,
               shape: tuple[int, int] = (3, 64)) -> dict:
    """The same metrics for n real training images against n test images: the best a perfect
    generator can expect under this protocol. It depends on the data and the feature network
    alone, so it is cached like the reference features (a k-NN pass over 2 x n features saved)."""
    embed_fn, card, net = _feature_network(reference, inception_weights, device)
    folder_key = ""
    if reference == "folder":
        from ..folder import cache_key, find_images
        root = Path(data_root).expanduser()
        folder_key = cache_key(root, find_images(root), shape[1], shape[0])
    names = sorted(set(names))
    key = hashlib.sha256(f"{reference}|floor|{card['sha256']}|{n}|{folder_key}|{names}".encode()).hexdigest()[:16]
    path = cache_root("reference") / f"{reference}-floor-{n}-{key}.json"
    tag = protocol(reference, n, net)
    if path.exists():
        floor = json.loads(path.read_text())
    else:
        ref_feats, _ = reference_features(reference, "test", n, embed_fn, card, data_root, shape)
        feats, probs = reference_features(reference, "train", n, embed_fn, card, data_root, shape)
        floor = score_features(feats, probs, ref_feats, tag, names)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(floor))
    if reference != "folder" and not inception_weights:  # the evaluator's accuracy on the labelled test images
        _, test_probs = reference_features(reference, "test", n, embed_fn, card, data_root, shape)
        test_labels = load_split(reference, "test", data_root)[1][:n]
        floor[f"class_accuracy_{tag}"] = float((test_probs.argmax(1) == test_labels).double().mean())
    return floor


def make_judge(dataset: str, n: int, seed: int, z_dim: int, device, data_root: str | None = None):
    """For evaluation during training: a function G -> metrics of n samples from fixed z (drawn
    from `seed`) against n test images, with `.tag` naming the protocol; None when the dataset
    has no evaluator. `.score(images)` scores images made elsewhere (from `.z`, e.g. gathered
    from several ranks). The reference features are computed (or read from cache) once, here."""
    from ..conditional import balanced_labels
    from ..latent import generate, z_from_seed
    try:
        model, card = load_evaluator(dataset, device)
    except GankitError:
        return None
    ref_feats, _ = reference_features(dataset, "test", n, lambda x: embed(model, x), card, data_root)
    z = z_from_seed(seed, n, z_dim)
    tag = protocol(dataset, n)
    ref_labels = None

    def judge(G) -> dict:
        """A conditional G makes every class equally often (balanced_labels), and is scored per class too."""
        y = balanced_labels(n, G.num_classes) if G.num_classes else None
        return judge.score(generate(G, z, y=y), y)

    def score(images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        nonlocal ref_labels
        if labels is not None and ref_labels is None:
            ref_labels = load_split(dataset, "test", data_root)[1][:n]
        return score_features(*embed(model, images), ref_feats, tag, labels=labels, ref_labels=ref_labels)

    judge.score, judge.tag, judge.z = score, tag, z
    return judge
