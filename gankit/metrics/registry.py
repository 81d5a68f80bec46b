"""The metrics by name: each entry maps the features of one evaluation (`Feats`: samples, their
class probabilities, reference images, training images) and the protocol tag to its scores keyed
`<metric>_<tag>`. Metrics computed together (precision, recall, density and coverage, from the same
nearest-neighbour distances) share one function, which runs once."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import GankitError
from . import scores
from .evaluator import SHORT_NAMES

DEFAULT_N = 10000  # samples and reference images of `gankit eval` (the fmnist10k protocol)

@dataclass
class Feats:
    """What the metrics of one evaluation read: features of the samples and their class
    probabilities, features of the reference (held-out) images and, for memorisation, of the
    images the generator was trained on (None: not known, and memorisation is not scored) and of
    the real images it was not trained on that memorisation holds them against (None: the reference)."""
    samples: torch.Tensor
    probs: torch.Tensor
    ref: torch.Tensor
    train: torch.Tensor | None = None
    heldout: torch.Tensor | None = None


Metric = Callable[[Feats, str], dict]


def _fid(f: Feats, tag: str) -> dict:
    return {f"fid_{tag}": scores.fid(f.samples, f.ref)}


def _kid(f: Feats, tag: str) -> dict:
    kid, std = scores.kid(f.samples, f.ref)  # (std: None from one subset, n <= 1,000: no ± to show)
    return {f"kid_{tag}": kid} | ({f"kid_{tag}_std": std} if std is not None else {})


def _is(f: Feats, tag: str) -> dict:
    value, std = scores.inception_score(f.probs)
    return {f"is_{tag}": value, f"is_{tag}_std": std}


def _manifold(f: Feats, tag: str) -> dict:
    """Precision and recall (k = 3), density and coverage (k = 5), from shared distances."""
    return {f"{name}_{tag}": value for name, value in scores.manifold_scores(f.ref, f.samples).items()}


def _classes(f: Feats, tag: str) -> dict:
    hist = scores.class_histogram(f.probs)
    return {f"class_entropy_{tag}": hist["class_entropy"], f"rarest_class_share_{tag}": hist["rarest_class_share"],
            f"class_shares_{tag}": hist["class_shares"]}


def _memorisation(f: Feats, tag: str) -> dict:
    if f.train is None:
        return {}
    share, threshold = scores.memorisation(f.train, f.ref if f.heldout is None else f.heldout, f.samples)
    return {f"memorised_{tag}": share, f"memorised_{tag}_threshold": threshold}


METRICS: dict[str, Metric] = {
    "fid": _fid,  # Fréchet distance of Gaussian fits (Heusel et al. 2017)
    "kid": _kid,  # kernel inception distance, unbiased MMD (Bińkowski et al. 2018), with its std over subsets
    "is": _is,  # inception score (Salimans et al. 2016) on the evaluator's class probabilities
    "precision": _manifold,  # k-NN precision and recall (Kynkäänniemi et al. 2019)
    "recall": _manifold,
    "density": _manifold,  # density and coverage (Naeem et al. 2020): the four from shared distances
    "coverage": _manifold,
    "classes": _classes,  # entropy of the predicted-class histogram, share of the rarest class
    "memorisation": _memorisation,  # share of samples nearer a training image than 95 % of held-out images are
}

# How tables name each score (score_features' keys without the protocol tag), in table order.
LABELS = {"fid": "FID", "kid": "KID", "is": "IS", "precision": "precision", "recall": "recall",
          "density": "density", "coverage": "coverage", "class_entropy": "class entropy",
          "rarest_class_share": "rarest class", "class_accuracy": "class accuracy",
          "memorised": "memorised"}


def score_features(feats: torch.Tensor, probs: torch.Tensor, ref_feats: torch.Tensor, tag: str,
                   names=tuple(METRICS), labels: torch.Tensor | None = None,
                   ref_labels: torch.Tensor | None = None, train_feats: torch.Tensor | None = None,
                   heldout_feats: torch.Tensor | None = None) -> dict:
    """Every asked metric of (feats, probs) against reference features, keyed `<metric>_<tag>`.
    With the classes the samples were made for (`labels`, a conditional G), also the class
    accuracy and, with the reference images' `ref_labels`, the FID per class. Memorisation is
    scored when the training images' features (`train_feats`) are given, against `heldout_feats`
    (default: the reference's)."""
    unknown = sorted(set(names) - set(METRICS))
    if unknown:
        raise GankitError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    out: dict = {}
    f = Feats(feats, probs, ref_feats, train_feats, heldout_feats)
    for fn in dict.fromkeys(METRICS[name] for name in METRICS if name in names):  # (each function once, in order)
        out.update(fn(f, tag))
    if labels is not None:
        out.update({f"{k}_{tag}": v for k, v in scores.class_scores(feats, probs, labels, ref_feats, ref_labels).items()})
    return out


def protocol(dataset: str, n: int, net: str | None = None) -> str:
    """`fmnist10k` for 10,000 samples scored with the Fashion-MNIST evaluator; `inception10k`
    with Inception features (net='inception')."""
    return (net or SHORT_NAMES.get(dataset, dataset)) + (f"{n // 1000}k" if n % 1000 == 0 else str(n))
