"""Projecting real images into z (GAN inversion; Creswell & Bharath 2016, Lipton & Tripathi 2017):
find the z whose G(z) looks most like a given image, so that the image can be edited like a sample.

For each image: the best few of a shared pool of random z (for a conditional G, with classes) start
`restarts` searches; each optimises z with Adam on the pixel error, plus the distance between the
evaluator's features of G(z) and of the image (a perceptual loss that works offline), plus a
Gaussian prior on z that keeps it where G was trained; the best search wins. All images and
restarts are optimised together in one batch (G in eval mode: each image depends on its own z
only). The reconstruction is then drawn exactly as `gankit sample --z` draws it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import to_float
from ..data.folder import EXTENSIONS
from ..data.images import UNREADABLE, open_image
from ..errors import GankitError
from ..sample import generate, z_from_seed


@dataclass
class Inversion:
    """What inverting N images found: z (N, z_dim), the class of each for a conditional G (else
    None), the reconstructions (N, C, H, W) in [-1, 1], and per image the pixel MSE (in [0, 1]
    image units), the evaluator-feature distance and whether the evaluator gives input and
    reconstruction the same class (both None without an evaluator)."""
    z: torch.Tensor
    y: torch.Tensor | None
    images: torch.Tensor
    pixel_mse: torch.Tensor
    feature_distance: torch.Tensor | None
    same_class: torch.Tensor | None


def _loss(G, z, y, x, feats_x, features, feature_weight: float, prior_weight: float) -> torch.Tensor:
    """Per-row loss of G(z[, y]) against x: pixel MSE + feature distance² + prior."""
    out = G(z) if y is None else G(z, y)
    loss = (out - x).square().flatten(1).mean(1)
    if features is not None and feature_weight > 0:
        loss = loss + feature_weight * (features(out) - feats_x).square().mean(1)
    return loss + prior_weight * z.square().mean(1)


def _starts(G, x, feats_x, features, restarts: int, pool: int, seed: int, feature_weight: float):
    """(z (N * restarts, z_dim), y or None): for each image the `restarts` best of a shared pool of
    random z (for a conditional G, the classes in turn: pool // K of them per class, so the pool
    costs the same whatever K is)."""
    K = getattr(G, "num_classes", 0)
    z_pool = z_from_seed(seed, pool, G.z_dim)
    y_pool = torch.arange(pool) % K if K else None
    device = next(G.parameters()).device
    with torch.no_grad():
        ims = generate(G, z_pool, y=y_pool)  # (P, C, H, W) on the CPU
        cost = torch.cdist(x.flatten(1).cpu(), ims.flatten(1)).square() / x[0].numel()  # (N, P) pixel MSE
        if features is not None and feature_weight > 0:
            f_pool = torch.cat([features(c.to(device)).cpu() for c in ims.split(512)])
            cost = cost + feature_weight * torch.cdist(feats_x.cpu(), f_pool).square() / f_pool.shape[1]
    best = cost.topk(min(restarts, len(z_pool)), dim=1, largest=False).indices.flatten()  # (N * restarts,)
    return z_pool[best].to(device), (y_pool[best].to(device) if K else None)


def invert(G, x: torch.Tensor, evaluator=None, iterations: int = 100, restarts: int = 2, pool: int = 2048,
           lr: float = 0.1, feature_weight: float = 1.0, prior_weight: float = 0.01, seed: int = 0,
           batch: int = 256) -> Inversion:
    """Project images x (N, C, H, W) in [-1, 1], G's image shape, into z. `evaluator` (a gankit
    Evaluator, or None for pixels alone) gives the perceptual features and judges the classes."""
    G.eval()
    G.requires_grad_(False)
    device = next(G.parameters()).device
    features = None
    if evaluator is not None:
        evaluator.eval().requires_grad_(False).to(device)
        features = evaluator.features
    zs, ys = [], []
    for xb in x.split(batch):
        xb = xb.to(device).float()
        with torch.no_grad():
            feats_x = features(xb) if features is not None else None
        z0, y = _starts(G, xb, feats_x, features, restarts, pool, seed, feature_weight)
        R = len(z0) // len(xb)
        x_rep = xb.repeat_interleave(R, 0)
        f_rep = feats_x.repeat_interleave(R, 0) if feats_x is not None else None
        z = z0.clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=lr)
        for i in range(iterations):
            for group in opt.param_groups:  # cosine decay: large moves first, fine ones at the end
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / iterations))
            loss = _loss(G, z, y, x_rep, f_rep, features, feature_weight, prior_weight)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        with torch.no_grad():
            final = _loss(G, z, y, x_rep, f_rep, features, feature_weight, prior_weight).view(len(xb), R)
            pick = final.argmin(1) + torch.arange(len(xb), device=device) * R
        zs.append(z.detach()[pick].cpu())
        ys.append(y[pick].cpu() if y is not None else None)
    z = torch.cat(zs)
    y = torch.cat(ys) if ys[0] is not None else None
    return score(G, x, z, y, evaluator)


@torch.no_grad()
def score(G, x: torch.Tensor, z: torch.Tensor, y: torch.Tensor | None, evaluator=None) -> Inversion:
    """The reconstructions G(z[, y]) of images x and how close they are."""
    rec = generate(G, z, y=y)
    mse = (rec - x.cpu()).square().flatten(1).mean(1) / 4  # [-1, 1] -> [0, 1] image units
    dist = same = None
    if evaluator is not None:
        device = next(evaluator.parameters()).device
        fx, fr = (torch.cat([evaluator.features(c.to(device)).cpu() for c in t.split(512)]) for t in (x, rec))
        dist = (fx - fr).norm(dim=1)
        same = evaluator.head(fx.to(device)).argmax(1).cpu() == evaluator.head(fr.to(device)).argmax(1).cpu()
    return Inversion(z, y, rec, mse, dist, same)


@torch.no_grad()
def best_random(G, x: torch.Tensor, evaluator, n: int = 10000, seed: int = 1) -> Inversion:
    """The baseline: for each image the one of n random z whose G(z) is nearest in evaluator
    features (pixels without an evaluator)."""
    z_pool = z_from_seed(seed, n, G.z_dim)
    K = getattr(G, "num_classes", 0)
    y_pool = torch.arange(n) % K if K else None
    ims = generate(G, z_pool, y=y_pool)
    if evaluator is not None:
        device = next(evaluator.parameters()).device
        f = lambda t: torch.cat([evaluator.features(c.to(device)).cpu() for c in t.split(512)])
        f_pool = f(ims)
        best = torch.cat([torch.cdist(c, f_pool).argmin(1) for c in f(x).split(1024)])
    else:
        best = torch.cat([torch.cdist(c.flatten(1), ims.flatten(1)).argmin(1) for c in x.split(1024)])
    return score(G, x, z_pool[best], y_pool[best] if K else None, evaluator)


def read_images(paths: list[str], shape: tuple[int, int, int]) -> tuple[torch.Tensor, list[str]]:
    """Image files (or folders of them) as (N, C, H, W) in [-1, 1], converted to `shape`: grayscale
    or RGB as G makes, centre-cropped to a square and resized. One line for what cannot be read."""
    files: list[Path] = []
    for spec in paths:
        p = Path(spec)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.suffix.lower() in EXTENSIONS and f.is_file())
            if not found:
                raise GankitError(f"{p}: no images in this folder ({', '.join(EXTENSIONS)})")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise GankitError(f"{p}: no such image file or folder")
    C, H, W = shape
    out = []
    for f in files:
        try:
            with open_image(f) as im:
                im = im.convert("L" if C == 1 else "RGB")
                side = min(im.size)
                left, top = (im.width - side) // 2, (im.height - side) // 2
                im = im.crop((left, top, left + side, top + side)).resize((W, H), Image.Resampling.BICUBIC)
                a = np.asarray(im, dtype=np.uint8)
        except UNREADABLE as e:
            raise GankitError(f"{f}: not an image that can be read ({type(e).__name__})") from None
        out.append(torch.from_numpy(a.copy()).reshape(H, W, C).permute(2, 0, 1))
    return to_float(torch.stack(out)), [str(f) for f in files]
