"""Sample quality as a library: `compute_metrics(source, reference, names, n)`, `real_floor`, and the
`Judge` of in-training evaluations; `gankit eval` and `gankit compare` are thin shells over them.

Features and class probabilities come from the dataset's evaluator (evaluator.py) or Inception-v3
(inception.py); the metrics are a registry of functions by name (registry.py, scores.py); the images
come from sources.py and the reference features, cached, from reference.py. Metric names carry the
feature network and the sample count (`fid_fmnist10k`), so numbers from different protocols never mix.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..data import load_split
from ..data.folder import cache_key, find_images
from ..files import atomic_write_text, cache_root
from . import scores
from .evaluator import FEATURE_DIM
from .judge import Judge, make_judge
from .reference import feature_network, folder_training_features, reference_features, training_features
from .registry import DEFAULT_N, LABELS, METRICS, protocol, score_features
from .reference import reference_size
from .sources import estimate_bytes, load_images, load_labelled_images, source_shape, training_set

__all__ = ["DEFAULT_N", "Judge", "LABELS", "METRICS", "compute_metrics", "default_metrics", "feature_network", "load_images",
           "load_labelled_images", "make_judge", "protocol", "real_floor", "reference_features", "reference_size",
           "save_results", "score_features", "scores", "estimate_bytes", "source_shape", "training_set"]


def default_metrics(n: int, inception: bool = False) -> list[str]:
    """The metrics scored when none are named: all of them, but FID where n samples leave it undefined
    (n at most the evaluator's feature dimensions, as a folder of under 258 images needs for its
    floor); KID, unbiased at any n, measures the distance there."""
    return [m for m in METRICS if m != "fid" or inception or n > FEATURE_DIM]


def compute_metrics(source, reference: str = "fashion-mnist", names=tuple(METRICS), n: int = DEFAULT_N, seed: int = 0,
                    ema: bool | None = None, split: str = "test", data_root: str | None = None,
                    device: str = "cpu", inception_weights: str | None = None,
                    labels: torch.Tensor | None = None, evaluator: str | None = None,
                    trained_on: tuple[str, torch.Tensor | None] | None = None) -> dict:
    """Score n images from `source` (run folder, generator file, PNG folder, .npy/.pt tensor)
    against the first n images of `reference`'s `split`, with that dataset's evaluator, or with
    Inception-v3 features when `inception_weights` is given (names then read `fid_inception10k`).
    Images of a conditional generator (or a tensor given with the `labels` it was made for) are
    also scored per class. Memorisation is scored for a generator trained on `reference`'s IDX
    training split (or its --subset, read from the run folder; for a tensor source, `trained_on`:
    training_set() of the generator that made it), against the held-out `split`; for a folder
    (reference 'folder', its evaluator named by `evaluator`), for a run trained on a --subset of
    that same folder, against the images the subset left out."""
    embed_fn, card, net = feature_network(reference, inception_weights, device, evaluator)
    x, y = (source, labels) if isinstance(source, torch.Tensor) else load_labelled_images(source, n, seed, ema, device)[:2]
    ref_feats, _ = reference_features(reference, split, n, embed_fn, card, data_root, (x.shape[1], x.shape[-1]))
    feats, probs = embed_fn(x)
    ref_labels = load_split(reference, split, data_root)[1][:n] if y is not None and reference != "folder" else None
    if trained_on is None and "memorisation" in names and split != "train":
        trained_on = training_set(source)
    train_feats = heldout = None
    if trained_on is not None and trained_on[0] == reference and "memorisation" in names:
        if reference != "folder":  # held out: the test split, the reference
            train_feats = training_features(reference, embed_fn, card, data_root, trained_on[1])
        elif trained_on[1] is not None and _same_folder(trained_on, data_root):  # held out: what --subset left out
            train_feats, heldout = folder_training_features(data_root, trained_on[1], embed_fn,
                                                            (x.shape[1], x.shape[-1]), trained_on.images_sha256)
    return score_features(feats, probs, ref_feats, protocol(reference, n, net), names, labels=y, ref_labels=ref_labels,
                          train_feats=train_feats, heldout_feats=heldout)


def _same_folder(trained_on, data_root: str | None) -> bool:
    return bool(data_root) and trained_on.data_root == str(Path(data_root).expanduser().resolve())


def real_floor(reference: str = "fashion-mnist", names=tuple(METRICS), n: int = DEFAULT_N,
               data_root: str | None = None, device: str = "cpu", inception_weights: str | None = None,
               shape: tuple[int, int] = (3, 64), evaluator: str | None = None) -> dict:
    """The same metrics for n real training images against n test images: the best a perfect
    generator can expect under this protocol. It depends on the data and the feature network
    alone, so it is cached like the reference features (a k-NN pass over 2 x n features saved)."""
    embed_fn, card, net = feature_network(reference, inception_weights, device, evaluator)
    folder_key = ""
    if reference == "folder":
        root = Path(data_root).expanduser()
        folder_key = cache_key(root, find_images(root), shape[1], shape[0])
    names = sorted(set(names) - {"memorisation"})  # (real training images are the training set: no floor)
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


def save_results(path: Path, key: str, results: dict) -> None:
    """Merge `results` under `key` into a metrics file (metrics.json; atomic, other keys are kept)."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = results
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
