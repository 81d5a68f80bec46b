"""The latent explorer behind `gankit app`, without any web code: one `Explorer` per run holds its
generator(s) and its ranked latent dimensions, and `Explorer.views` turns what the page shows
(base vectors, slider values, class, nudged dimension, interpolation target) into its pictures,
a few batched generator passes per part of the page. gankit.app wires it to Gradio widgets;
bench/app_latency.py times it.

What the controls mean (the page says the same):
- a seed stands for its 8 latent vectors, z_from_seed(seed, 8): the images `gankit sample RUN
  --seed S` makes; one of them is the main vector, shown large;
- a slider sits at the main vector's own value of its dimension (rounded to the slider's 0.01
  step) and means "leave it": every vector keeps its own value. Moved anywhere else, it sets that
  dimension of all 8 vectors to its value, as the labs' sweep does; moved back, the seed's exact
  images return. The direction sliders do the same with each vector's coordinate along one of
  G's top SeFa directions (gankit.directions), which mix many dimensions;
- an uploaded picture is projected into z (gankit.invert) and becomes the base vector;
- the saved z is the main vector as shown; `gankit sample RUN --z z.npy` remakes its image bit
  for bit (same weights, same class, on the CPU), because the main image is computed alone, as
  that command computes it.
"""
from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import latent as L
from ..data import to_uint8
from ..device import resolve_device
from ..latent.directions import sefa
from ..errors import GankitError
from ..export import generator_files, load_generator, load_source
from ..latent.inversion import invert, read_images
from ..metrics.evaluator import load_evaluator
from ..runs import read_studies
from ..sample import read_z, z_from_seed

SLIDER_LIMIT = 4.0            # sliders run from -4 to +4, the labs' sweep range
SLIDER_STEP = 0.01
NUDGE_DELTAS = (2, 4, 6, 8, 10)  # lab 4's nudges: rows -d, 0, +d for each d -> the 15 x 8 sheet
N_BASE = 8                    # vectors per seed: the labs' "8 images from a chosen vector"
STRIP_STEPS = 9               # images along the interpolation strip, ends included
MAX_UPLOAD_BYTES = 1 << 20    # an uploaded z file is a few hundred bytes; refuse anything over 1 MiB
RANK_N = 32                   # base vectors for a rank computed on start (per class for a conditional G)
DIRECTIONS = 4                # sliders on G's top SeFa directions, after the dimension sliders
MAX_PICTURE_BYTES = 20 << 20  # an uploaded picture to invert


def mark(value: float) -> float:
    """Where a slider rests for a vector's own value: rounded to the step, inside the range."""
    return float(min(SLIDER_LIMIT, max(-SLIDER_LIMIT, round(float(value), 2))))


def to_hwc(x: torch.Tensor) -> np.ndarray:
    """float images (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C), rounded as gankit.data.to_uint8
    (and so as `gankit sample`'s samples.npy)."""
    return to_uint8(x).permute(0, 2, 3, 1).numpy()


def sheet(rows: list[np.ndarray], pad: int = 2) -> np.ndarray:
    """Rows of tiles [(n, H, W, C) uint8, ...] -> one image (R * (H + pad), n * (W + pad), C) with
    white gaps after every tile and row (so row r spans pixels r * (H + pad) .. + H)."""
    n = max(len(t) for t in rows)
    h, w, c = rows[0].shape[1:]
    out = np.full((len(rows) * (h + pad), n * (w + pad), c), 255, np.uint8)
    for r, tiles in enumerate(rows):
        for i, tile in enumerate(tiles):
            out[r * (h + pad):r * (h + pad) + h, i * (w + pad):i * (w + pad) + w] = tile
    return out


PARTS = ("main", "nudge", "path")


