"""Each latent study run and saved: a new folder (RUN/latent/<study>-<time>/ or one given) with its
labelled figures and a JSON record of what it did (source, weights, seeds, z, dims, deltas,
measurements), never over anything already there. `gankit report` shows these folders; the CLI's
`sample`, `explore ...` and `invert` parse their flags and call these functions, and so can a
script, with a `Subject` from `GANPipeline.subject`."""
from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data import to_uint8
from ..data.folder import available_memory
from ..device import resolve_precision
from ..errors import GankitError
from ..runs import new_study_folder, save_grid, write_study_record
from ..sample import class_index, generate, read_z, z_from_seed
from . import directions as Dn, ops as L
from .figures import labelled_grid, rank_figure
from .inversion import invert as invert_images

SHEET_VALUES = [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]  # positions along each direction in a directions sheet


@dataclass
class Subject:
    """What a study runs on: G (for a conditional run, fixed to one class, or the conditional G
    itself when every class is studied), the source it was loaded from, the folder its studies
    are saved under (a run folder), and the classes studied (None: an unconditional G)."""
    G: nn.Module
    src: str
    base: Path
    classes: list[int] | None = None

    @property
    def class_names(self) -> list[str]:
        return list(getattr(self.G, "class_names", []))


def check_memory(G, count: int) -> None:
    """A study's largest batch of `count` images, refused before any is made when it would not fit
    in the memory free."""
    per_image = 8 * math.prod(G.img_shape) + 4 * G.z_dim  # the float image twice (made, then kept) and its z
    free = available_memory()
    if count * per_image > 0.5 * free:
        raise GankitError(f"{count} images of {'x'.join(map(str, G.img_shape))} need about "
                          f"{count * per_image / 2**30:.1f} GiB of memory, more than half the {free / 2**30:.1f} GiB free; "
                          f"lower --n or --frames")


def z_spec(spec: str, z_dim: int) -> tuple[torch.Tensor, dict]:
    """A seed ('42') or a z file -> (z (N, z_dim), how it was given)."""
    try:
        seed = int(spec)
    except ValueError:
        return read_z(spec, z_dim), {"file": spec}
    return z_from_seed(seed, 1, z_dim), {"seed": seed}


def _describe(given: dict) -> str:
    return f"seed {given['seed']}" if "seed" in given else Path(given["file"]).name


def _fmt(v: float) -> str:
    return f"{v:+g}" if v else "0"


def moves(G, dims: list[int] | None, direction: str | None) -> list[tuple[str, str, torch.Tensor | int]]:
    """What a nudge or sweep moves: (label, file stem, a dimension or a unit direction) for each
    of `dims`, or the direction FILE:K."""
    if direction and dims:
        raise GankitError("give --dims or --direction FILE:K, not both")
    if direction:
        vector, label = Dn.read_direction(direction, G)
        return [(label, "direction" + direction.rpartition(":")[2], vector)]
    if not dims:
        raise GankitError("give the latent dimensions to move (--dims 3 17) or a direction (--direction FILE:K)")
    L.check_dims(dims, G.z_dim)
    return [(f"dim {d}", f"dim{d:03d}", d) for d in dims]


# ---- the studies --------------------------------------------------------------------------------
def sample(s: Subject, z: torch.Tensor, given: dict, out: str | Path | None = None) -> tuple[Path, torch.Tensor]:
    """G(z) as samples.png (a conditional G studied over every class: one row per class, the same z
    in each), samples.npy (uint8) and z.npy. Returns (folder, images)."""
    G = s.G
    check_memory(G, 3 * len(z))
    folder = new_study_folder(s.base, "sample", out)
    files = ["samples.png", "samples.npy", "z.npy"]
    if s.classes is not None and len(s.classes) > 1:
        y = torch.tensor(s.classes).repeat_interleave(len(z))
        x = generate(G, z.repeat(len(s.classes), 1), y=y)
        labelled_grid([(G.class_names[c], x[i * len(z):(i + 1) * len(z)]) for i, c in enumerate(s.classes)],
                      folder / "samples.png", f"{len(z)} latent vectors (columns) made as each class (rows)")
        np.save(folder / "labels.npy", y.numpy())
        files.append("labels.npy")
        given = {**given, "classes": [G.class_names[c] for c in s.classes]}
    else:
        x = generate(G, z)
        save_grid(x, folder / "samples.png", nrow=min(8, len(x)))
        if s.classes:
            given = {**given, "class": s.class_names[s.classes[0]]}
    np.save(folder / "samples.npy", to_uint8(x).numpy())  # (N, C, H, W) uint8, rows in z's order (class-major)
    np.save(folder / "z.npy", z.numpy())
    write_study_record(folder, "sample", s.src, G, s.classes, z=z, **given, files=files)
    return folder, x


