"""The judge of in-training evaluations: n samples from fixed z against n test images, with the
reference features computed (or read from cache) once, when it is made."""
from __future__ import annotations

import torch

from ..data import load_split
from ..errors import GankitError
from ..sample import balanced_labels, generate, z_from_seed
from .evaluator import embed, load_evaluator
from .reference import reference_features
from .registry import protocol, score_features


class Judge:
    """`judge(G)` scores n samples of G from the fixed z (`.z`, drawn from `seed`); `.score(images)`
    scores images made elsewhere from `.z` (e.g. gathered from several ranks); `.tag` names the
    protocol (fmnist5k). A conditional G makes every class equally often and is scored per class too."""

    def __init__(self, model, card: dict, dataset: str, n: int, seed: int, z_dim: int, data_root: str | None = None):
        self.model, self.dataset, self.n, self.data_root = model, dataset, n, data_root
        self.ref_feats, _ = reference_features(dataset, "test", n, lambda x: embed(self.model, x), card, data_root)
        self.z = z_from_seed(seed, n, z_dim)
        self.tag = protocol(dataset, n)
        self.ref_labels: torch.Tensor | None = None  # the test images' classes, read when first needed

    def __call__(self, G) -> dict:
        y = balanced_labels(self.n, G.num_classes) if G.num_classes else None
        return self.score(generate(G, self.z, y=y), y)

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        if labels is not None and self.ref_labels is None:
            self.ref_labels = load_split(self.dataset, "test", self.data_root)[1][:self.n]
        return score_features(*embed(self.model, images), self.ref_feats, self.tag, labels=labels,
                              ref_labels=self.ref_labels)


def make_judge(dataset: str, n: int, seed: int, z_dim: int, device, data_root: str | None = None) -> Judge | None:
    """The Judge of a dataset, or None when the dataset has no evaluator."""
    try:
        model, card = load_evaluator(dataset, device)
    except GankitError:
        return None
    return Judge(model, card, dataset, n, seed, z_dim, data_root)
