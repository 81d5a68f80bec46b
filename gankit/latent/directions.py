"""Directions in z that matter, found three ways, and what moving along them does.

- SeFa (Shen & Zhou 2021, "Closed-Form Factorization of Latent Semantics in GANs"): the
  eigenvectors of AᵀA, A the weight of G's first layer as it acts on z (a ConvTranspose from z:
  its (nz, C·k·k) kernel, transposed; an eval-mode BatchNorm right after it folds its scale into
  A), ranked by eigenvalue: the directions the first layer stretches most. Closed form, instant.
- PCA (GANSpace, Härkönen et al. 2020): principal components of G's activations after its first
  nonlinearity over many samples (before it, on a linear layer, PCA reduces to SeFa), each
  regressed back onto z: the z-direction that moves the activations along that component.
- class-guided (InterFaceGAN, Shen et al. 2020): a linear boundary in z between two classes as the
  evaluator sees G's images, fitted by least squares on samples of either class; its unit normal
  moves an image from one class toward the other.

Every direction is a unit vector of z's size. A `Directions` record says where it came from (run,
weights' sha256, method, z_dim), so a study never applies it to another generator.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import GankitError
from ..files import atomic_write_text
from ..sample import generate, z_from_seed

METHODS = ("sefa", "pca", "class")


@dataclass
class Directions:
    """k unit vectors in z (rows of `vectors`, ranked), with their scores and provenance."""
    vectors: torch.Tensor  # (k, z_dim)
    method: str
    scores: list[float]  # sefa: eigenvalue; pca: share of activation variance; class: boundary accuracy
    z_dim: int
    source: str = ""  # the run or generator they were found in
    fingerprint: str = ""  # of the generator's weights (gankit.export.weights_fingerprint)
    details: dict = field(default_factory=dict)  # the method's settings (n, classes, the class fixed)

    def record(self) -> dict:
        """What a directions file holds (vectors as lists: readable, and small: k x z_dim numbers)."""
        return {**{k: v for k, v in asdict(self).items() if k != "vectors"}, "vectors": self.vectors.tolist()}

    def save(self, path: str | Path, **extra) -> Path:
        """A JSON file of record() and `extra` (e.g. how the study was run)."""
        path = Path(path)
        atomic_write_text(path, json.dumps({**extra, **self.record(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                                           indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Directions":
        p = Path(path)
        try:
            record = json.loads(p.read_text())
            vectors = torch.tensor(record["vectors"], dtype=torch.float32)
            out = cls(vectors, record["method"], list(record["scores"]), int(record["z_dim"]), record.get("source", ""),
                      record.get("fingerprint", ""), record.get("details", {}))
        except FileNotFoundError:
            raise GankitError(f"{p}: no such directions file") from None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise GankitError(f"{p}: not a directions file of gankit ({type(e).__name__}: {e})") from None
        if vectors.ndim != 2 or vectors.shape[1] != out.z_dim or not torch.isfinite(vectors).all():
            raise GankitError(f"{p}: its vectors are not {out.z_dim}-long finite rows")
        return out

    def check_fits(self, G, path: str | Path = "directions") -> None:
        """Refuse directions found in another generator (another z size, or other weights)."""
        if self.z_dim != G.z_dim:
            raise GankitError(f"{path}: directions for z of size {self.z_dim}; this generator's z has {G.z_dim}")
        weights = getattr(G, "fingerprint", "")
        if self.fingerprint and weights and self.fingerprint != weights:
            raise GankitError(f"{path}: found in other weights ({self.source}); make directions for this run "
                              f"with gankit explore directions")

    def pick(self, k: int, path: str | Path = "directions") -> torch.Tensor:
        if not 0 <= k < len(self.vectors):
            raise GankitError(f"{path}: direction {k} out of range: the file holds {len(self.vectors)} "
                              f"(0..{len(self.vectors) - 1})")
        return self.vectors[k]


def read_direction(spec: str, G) -> tuple[torch.Tensor, str]:
    """'FILE:K' (a directions file and the index of one of its directions) -> (the unit vector, a
    label such as 'sefa #0'), checked against G's z size and weights."""
    path, sep, k = spec.rpartition(":")
    if not sep or not k.isdigit():
        raise GankitError(f"--direction {spec}: give FILE:K, e.g. directions.json:0 (K counts from 0)")
    found = Directions.load(path)
    found.check_fits(G, path)
    return found.pick(int(k), path), f"{found.method} #{k}"


def first_layer(G: nn.Module) -> tuple[nn.Module, nn.Module | None]:
    """(the first Linear or ConvTranspose2d of G, the BatchNorm right after it or None)."""
    mods = [m for m in G.modules() if not list(m.children())]
    for i, m in enumerate(mods):
        if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            return m, nxt if isinstance(nxt, (nn.BatchNorm1d, nn.BatchNorm2d)) else None
    raise GankitError("this generator has no Linear or ConvTranspose2d layer taking z")


def first_weight(G: nn.Module) -> torch.Tensor:
    """A (outputs, z_dim) matrix: G's first layer as a linear map of z (a conditional G's class
    inputs dropped), with an eval-mode BatchNorm's per-channel scale folded in."""
    layer, bn = first_layer(G)
    W = layer.weight.detach().float().cpu()
    if isinstance(layer, nn.Linear):  # (out, in)
        A = W[:, :G.z_dim]
        per_row = 1
    else:  # ConvTranspose2d: (in, out, k, k) -> (out * k * k, in)
        A = W[:G.z_dim].reshape(G.z_dim, -1).T
        per_row = W.shape[2] * W.shape[3]
    if bn is not None and len(bn.running_var) * per_row == A.shape[0]:
        scale = (bn.weight.detach().float().cpu() if bn.affine else 1) / torch.sqrt(bn.running_var.float().cpu() + bn.eps)
        A = A * scale.repeat_interleave(per_row)[:, None]
    return A