def nudge(s: Subject, seed: int, n: int, deltas: list[float], dims: list[int] | None = None,
          direction: str | None = None, out: str | Path | None = None) -> Path:
    """n images from the seed with each dimension (or the direction) moved by -delta, 0, +delta:
    one figure per axis and delta, and one of all axes per delta."""
    G, axes = s.G, moves(s.G, dims, direction)
    check_memory(G, 3 * n * len(axes))
    z = z_from_seed(seed, n, G.z_dim)
    folder = new_study_folder(s.base, "nudge", out)
    measurements = []
    for delta in deltas:
        combined = []
        for label, stem, d in axes:
            ims = L.nudge(G, z, d, delta) if isinstance(d, int) else Dn.along(G, z, d, [-delta, 0.0, delta])
            rows = [(f"{label}: {_fmt(v)}", ims[i]) for i, v in enumerate((-delta, 0.0, delta))]
            labelled_grid(rows, folder / f"{stem}_delta{delta:g}.png",
                          f"{'z[%d]' % d if isinstance(d, int) else label} moved by -{delta:g} / 0 / +{delta:g}, "
                          f"{n} samples (seed {seed})")
            combined += rows
            change = ((ims[0] - ims[1]).abs().mean() + (ims[2] - ims[1]).abs().mean()).item() / 4
            measurements.append({"dim" if isinstance(d, int) else "direction": d if isinstance(d, int) else label,
                                 "delta": delta, "mean_abs_change": change})
        labelled_grid(combined, folder / f"combined_delta{delta:g}.png",
                      f"{len(axes)} axes x (-{delta:g}, 0, +{delta:g}) x {n} samples (seed {seed})")
    write_study_record(folder, "nudge", s.src, G, s.classes, z=z, seed=seed, n=n, dims=dims, direction=direction,
                       deltas=deltas, measurements=measurements)
    return folder


def sweep(s: Subject, seeds: list[int], lo: float, hi: float, frames: int, dims: list[int] | None = None,
          direction: str | None = None, out: str | Path | None = None) -> Path:
    """For each seed's base vector, one figure: each dimension (or the coordinate along the
    direction) set to `frames` values from lo to hi, one row per axis."""
    G, axes = s.G, moves(s.G, dims, direction)
    check_memory(G, 3 * frames * len(axes))
    values = torch.linspace(lo, hi, frames).tolist()
    folder = new_study_folder(s.base, "sweep", out)
    zs = []
    for seed in seeds:
        z = z_from_seed(seed, 1, G.z_dim)[0]
        zs.append(z)
        rows = [(label, L.sweep(G, z, [d], values)[0] if isinstance(d, int) else generate(G, Dn.set_along(z, d, values)))
                for label, _, d in axes]
        labelled_grid(rows, folder / f"base{seed}.png",
                      f"base seed {seed}: each row sets one dimension (or the coordinate along a direction) "
                      f"to the value above it", col_labels=[f"{v:+.1f}" for v in values])
    write_study_record(folder, "sweep", s.src, G, s.classes, z=torch.stack(zs), seeds=seeds, dims=dims,
                       direction=direction, values=values)
    return folder


