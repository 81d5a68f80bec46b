"""Sample-quality scores on feature vectors and class probabilities.

- FID: Fréchet distance between Gaussians fitted to two feature sets (Heusel et al. 2017).
- KID: unbiased MMD^2 with the cubic polynomial kernel, mean and std over subsets
  (Binkowski et al. 2018).
- IS: exp(E_x KL(p(y|x) || p(y))), mean and std over splits (Salimans et al. 2016).
- Precision / recall: k-NN manifold estimates, k = 3 (Kynkäänniemi et al. 2019).
- Density / coverage: Naeem et al. 2020, k = 5.
- Class histogram: the share of each predicted class, its entropy and the rarest class's share.

All functions take float64-able tensors on the CPU and return Python floats.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy import linalg

from ..errors import GankitError


def _check(name: str, x: torch.Tensor, min_rows: int = 2) -> torch.Tensor:
    if x.ndim != 2:
        raise GankitError(f"{name}: expected a (N, D) feature matrix, got shape {tuple(x.shape)}")
    if len(x) < min_rows:
        raise GankitError(f"{name}: needs at least {min_rows} samples, got {len(x)}")
    if not torch.isfinite(x).all():
        raise GankitError(f"{name}: features hold non-finite values (nan or inf)")
    return x.double()


def gaussian_stats(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of (N, D) features. FID needs N > D for a full-rank covariance."""
    f = _check("FID", features, 2)
    n, d = f.shape
    if n <= d:
        raise GankitError(f"FID: {n} samples for {d}-dimensional features; the covariance needs more "
                          f"samples than dimensions (use n >= {d + 1}, ideally 10k)")
    mu = f.mean(0)
    fc = f - mu
    return mu.numpy(), (fc.T @ fc / (n - 1)).numpy()


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), as in the reference TTUR code."""
    diff = mu1 - mu2
    with warnings.catch_warnings():  # scipy warns of a singular product; the check below handles it
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():  # near-singular product: regularise as the reference does
            offset = np.eye(sigma1.shape[0]) * 1e-6
            covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(feat_a: torch.Tensor, feat_b: torch.Tensor) -> float:
    return frechet_distance(*gaussian_stats(feat_a), *gaussian_stats(feat_b))


def kid(feat_a: torch.Tensor, feat_b: torch.Tensor, subsets: int = 50, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float | None]:
    """Unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3 over random subsets: (mean, std). When a subset
    would be the whole of both sets (n <= subset_size) there is one value and no spread: std None."""
    a, b = _check("KID", feat_a), _check("KID", feat_b)
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    g = torch.Generator().manual_seed(seed)
    whole = m == len(a) == len(b)  # every "subset" is the same two sets: one measurement
    vals = []
    for _ in range(1 if whole else subsets):
        x = a[torch.randperm(len(a), generator=g)[:m]]
        y = b[torch.randperm(len(b), generator=g)[:m]]
        kxx = (x @ x.T / d + 1) ** 3
        kyy = (y @ y.T / d + 1) ** 3
        kxy = (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
               + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
        vals.append(mmd.item())
    return float(np.mean(vals)), None if whole else float(np.std(vals))


def inception_score(probs: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """IS from class probabilities (N, K): mean and std over `splits` equal parts."""
    p = _check("IS", probs, splits).clamp_min(1e-12)
    scores = []
    for part in p.chunk(splits):
        py = part.mean(0, keepdim=True)
        kl = (part * (part.log() - py.log())).sum(1).mean()
        scores.append(math.exp(kl.item()))
    return float(np.mean(scores)), float(np.std(scores))


CHUNK = 2048  # rows per distance block: 2048 x 10k float32 distances are 80 MB


def _kth_nn_radii(x: torch.Tensor, ks: tuple[int, ...]) -> list[torch.Tensor]:
    """For each k of ks, the distance from each row of x to its k-th nearest other row, from one pass
    over the distances. (The max(ks) + 1 smallest by topk: the same values as kthvalue, and faster
    on a CPU for the small k used here.)"""
    parts = [torch.cdist(c, x).topk(max(ks) + 1, dim=1, largest=False).values for c in x.split(CHUNK)]
    return [torch.cat([v[:, k] for v in parts]) for k in ks]  # (k + 1: the row itself is at 0)


def _kth_nn_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    return _kth_nn_radii(x, (k,))[0]


def _inside(points: torch.Tensor, centres: torch.Tensor, radii: list[torch.Tensor]):
    """For each set of balls (centres, radii[j]), from one pass over the distances: for each point,
    how many of the balls hold it, and for each ball, whether any point is in it."""
    per_point = [[] for _ in radii]
    any_point = [torch.zeros(len(centres), dtype=torch.bool) for _ in radii]
    for c in points.split(CHUNK):
        d = torch.cdist(c, centres)
        for j, r in enumerate(radii):
            inside = d <= r[None, :]
            per_point[j].append(inside.sum(1))
            any_point[j] |= inside.any(0)
    return [(torch.cat(p), a) for p, a in zip(per_point, any_point)]


def _inside_counts(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each point, how many balls (centres, radii) hold it; for each ball, whether any point is in it."""
    return _inside(points, centres, [radii])[0]


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """Precision: share of fakes inside the real manifold (union of k-NN balls of reals);
    recall: share of reals inside the fake manifold (Kynkäänniemi et al. 2019)."""
    s = manifold_scores(real, fake, k_pr=k, k_dc=None)
    return s["precision"], s["recall"]


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int = 5) -> tuple[float, float]:
    """Density: mean number of real k-NN balls holding each fake, over k; coverage: share of real
    balls holding at least one fake (Naeem et al. 2020)."""
    s = manifold_scores(real, fake, k_pr=None, k_dc=k)
    return s["density"], s["coverage"]