@dataclass
class Views:
    """The pictures of one page state, at the model's resolution: uint8 (H, W, C), C = 1 or 3, or
    (n, H, W, C) for several; None where not asked for."""
    z: np.ndarray                        # the main vector as shown, (1, z_dim) float32
    main: np.ndarray | None = None       # the main vector's image
    base: np.ndarray | None = None       # the (up to) 8 images of the base vectors, sliders applied
    classes: np.ndarray | None = None    # the main vector made as every class (conditional runs)
    nudge: list[tuple[str, np.ndarray]] | None = None  # lab 4's 15 rows: ("-2", the 8 nudged by -2), ("0", ..)
    strip: np.ndarray | None = None      # slerp from the main vector to the target seed's, STRIP_STEPS images
    at_t: np.ndarray | None = None       # the image at the position slider's t along that path
    seconds: float = 0.0                 # server-side time of this update


class Explorer:
    """One run's generator(s) on `device`, in eval mode, and its ranked latent dimensions."""

    def __init__(self, run: str | Path, device: str | torch.device = "auto", sliders: int = 8, rank_n: int = RANK_N,
                 directions: int = DIRECTIONS):
        self.run = Path(run)
        device = resolve_device(str(device))  # "auto" (the CLI's default) becomes a real device here, once
        G, self.folder = load_source(run)  # checks the folder, loads the default weights
        meta_path = generator_files(self.run)[1]
        self.weights = ["EMA", "raw"] if json.loads(meta_path.read_text()).get("has_ema") else ["raw"]
        self.G = {"EMA" if G.weights == "G_ema" else "raw": G.to(device)}
        for w in self.weights:
            if w not in self.G:
                self.G[w] = load_generator(self.run, ema=(w == "EMA"), device=device)
        for g in self.G.values():
            g.eval().requires_grad_(False)
        self.device = device
        self.z_dim, self.img_shape = G.z_dim, tuple(G.img_shape)
        self.class_names = list(G.class_names) if G.num_classes else []
        self.k = min(sliders, self.z_dim)
        self.n_dirs = min(directions, self.z_dim)
        self.n_sliders = self.k + self.n_dirs  # dimension sliders, then direction sliders
        self.rank_n = rank_n
        self._directions = sefa(G, self.n_dirs).vectors if self.n_dirs else torch.zeros(0, self.z_dim)
        self._rank: tuple[list[int], str] | None = None
        self._lock = threading.Lock()  # one generator pass at a time: Gradio calls from a thread pool

    # ---- which dimensions get sliders ---------------------------------------------------------
    def ranked_dims(self) -> tuple[list[int], str]:
        """(the k most influential dims, where that ranking came from): the newest `gankit explore
        rank` in the run folder (of the default weights if there is one), else a ranking of the
        default weights computed now (and kept)."""
        if self._rank is None:
            self._rank = self._saved_rank() or self._compute_rank(self.weights[0])
        return self._rank

    def _saved_rank(self) -> tuple[list[int], str] | None:
        records = []
        for study in read_studies(self.folder, "rank"):
            r = study.record
            try:
                dims = [int(m["dim"]) for m in r["measurements"]]
            except (ValueError, KeyError, TypeError):
                continue  # a damaged record is skipped, not fatal
            if r.get("z_dim") == self.z_dim and dims:
                default = r.get("weights") == ("G_ema" if self.weights[0] == "EMA" else "G")
                path = study.folder / "rank.json"
                records.append((default, path.stat().st_mtime, path, r, dims))
        if not records:
            return None
        _, _, path, r, dims = max(records, key=lambda x: x[:2])
        classes = f", class {r['classes'][0]}" if r.get("classes") else ""
        return dims[:self.k], (f"ranked by `gankit explore rank` ({path.parent.name}: {r.get('weights')}, "
                               f"n={r.get('n')}, ±{r.get('delta')}{classes})")

    def _compute_rank(self, weights: str) -> tuple[list[int], str]:
        G = self.G[weights]
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            if self.class_names:  # the mean over classes of each class's ranking
                n = max(8, self.rank_n // len(self.class_names))
                change = np.zeros(self.z_dim)
                for c in range(len(self.class_names)):
                    for r in L.rank_dims(L.ForClass(G, c), n=n, delta=2.0, seed=0):
                        change[r["dim"]] += r["mean_abs_change"]
                dims = [int(d) for d in np.argsort(-change, kind="stable")]
                how = f"n={n} per class"
            else:
                dims = [r["dim"] for r in L.rank_dims(G, n=self.rank_n, delta=2.0, seed=0)]
                how = f"n={self.rank_n}"
        s = time.perf_counter() - t0
        return dims[:self.k], (f"no saved `gankit explore rank` in the run folder: the {weights} weights ranked on "
                               f"start ({how}, ±2, {s:.1f} s); `gankit explore rank {self.run}` ranks with more samples")

    def slider_axes(self) -> list[tuple[str, int | torch.Tensor]]:
        """What each slider moves, in order: (label, a dimension) for the ranked dimensions, then
        (label, a unit vector) for the top SeFa directions of the default weights."""
        dims, _ = self.ranked_dims()
        return [(f"z[{d}]", d) for d in dims] + [(f"SeFa direction {i + 1}", v) for i, v in enumerate(self._directions)]

    def marks(self, base: np.ndarray, main: int) -> list[float]:
        """Where each slider rests for the main vector: its value of the dimension, or its
        coordinate along the direction."""
        z = torch.from_numpy(np.asarray(base[main], dtype=np.float32))
        return [mark(z[a] if isinstance(a, int) else z @ a) for _, a in self.slider_axes()]

    # ---- base vectors -------------------------------------------------------------------------
    def seed_vectors(self, seed: int) -> np.ndarray:
        """The seed's 8 latent vectors, as `gankit sample RUN --seed S` draws them."""
        if not 0 <= int(seed) < 2 ** 63:
            raise GankitError(f"seed {seed}: a seed is a whole number from 0 to 2**63 - 1")
        return z_from_seed(int(seed), N_BASE, self.z_dim).numpy()

    def read_upload(self, path: str | Path) -> np.ndarray:
        """An uploaded z file (.npy, .pt or .json; (z_dim,) or (N, z_dim), N <= 8, finite values,
        at most 1 MiB) -> (N, z_dim) float32. Errors name the file and the problem."""
        p = Path(path)
        name = p.name
        if p.stat().st_size > MAX_UPLOAD_BYTES:
            raise GankitError(f"{name}: {p.stat().st_size / 1e6:.1f} MB is too large for a latent file "
                              f"(limit {MAX_UPLOAD_BYTES >> 20} MiB; {N_BASE} vectors of {self.z_dim} floats "
                              f"take {N_BASE * self.z_dim * 4} bytes)")
        try:
            z = read_z(p, self.z_dim)
        except GankitError as e:
            raise GankitError(str(e).replace(str(p), name)) from None
        if len(z) > N_BASE:
            raise GankitError(f"{name}: holds {len(z)} latent vectors; the explorer shows at most {N_BASE}")
        return z.numpy()

    def invert_picture(self, path: str | Path) -> tuple[np.ndarray, str]:
        """An uploaded picture projected into z with the default weights (converted to G's image
        shape first): ((1, z_dim) float32, what the inversion reached, for the page)."""
        p = Path(path)
        if p.stat().st_size > MAX_PICTURE_BYTES:
            raise GankitError(f"{p.name}: {p.stat().st_size / 1e6:.0f} MB is too large a picture "
                              f"(limit {MAX_PICTURE_BYTES >> 20} MiB)")
        try:
            x, _ = read_images([str(p)], self.img_shape)
        except GankitError as e:
            raise GankitError(str(e).replace(str(p), p.name)) from None
        G = self.G[self.weights[0]]
        evaluator = None
        if self.img_shape == (1, 28, 28):
            try:
                evaluator = load_evaluator(getattr(G, "dataset", "fashion-mnist"), self.device)[0]
            except GankitError:
                evaluator = None
        t0 = time.perf_counter()
        with self._lock:
            r = invert(G, x, evaluator, iterations=100, restarts=4)
        note = f"inverted {p.name} in {time.perf_counter() - t0:.1f} s: pixel MSE {float(r.pixel_mse[0]):.4f}"
        if evaluator is not None:
            note += (f", evaluator-feature distance {float(r.feature_distance[0]):.2f}, "
                     + ("the same class as the picture" if bool(r.same_class[0]) else "another class than the picture"))
        if r.y is not None:
            note += f"; it fits class {self.class_names[int(r.y[0])]} best: choose it above"
        return r.z.numpy(), note

    # ---- the pictures -------------------------------------------------------------------------
    def edited(self, base: np.ndarray, main: int, values: list[float]) -> torch.Tensor:
        """The base vectors with every moved slider applied to all of them: a dimension slider sets
        that dimension to its value, a direction slider the coordinate along its direction."""
        z = torch.from_numpy(np.array(base, dtype=np.float32, copy=True))
        marks = self.marks(base, main)
        for (_, axis), v, m in zip(self.slider_axes(), values, marks):
            if v is None or abs(float(v) - m) <= 1e-9:
                continue
            if isinstance(axis, int):
                z[:, axis] = float(v)
            else:
                z = z + (float(v) - z @ axis)[:, None] * axis
        return z

    def views(self, weights: str, base: np.ndarray, main: int, values: list[float], cls: int | None,
              nudge_dim: int, to_seed: int, t: float, parts: tuple[str, ...] = PARTS) -> Views:
        """The pictures of one page state; `parts` picks some of "main" (the main image, the 8, the
        class row), "nudge" (lab 4's sheet) and "path" (the slerp strip and the image at t); the
        others are left None."""
        t0 = time.perf_counter()
        if weights not in self.G:
            raise GankitError(f"{self.run}: no {weights} weights in this run (it has: {', '.join(self.weights)})")
        if not 0 <= nudge_dim < self.z_dim:
            raise GankitError(f"dimension {nudge_dim} out of range: this generator has z_dim={self.z_dim}")
        G = self.G[weights]
        if self.class_names:
            G = L.ForClass(G, 0 if cls is None else int(cls))
        main = min(max(0, int(main)), len(base) - 1)
        z = self.edited(base, main, values)
        n, dev = len(z), self.device
        v = Views(z=z[main:main + 1].numpy())
        with self._lock, torch.inference_mode():
            run = lambda zs: to_hwc(G(zs.to(dev)).float().cpu())  # noqa: E731
            if "main" in parts or "nudge" in parts:
                # The main image alone and the base vectors as one batch: as `gankit sample --z` and
                # `gankit sample --seed` compute them, so the pictures match those commands' bit for bit.
                v.base = run(z)
            if "main" in parts:
                v.main = run(z[main:main + 1])[0]
                if self.class_names:
                    K = len(self.class_names)
                    v.classes = to_hwc(G.G(z[main:main + 1].to(dev).expand(K, -1),
                                           torch.arange(K, device=dev)).float().cpu())
            if "nudge" in parts:
                moved = []
                for d in NUDGE_DELTAS:
                    for sign in (-1, 1):
                        zz = z.clone()
                        zz[:, nudge_dim] += sign * d
                        moved.append(zz)
                out = run(torch.cat(moved)).reshape(len(NUDGE_DELTAS), 2, n, *v.base.shape[1:])
                v.nudge = []
                for i, d in enumerate(NUDGE_DELTAS):  # lab 4's order: -d, 0, +d for d = 2 .. 10
                    v.nudge += [(f"-{d}", out[i, 0]), ("0", v.base), (f"+{d}", out[i, 1])]
            if "path" in parts:
                target = torch.from_numpy(self.seed_vectors(to_seed)[main % N_BASE])
                ts = torch.cat([torch.linspace(0, 1, STRIP_STEPS), torch.tensor([min(1.0, max(0.0, float(t)))])])
                out = run(L.slerp_at(z[main], target, ts))
                v.strip, v.at_t = out[:STRIP_STEPS], out[STRIP_STEPS]
        v.seconds = time.perf_counter() - t0
        return v


def png_bytes(img: np.ndarray) -> bytes:
    """uint8 (H, W, C) -> PNG file bytes (grayscale for C = 1)."""
    buf = io.BytesIO()
    Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img).save(buf, format="PNG")
    return buf.getvalue()