def interpolate(s: Subject, start: str, end: str | None = None, to_class: int | str | None = None, frames: int = 10,
                method: str = "slerp", gif: bool = False, out: str | Path | None = None) -> Path:
    """Images along the path from `start` to `end` (each a seed or a z file), or, for a conditional
    G fixed to one class, from that class to `to_class` at the start's z."""
    G = s.G
    check_memory(G, 3 * frames)
    z0, g0 = z_spec(start, G.z_dim)
    ts = [f"{t:.2f}" for t in torch.linspace(0, 1, frames).tolist()]
    if to_class is not None:  # one z, from the subject's class to another
        if s.classes is None:
            raise GankitError(f"--to-class: {s.src} is an unconditional run; it has no classes to move between")
        if end is not None:
            raise GankitError("--to-class keeps z fixed and moves the class; leave out --to (or --to-class)")
        a, b = s.classes[0], class_index(to_class, G.class_names, "--to-class")
        zs, g1 = z0[:1].expand(frames, -1), {"class": G.class_names[b]}
        x = L.class_blend(G.G, z0[0], a, b, frames)
        title = f"{_describe(g0)} from class {G.class_names[a]} to class {G.class_names[b]} (class embeddings blended)"
    else:
        if end is None:
            raise GankitError("interpolate needs --to (a seed or z file), or --to-class for a conditional run")
        z1, g1 = z_spec(end, G.z_dim)
        zs = L.INTERPOLATIONS[method](z0[0], z1[0], frames)
        x = generate(G, zs)
        title = f"{method} from {_describe(g0)} to {_describe(g1)}"
    folder = new_study_folder(s.base, "interpolate", out)
    labelled_grid([(method if to_class is None else "class", x)], folder / "strip.png", title, col_labels=ts)
    files = ["strip.png"]
    if gif:
        pictures = [Image.fromarray(f) for f in to_uint8(x).permute(0, 2, 3, 1).squeeze(-1).numpy()]
        pictures = [f.resize((f.width * 4, f.height * 4), Image.NEAREST) for f in pictures]
        pictures += pictures[-2:0:-1]  # there and back
        pictures[0].save(folder / "interpolation.gif", save_all=True, append_images=pictures[1:], duration=120, loop=0)
        files.append("interpolation.gif")
    write_study_record(folder, "interpolate", s.src, G, s.classes, z=zs, method=method, frames=frames,
                       start=g0, end=g1, files=files)
    return folder


def arithmetic(s: Subject, a: list[str], b: list[str], c: list[str], out: str | Path | None = None) -> Path:
    """mean(a) - mean(b) + mean(c) on latent vectors (each given by seeds or z files), and its image."""
    G = s.G
    parts = {}
    for name, specs in (("a", a), ("b", b), ("c", c)):
        vecs = [z_spec(spec, G.z_dim) for spec in specs]
        parts[name] = (torch.cat([v for v, _ in vecs]), [g for _, g in vecs])
    means = {k: z.mean(0) for k, (z, _) in parts.items()}
    result = means["a"] - means["b"] + means["c"]
    folder = new_study_folder(s.base, "arithmetic", out)
    zs = torch.stack([means["a"], means["b"], means["c"], result])
    labelled_grid([("", generate(G, zs))], folder / "arithmetic.png", "a - b + c (each input the mean of its vectors)",
                  col_labels=["a", "b", "c", "a - b + c"], scale=1.0)
    labelled_grid([(k, generate(G, z)) for k, (z, _) in parts.items()], folder / "inputs.png",
                  "the vectors averaged into a, b and c")
    write_study_record(folder, "arithmetic", s.src, G, s.classes, z=zs, a=parts["a"][1], b=parts["b"][1],
                       c=parts["c"][1], z_order=["a", "b", "c", "a-b+c"])
    return folder