def sefa(G: nn.Module, k: int) -> Directions:
    """The top-k eigenvectors of AᵀA (A = first_weight(G)), ranked by eigenvalue."""
    A = first_weight(G).double()
    values, vectors = torch.linalg.eigh(A.T @ A)  # ascending
    order = values.argsort(descending=True)[:k]
    return Directions(vectors[:, order].T.float().contiguous(), "sefa", values[order].tolist(), G.z_dim)


@torch.no_grad()
def pca(G: nn.Module, k: int, n: int = 5000, seed: int = 0) -> Directions:
    """GANSpace: PCA of G's activations after its first nonlinearity over n samples; each of the top
    k components regressed onto z (least squares: z ≈ coords · B), its row of B normalised."""
    act = next((m for m in G.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))), None)
    if act is None:
        raise GankitError("pca directions need a nonlinearity in G (after which the activations are taken)")
    z = z_from_seed(seed, n, G.z_dim)
    seen: list[torch.Tensor] = []
    hook = act.register_forward_hook(lambda m, i, o: seen.append(o.detach().float().flatten(1).cpu()))
    try:
        generate(G, z)
    finally:
        hook.remove()
    Y = torch.cat(seen).double()
    Y = Y - Y.mean(0)
    _, S, V = torch.linalg.svd(Y, full_matrices=False)
    coords = Y @ V[:k].T  # (n, k)
    B = torch.linalg.lstsq(coords, z.double()).solution  # (k, z_dim)
    vectors = B / B.norm(dim=1, keepdim=True)
    share = (S[:k] ** 2 / (S ** 2).sum()).tolist()
    return Directions(vectors.float(), "pca", share, G.z_dim, details={"n": n, "seed": seed})


@torch.no_grad()
def class_direction(G: nn.Module, classify, a: int, b: int, n: int = 5000, seed: int = 0) -> Directions:
    """The unit normal of a least-squares boundary in z between the samples the evaluator calls
    class a (target -1) and class b (+1): moving along it turns a's into b's. `classify(images)`
    returns class probabilities. Its score is the boundary's accuracy on the other half of them."""
    if a == b:
        raise GankitError("--from and --to name the same class: a direction needs two")
    z = z_from_seed(seed, n, G.z_dim)
    pred = classify(generate(G, z)).argmax(1)
    keep = (pred == a) | (pred == b)
    if int((pred == a).sum()) < 10 or int((pred == b).sum()) < 10:
        raise GankitError(f"of {n} samples the evaluator calls {int((pred == a).sum())} class {a} and "
                          f"{int((pred == b).sum())} class {b}: too few to fit a boundary (at least 10 each); "
                          f"try a larger --n")
    Z, t = z[keep].double(), torch.where(pred[keep] == b, 1.0, -1.0).double()
    half = len(Z) // 2
    X = torch.cat([Z, torch.ones(len(Z), 1, dtype=Z.dtype)], 1)
    w = torch.linalg.lstsq(X[:half], t[:half, None]).solution[:, 0]
    accuracy = float(((X[half:] @ w > 0) == (t[half:] > 0)).double().mean()) if len(Z) > half else math.nan
    w = torch.linalg.lstsq(X, t[:, None]).solution[:-1, 0]  # refit on all, the bias dropped
    return Directions((w / w.norm())[None].float(), "class", [accuracy], G.z_dim,
                      details={"from": a, "to": b, "n": n, "seed": seed, "samples": int(keep.sum())})


def along(G, z: torch.Tensor, direction: torch.Tensor, values: list[float]) -> torch.Tensor:
    """Images of base vectors z (n, z_dim) moved by each value along a unit direction:
    (len(values), n, C, H, W)."""
    zs = torch.cat([z + v * direction for v in values])
    return generate(G, zs).view(len(values), len(z), *G.img_shape)


def set_along(z: torch.Tensor, direction: torch.Tensor, values: list[float]) -> torch.Tensor:
    """z (z_dim,) with its coordinate along the unit direction set to each value (a sweep along
    a direction): (len(values), z_dim)."""
    return torch.stack([z + (v - z @ direction) * direction for v in values])


@torch.no_grad()
def measure(G, directions: torch.Tensor, classify=None, n: int = 256, step: float = 3.0, seed: int = 0) -> list[dict]:
    """For each unit direction: the mean absolute per-pixel change (in [0, 1] units) per unit step,
    from moving n random z by ±step, and with a classifier the share of images whose class flips."""
    z = z_from_seed(seed, n, G.z_dim)
    base = generate(G, z)
    pred = classify(base).argmax(1) if classify is not None else None
    rows = []
    for d in directions:
        ims = along(G, z, d, [-step, step]).flatten(0, 1)
        row = {"change_per_unit": float((ims - base.repeat(2, 1, 1, 1)).abs().mean()) / 2 / step}
        if pred is not None:
            row["class_flip_rate"] = float((classify(ims).argmax(1) != pred.repeat(2)).double().mean())
        rows.append(row)
    return rows