def manifold_scores(real: torch.Tensor, fake: torch.Tensor, k_pr: int | None = 3, k_dc: int | None = 5) -> dict:
    """precision and recall (k_pr nearest neighbours), density and coverage (k_dc) together: the
    real-to-real and fake-to-real distances they share are computed once (the same values as each
    pair alone). None leaves a pair out."""
    ks = [k for k in (k_pr, k_dc) if k is not None]
    r = _check("precision/recall" if k_pr else "density/coverage", real, max(ks) + 1).float()
    f = _check("precision/recall" if k_pr else "density/coverage", fake, k_pr + 1 if k_pr else 1).float()
    real_radii = _kth_nn_radii(r, tuple(ks))
    inside = _inside(f, r, real_radii)  # (fakes in real balls: precision, density and coverage)
    out = {}
    if k_pr is not None:
        in_fake, _ = _inside_counts(r, f, _kth_nn_radius(f, k_pr))
        out |= {"precision": (inside[0][0] > 0).double().mean().item(), "recall": (in_fake > 0).double().mean().item()}
    if k_dc is not None:
        counts, covered = inside[-1]
        out |= {"density": counts.double().sum().item() / (k_dc * len(f)), "coverage": covered.double().mean().item()}
    return out


def class_histogram(probs: torch.Tensor) -> dict:
    """Share of each predicted class, its entropy (nats; log K when balanced) and the rarest
    class's share (0 when a mode is missing)."""
    p = _check("class histogram", probs, 1)
    counts = torch.bincount(p.argmax(1), minlength=p.shape[1]).double()
    share = counts / counts.sum()
    nz = share[share > 0]
    return {"class_shares": share.tolist(), "class_entropy": float(-(nz * nz.log()).sum()),
            "rarest_class_share": float(share.min())}


def class_scores(feats: torch.Tensor, probs: torch.Tensor, labels: torch.Tensor,
                 ref_feats: torch.Tensor | None = None, ref_labels: torch.Tensor | None = None) -> dict:
    """For samples made for known classes: the class accuracy (share of samples made for class c
    that the evaluator classifies as c), the same per class, and with labelled reference features
    the FID of each class's samples against that class's reference images (when every class has
    more samples than the features have dimensions)."""
    labels = labels.to(probs.device)
    right = (probs.argmax(1) == labels).double()
    K = probs.shape[1]
    per_class = [float(right[labels == c].mean()) if (labels == c).any() else float("nan") for c in range(K)]
    out = {"class_accuracy": float(right.mean()), "class_accuracy_per_class": per_class}
    d = feats.shape[1]
    if ref_feats is not None and ref_labels is not None and all(
            (labels == c).sum() > d and (ref_labels == c).sum() > d for c in range(K)):
        # (FID needs more samples than feature dimensions in every class; with fewer it is left out)
        out["fid_per_class"] = [fid(feats[labels == c], ref_feats[ref_labels == c]) for c in range(K)]
    return out


def nearest_distance(points: torch.Tensor, to: torch.Tensor, rows: int = 1024, cols: int = 1024) -> torch.Tensor:
    """(N,) Euclidean distance from each point to its nearest row of `to`, in blocks of rows x cols
    (10,000 x 60,000 distances never sit in memory at once; a block stays in the CPU's caches).
    The squared distances are torch.cdist's own matrix product (|a|^2 - 2 a.b + |b|^2 as one matmul
    of padded rows); the minimum is taken before cdist's clamp and square root, which keep order,
    so the root is taken N times, not N x M."""
    points, to = points.float(), to.float()
    ones = lambda x: torch.ones(len(x), 1, dtype=x.dtype, device=x.device)  # noqa: E731
    norms = lambda x: x.pow(2).sum(-1, keepdim=True)  # noqa: E731
    to_ = torch.cat([to, ones(to), norms(to)], -1)
    blocks = to_.split(cols)
    nearest = []
    for c in points.split(rows):
        c_ = torch.cat([c.mul(-2), norms(c), ones(c)], -1)
        nearest.append(torch.stack([c_.matmul(b.mT).amin(dim=1) for b in blocks], 1).amin(dim=1))
    return torch.cat(nearest).clamp_min_(1e-30).sqrt_()


def memorisation(train: torch.Tensor, heldout: torch.Tensor, samples: torch.Tensor,
                 quantile: float = 0.05) -> tuple[float, float]:
    """(share of samples that are near-copies of training images, the distance that decides it).
    A sample counts as a near-copy when its nearest training image (in evaluator features) is
    closer than `quantile` of held-out real images are to theirs: images the generator never saw
    set the line, so a generator that makes new images like the held-out ones scores about
    `quantile` (0.05), and one that copies its training images scores near 1."""
    train, heldout, samples = (_check(n, x) for n, x in (("train", train), ("held-out", heldout), ("samples", samples)))
    threshold = torch.quantile(nearest_distance(heldout, train), quantile)
    return float((nearest_distance(samples, train) < threshold).double().mean()), float(threshold)