def rank(s: Subject, n: int = 256, delta: float = 2.0, seed: int = 0, classifier=None,
         out: str | Path | None = None) -> tuple[Path, list[dict], float]:
    """Every dimension ranked by how much moving it by ±delta changes n images (and, with a
    classifier, how often their class flips): rank.csv, rank.png. Returns (folder, rows, seconds)."""
    G = s.G
    check_memory(G, 3 * n)
    device = next(G.parameters()).device
    precision = resolve_precision("auto", device)  # 2 x n x z_dim passes: bf16 where native
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        rows = L.rank_dims(G, n=n, delta=delta, seed=seed, classifier=classifier)
    seconds = time.perf_counter() - t0
    folder = new_study_folder(s.base, "rank", out)
    with open(folder / "rank.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    rank_figure(rows, folder / "rank.png", delta, n)
    write_study_record(folder, "rank", s.src, G, s.classes, z=None, n=n, delta=delta, seed=seed,
                       seconds=round(seconds, 2), precision=precision,
                       classifier="evaluator" if classifier else None, measurements=rows)
    return folder, rows, seconds


def directions(s: Subject, found: Dn.Directions, seed: int = 0, out: str | Path | None = None) -> Path:
    """Found directions saved: directions.json (the record and the vectors, for --direction FILE:K)
    and a sheet of the seed's image moved from -3 to +3 along each. Returns the directions file."""
    G = s.G
    found.source, found.fingerprint = str(s.src), G.fingerprint
    if s.classes:
        found.details["class"] = G.class_names[s.classes[0]]
    folder = new_study_folder(s.base, "directions", out)
    z = z_from_seed(seed, 1, G.z_dim)
    label = {"sefa": "eigenvalue", "pca": "variance share", "class": "boundary accuracy"}[found.method]
    rows = [(f"#{i}: {score:.3g}" if found.method != "class" else f"{found.details['from_name']} -> "
             f"{found.details['to_name']}", Dn.along(G, z, d, SHEET_VALUES)[:, 0]) for i, (d, score)
            in enumerate(zip(found.vectors, found.scores))]
    labelled_grid(rows, folder / "directions.png", f"{found.method} directions, ranked (#k: {label}); base seed "
                  f"{seed} moved along each unit vector", col_labels=[f"{v:+g}" for v in SHEET_VALUES])
    # The study's record is the directions file: what every study records, and the vectors.
    return write_study_record(folder, "directions", s.src, G, s.classes, z=z, seed=seed,
                              files=["directions.json", "directions.png"], **found.record())


def invert(s: Subject, x: torch.Tensor, names: list[str], evaluator=None, iterations: int = 100, restarts: int = 2,
           seed: int = 0, out: str | Path | None = None) -> tuple[Path, dict]:
    """Images projected into z (gankit.latent.inversion): z.npy (and labels.npy for a conditional G),
    a sheet of inputs above reconstructions, and the measures per image. Returns (folder, summary)."""
    G = s.G
    folder = new_study_folder(s.base, "invert", out)
    t0 = time.perf_counter()
    result = invert_images(G, x, evaluator, iterations=iterations, restarts=restarts, seed=seed)
    seconds = time.perf_counter() - t0
    np.save(folder / "z.npy", result.z.numpy())
    files = ["z.npy", "inversion.png", "invert.json"]
    if result.y is not None:
        np.save(folder / "labels.npy", result.y.numpy())
        files.append("labels.npy")
    show = min(len(x), 16)
    labelled_grid([("input", x[:show]), ("reconstruction", result.images[:show])], folder / "inversion.png",
                  f"the first {show} of {len(x)} images and G(z) of the z found for each")
    per_image = [{"image": name, "pixel_mse": float(result.pixel_mse[i]),
                  **({"feature_distance": float(result.feature_distance[i]), "same_class": bool(result.same_class[i])}
                     if evaluator is not None else {}),
                  **({"class": G.class_names[int(result.y[i])]} if result.y is not None else {})}
                 for i, name in enumerate(names)]
    summary = {"n": len(x), "seconds": round(seconds, 2), "seconds_per_image": round(seconds / len(x), 3),
               "pixel_mse": float(result.pixel_mse.mean()), "conditional": result.y is not None}
    if evaluator is not None:
        summary.update(feature_distance=float(result.feature_distance.mean()),
                       class_agreement=float(result.same_class.double().mean()))
    write_study_record(folder, "invert", s.src, G, s.classes, z=None, iterations=iterations, restarts=restarts,
                       seed=seed, summary={k: v for k, v in summary.items() if k != "conditional"},
                       images=per_image, files=files)
    return folder, summary
