"""`gankit sample` and `gankit explore nudge|sweep|interpolate|arithmetic|rank`: each command
runs a study from gankit.latent, writes labelled figures and a JSON record of what it did
(source, weights, seeds, z, dims, deltas, measurements) into RUN_DIR/latent/<command>-<time>/ or
--out DIR, and never overwrites anything that is already there."""
from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import latent as L
from ..directions import along, read_direction, set_along
from ..data import to_uint8
from ..data.folder import available_memory
from ..device import resolve_device, resolve_precision
from ..errors import GankitError
from ..export import load_source
from ..metrics.evaluator import load_evaluator
from ..runs import new_study_folder, pyplot, save_grid, write_study_record
from ..sample import generate, read_z, z_from_seed
from .flags import add_device, renamed


# ---- output folder and record -----------------------------------------------------------------
# ---- figures ----------------------------------------------------------------------------------
def labelled_grid(rows: list[tuple[str, torch.Tensor]], path: Path, title: str,
                  col_labels: list[str] | None = None, scale: float = 0.55) -> None:
    """One figure: each row a strip of images (n, C, H, W) in [-1, 1] labelled on the left,
    optional column labels on top."""
    from torchvision.utils import make_grid  # (torchvision takes a second to import; only figures need it)
    n = max(len(x) for _, x in rows)
    # Short rows are filled with white cells so every strip has n cells of the same size.
    rows = [(label, torch.cat([x.float(), torch.ones(n - len(x), *x.shape[1:])])) for label, x in rows]
    strips = [make_grid(x, nrow=n, padding=2, normalize=True, value_range=(-1, 1), pad_value=1.0)
              for _, x in rows]
    img = torch.cat(strips, dim=1).permute(1, 2, 0).numpy()  # (H_total, W, C)
    h_row = strips[0].shape[1]
    w_col = (strips[0].shape[2] - 2) / n
    plt = pyplot()
    fig_w = max(4.0, n * scale + 1.6)
    fig_h = len(rows) * scale + (1.3 if col_labels else 0.9)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h), dpi=110)
    ax.imshow(img if img.shape[2] == 3 else img[:, :, 0], cmap="gray", interpolation="nearest", vmin=0, vmax=1)
    ax.set_yticks([h_row * (i + 0.5) for i in range(len(rows))])
    ax.set_yticklabels([label for label, _ in rows], fontsize=8)
    if col_labels:
        ax.set_xticks([2 + w_col * (i + 0.5) for i in range(len(col_labels))])
        ax.set_xticklabels(col_labels, fontsize=8)
        ax.xaxis.tick_top()
    else:
        ax.set_xticks([])
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.set_title(title, fontsize=9, pad=14 if col_labels else 6)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _describe(given: dict) -> str:
    return f"seed {given['seed']}" if "seed" in given else Path(given["file"]).name


def _fmt(v: float) -> str:
    return f"{v:+g}" if v else "0"


# ---- commands ---------------------------------------------------------------------------------
def load(args, allow_all: bool = False):
    """(G, the folder to write under). For a conditional run, G is fixed to the class `--class`
    names (an index or a name) so every study runs within it; with allow_all, `--class all` (and
    no --class) returns the conditional G itself and sets args.classes to every class."""
    for name, low in (("n", 1), ("frames", 2)):
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise GankitError(f"--{name} must be >= {low}, got {value}")
    for name in ("deltas", "range", "delta"):
        value = getattr(args, name, None)
        if value is not None and not all(math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            raise GankitError(f"--{name} must be finite numbers, got {value}")
    G, base = load_source(args.src, ema=args.ema, device=resolve_device(args.device))
    check_memory(args, G)
    args.classes = None
    if not G.num_classes:
        if args.cls is not None:
            raise GankitError(f"--class {args.cls}: {args.src} is an unconditional run (trained without "
                              f"--conditional), so it has no classes to choose from")
        return G, base
    if args.cls is None or args.cls == "all":
        if allow_all:
            args.classes = list(range(G.num_classes))
            return G, base
        raise GankitError(f"{args.src} is a class-conditional run: choose the class to study with --class "
                          f"(an index or one of: {', '.join(G.class_names)})")
    c = class_index(args.cls, G.class_names)
    args.classes = [c]
    return L.ForClass(G, c), base


def check_memory(args, G) -> None:
    """A study's largest batch of images (an upper bound: 3 x n x frames x dims), refused before any
    is made when it would not fit in the memory free."""
    count = 3 * (getattr(args, "n", None) or 1) * (getattr(args, "frames", None) or 1) * len(getattr(args, "dims", None) or [1])
    per_image = 8 * math.prod(G.img_shape) + 4 * G.z_dim  # the float image twice (made, then kept) and its z
    free = available_memory()
    if count * per_image > 0.5 * free:
        raise GankitError(f"{count} images of {'x'.join(map(str, G.img_shape))} need about "
                          f"{count * per_image / 2**30:.1f} GiB of memory, more than half the {free / 2**30:.1f} GiB free; "
                          f"lower --n or --frames")


def class_index(spec: str, names: list[str], flag: str = "--class") -> int:
    """A class given by index ('7') or name ('sneaker', 'ankle-boot': any case, - or _ for spaces)
    -> its index."""
    if spec.isdigit() and int(spec) < len(names):
        return int(spec)
    key = lambda s: s.lower().replace("-", " ").replace("_", " ")
    lowered = [key(n) for n in names]
    if key(spec) in lowered:
        return lowered.index(key(spec))
    raise GankitError(f"{flag} {spec}: no such class; this run's classes are 0..{len(names) - 1}: "
                      + ", ".join(f"{i} {n}" for i, n in enumerate(names)))


def z_arg(spec: str, G) -> tuple[torch.Tensor, dict]:
    """A seed ('42') or a z file -> (z (N, z_dim), how it was given)."""
    try:
        seed = int(spec)
    except ValueError:
        return read_z(spec, G.z_dim), {"file": spec}
    return z_from_seed(seed, 1, G.z_dim), {"seed": seed}


def cmd_sample(args) -> int:
    G, base = load(args, allow_all=True)
    if args.z:
        z, given = read_z(args.z, G.z_dim), {"z_file": args.z}
    else:
        z, given = z_from_seed(args.seed, args.n, G.z_dim), {"seed": args.seed, "n": args.n}
    folder = new_study_folder(base, "sample", args.out)
    files = ["samples.png", "samples.npy", "z.npy"]
    if args.classes is not None and len(args.classes) > 1:  # one row per class, the same z in every row
        y = torch.tensor(args.classes).repeat_interleave(len(z))
        x = generate(G, z.repeat(len(args.classes), 1), y=y)
        labelled_grid([(G.class_names[c], x[i * len(z):(i + 1) * len(z)]) for i, c in enumerate(args.classes)],
                      folder / "samples.png", f"{len(z)} latent vectors (columns) made as each class (rows)")
        np.save(folder / "labels.npy", y.numpy())
        files.append("labels.npy")
        given["classes"] = [G.class_names[c] for c in args.classes]
    else:
        x = generate(G, z)
        save_grid(x, folder / "samples.png", nrow=min(8, len(x)))
        if args.classes:
            given["class"] = G.class_names[args.classes[0]]
    np.save(folder / "samples.npy", to_uint8(x).numpy())  # (N, C, H, W) uint8, rows in z's order (class-major)
    np.save(folder / "z.npy", z.numpy())
    write_study_record(folder, "sample", args.src, G, args.classes, z=z, **given, files=files)
    print(f"{len(x)} samples -> {folder / 'samples.png'} and samples.npy (uint8); z saved in z.npy: repeat with "
          f"--z {folder / 'z.npy'}" + (f" --class {args.cls}" if args.cls not in (None, "all") else ""))
    return 0


def axes(args, G) -> list[tuple[str, str, torch.Tensor | int]]:
    """What a nudge or sweep moves: (label, file stem, a dimension or a unit direction) for each
    --dims dimension, or the --direction FILE:K."""
    if args.direction and args.dims:
        raise GankitError("give --dims or --direction FILE:K, not both")
    if args.direction:
        vector, label = read_direction(args.direction, G)
        return [(label, "direction" + args.direction.rpartition(":")[2], vector)]
    if not args.dims:
        raise GankitError("give the latent dimensions to move (--dims 3 17) or a direction (--direction FILE:K)")
    L.check_dims(args.dims, G.z_dim)
    return [(f"dim {d}", f"dim{d:03d}", d) for d in args.dims]


def cmd_nudge(args) -> int:
    G, base = load(args)
    moves = axes(args, G)
    z = z_from_seed(args.seed, args.n, G.z_dim)
    folder = new_study_folder(base, "nudge", args.out)
    measurements = []
    for delta in args.deltas:
        combined = []
        for label, stem, d in moves:
            ims = L.nudge(G, z, d, delta) if isinstance(d, int) else along(G, z, d, [-delta, 0.0, delta])
            rows = [(f"{label}: {_fmt(v)}", ims[i]) for i, v in enumerate((-delta, 0.0, delta))]
            labelled_grid(rows, folder / f"{stem}_delta{delta:g}.png",
                          f"{'z[%d]' % d if isinstance(d, int) else label} moved by -{delta:g} / 0 / +{delta:g}, "
                          f"{args.n} samples (seed {args.seed})")
            combined += rows
            change = ((ims[0] - ims[1]).abs().mean() + (ims[2] - ims[1]).abs().mean()).item() / 4
            measurements.append({"dim" if isinstance(d, int) else "direction": d if isinstance(d, int) else label,
                                 "delta": delta, "mean_abs_change": change})
        labelled_grid(combined, folder / f"combined_delta{delta:g}.png",
                      f"{len(moves)} axes x (-{delta:g}, 0, +{delta:g}) x {args.n} samples (seed {args.seed})")
    write_study_record(folder, "nudge", args.src, G, args.classes,
                       z=z, seed=args.seed, n=args.n, dims=args.dims, direction=args.direction,
                       deltas=args.deltas, measurements=measurements)
    print(f"nudge: {len(moves)} axes x {len(args.deltas)} deltas -> {folder}")
    return 0


def cmd_sweep(args) -> int:
    G, base = load(args)
    moves = axes(args, G)
    lo, hi = args.range
    values = torch.linspace(lo, hi, args.frames).tolist()
    folder = new_study_folder(base, "sweep", args.out)
    zs = []
    for seed in args.base_seeds:
        z = z_from_seed(seed, 1, G.z_dim)[0]
        zs.append(z)
        rows = [(label, L.sweep(G, z, [d], values)[0] if isinstance(d, int) else generate(G, set_along(z, d, values)))
                for label, _, d in moves]
        labelled_grid(rows, folder / f"base{seed}.png",
                      f"base seed {seed}: each row sets one dimension (or the coordinate along a direction) "
                      f"to the value above it", col_labels=[f"{v:+.1f}" for v in values])
    write_study_record(folder, "sweep", args.src, G, args.classes,
                       z=torch.stack(zs), base_seeds=args.base_seeds, dims=args.dims,
                       direction=args.direction, values=values)
    print(f"sweep: {len(args.base_seeds)} base vectors x {len(moves)} axes x {len(values)} values -> {folder}")
    return 0


def cmd_interpolate(args) -> int:
    G, base = load(args)
    z0, g0 = z_arg(args.src_from, G)
    ts = [f"{t:.2f}" for t in torch.linspace(0, 1, args.frames).tolist()]
    if args.to_class is not None:  # one z, from class --class to class --to-class
        if args.classes is None:
            raise GankitError(f"--to-class: {args.src} is an unconditional run; it has no classes to move between")
        if args.to is not None:
            raise GankitError("--to-class keeps z fixed and moves the class; leave out --to (or --to-class)")
        a, b = args.classes[0], class_index(args.to_class, G.class_names)
        zs, g1 = z0[:1].expand(args.frames, -1), {"class": G.class_names[b]}
        x = L.class_blend(G.G, z0[0], a, b, args.frames)
        title = f"{_describe(g0)} from class {G.class_names[a]} to class {G.class_names[b]} (class embeddings blended)"
    else:
        if args.to is None:
            raise GankitError("interpolate needs --to (a seed or z file), or --to-class for a conditional run")
        z1, g1 = z_arg(args.to, G)
        zs = L.INTERPOLATIONS[args.method](z0[0], z1[0], args.frames)
        x = generate(G, zs)
        title = f"{args.method} from {_describe(g0)} to {_describe(g1)}"
    folder = new_study_folder(base, "interpolate", args.out)
    labelled_grid([(args.method if args.to_class is None else "class", x)], folder / "strip.png", title, col_labels=ts)
    files = ["strip.png"]
    if args.gif:
        frames = [Image.fromarray(f) for f in
                  to_uint8(x).permute(0, 2, 3, 1).squeeze(-1).numpy()]
        frames = [f.resize((f.width * 4, f.height * 4), Image.NEAREST) for f in frames]
        frames += frames[-2:0:-1]  # there and back
        frames[0].save(folder / "interpolation.gif", save_all=True, append_images=frames[1:], duration=120, loop=0)
        files.append("interpolation.gif")
    write_study_record(folder, "interpolate", args.src, G, args.classes,
                       z=zs, method=args.method, frames=args.frames, start=g0, end=g1, files=files)
    print(f"interpolate ({args.method}, {args.frames} frames) -> {folder}")
    return 0


def cmd_arithmetic(args) -> int:
    G, base = load(args)
    parts = {}
    for name in ("a", "b", "c"):
        vecs = [z_arg(s, G) for s in getattr(args, name)]
        z = torch.cat([v for v, _ in vecs])
        parts[name] = (z, [g for _, g in vecs])
    means = {k: z.mean(0) for k, (z, _) in parts.items()}
    result = means["a"] - means["b"] + means["c"]
    folder = new_study_folder(base, "arithmetic", args.out)
    ims = generate(G, torch.stack([means["a"], means["b"], means["c"], result]))
    labelled_grid([("", ims)], folder / "arithmetic.png", "a - b + c (each input the mean of its vectors)",
                  col_labels=["a", "b", "c", "a - b + c"], scale=1.0)
    rows = []
    for k, (z, _) in parts.items():
        rows.append((k, generate(G, z)))
    labelled_grid(rows, folder / "inputs.png", "the vectors averaged into a, b and c")
    write_study_record(folder, "arithmetic", args.src, G, args.classes,
                       z=torch.stack([means["a"], means["b"], means["c"], result]),
                       a=parts["a"][1], b=parts["b"][1], c=parts["c"][1], z_order=["a", "b", "c", "a-b+c"])
    print(f"arithmetic -> {folder / 'arithmetic.png'}")
    return 0


def _classifier(G, device):
    """The evaluator of G's dataset as an images -> logits function, when one ships and G makes
    grayscale 28x28 images; else None (rank then measures pixel change only)."""
    if G.img_shape != (1, 28, 28):
        return None
    try:
        model, _ = load_evaluator(getattr(G, "dataset", "fashion-mnist"), device)
    except GankitError:
        return None
    return lambda x: model(x.float())


def cmd_rank(args) -> int:
    G, base = load(args)
    # 2 x n x z_dim generator and classifier passes: bf16 where the hardware does it natively.
    device = next(G.parameters()).device
    classifier = _classifier(G, device)
    precision = resolve_precision("auto", device)
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
        rows = L.rank_dims(G, n=args.n, delta=args.delta, seed=args.seed, classifier=classifier)
    seconds = time.perf_counter() - t0
    folder = new_study_folder(base, "rank", args.out)
    keys = list(rows[0])
    with open(folder / "rank.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.09), 3.2), dpi=110)
    ax.bar(range(len(rows)), [r["mean_abs_change"] for r in rows], color="tab:blue")
    step = max(1, len(rows) // 25)
    ax.set_xticks(range(0, len(rows), step))
    ax.set_xticklabels([str(rows[i]["dim"]) for i in range(0, len(rows), step)], fontsize=7, rotation=90)
    ax.set_xlabel("latent dimension (sorted by influence)")
    ax.set_ylabel("mean |pixel change|", color="tab:blue")
    if "class_flip_rate" in rows[0]:
        ax2 = ax.twinx()
        ax2.plot(range(len(rows)), [r["class_flip_rate"] for r in rows], ".", color="tab:red", ms=4)
        ax2.set_ylabel("share of samples whose class flips", color="tab:red")
    ax.set_title(f"How much each dimension changes the image (z ± {args.delta:g}, {args.n} samples)", fontsize=9)
    fig.tight_layout()
    fig.savefig(folder / "rank.png", metadata={"Software": None})
    plt.close(fig)
    write_study_record(folder, "rank", args.src, G, args.classes,
                       z=None, n=args.n, delta=args.delta, seed=args.seed, seconds=round(seconds, 2),
                       precision=precision, classifier="evaluator" if classifier else None, measurements=rows)
    flips = "class_flip_rate" in rows[0]
    print(f"{'rank':>4} {'dim':>4} {'mean |change|':>14}" + ("  class flips" if flips else ""))
    show = rows[:10] + [None] + rows[-10:] if len(rows) > 20 else rows
    for r in show:
        print("   ..." if r is None else f"{r['rank']:>4} {r['dim']:>4} {r['mean_abs_change']:>14.5f}"
              + (f"  {r['class_flip_rate']:>11.3f}" if flips else ""))
    print(f"rank: {len(rows)} dimensions in {seconds:.1f} s -> {folder}")
    return 0


# ---- parsers ----------------------------------------------------------------------------------
def _common(p, sample: bool = False) -> None:
    p.add_argument("src", help="a run folder or a generator.safetensors file")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="use the EMA weights (default: EMA when the run trained one)")
    p.add_argument("--out", default=None, help="folder for the figures (default: RUN_DIR/latent/<command>-<time>)")
    add_device(p)
    p.add_argument("--class", dest="cls", default=None, metavar="CLASS",
                   help="a conditional run's class, by index or name (e.g. 7 or sneaker)"
                        + ("; or 'all' (the default): one row per class, the same z in each" if sample else
                           "; required for a conditional run"))


def add_parsers(sub):
    p = sub.add_parser("sample", help="images from seeds or chosen latent vectors",
                       description="Draw images from a run's generator: n latent vectors from a seed, or the vectors "
                                   "of a z file; writes samples.png, samples.npy and z.npy, never over anything.")
    _common(p, sample=True)
    p.add_argument("--n", type=int, default=8, help="number of samples (with --seed; default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent vectors (default: 0)")
    p.add_argument("--z", default=None, help="latent vector(s) from a .npy, .pt or JSON file instead of a seed")
    p.set_defaults(func=cmd_sample)

    ex = sub.add_parser("explore", help="latent-space studies: nudge, sweep, interpolate, arithmetic, rank, directions",
                        description="Study what the latent dimensions of a trained generator control. Each study "
                                    "writes labelled figures and a JSON record into RUN/latent/<study>-<time>/.")
    es = ex.add_subparsers(dest="study", required=True, metavar="STUDY")
    p = es.add_parser("nudge", help="move single dimensions by -delta/0/+delta",
                      description="Lab 4's nudges: each dimension moved by -delta, 0 and +delta in n images from a "
                                  "seed, one figure per dimension.")
    _common(p)
    p.add_argument("--dims", type=int, nargs="+", default=None,
                   help="latent dimensions to move (0-based); required unless --direction is given")
    p.add_argument("--direction", default=None, metavar="FILE:K",
                   help="move along direction K of a directions file instead (gankit explore directions)")
    p.add_argument("--deltas", type=float, nargs="+", default=[2, 4, 6, 8, 10],
                   help="amounts to move each dimension by, both ways (default: 2 4 6 8 10)")
    p.add_argument("--n", type=int, default=8, help="samples per row (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the n base vectors (default: 0)")
    p.set_defaults(func=cmd_nudge)
    p = es.add_parser("sweep", help="set single dimensions of base vectors to a range of values",
                      description="The labs' sweep: one dimension of a base vector set to each value from LO to HI "
                                  "(default -4 to +4), one row per dimension.")
    _common(p)
    p.add_argument("--base-seeds", type=int, nargs="+", default=[0], help="one figure per base vector (default: 0)")
    p.add_argument("--dims", type=int, nargs="+", default=None,
                   help="latent dimensions to sweep, one row each; required unless --direction is given")
    p.add_argument("--direction", default=None, metavar="FILE:K",
                   help="sweep the coordinate along direction K of a directions file instead")
    p.add_argument("--range", type=float, nargs=2, default=[-4.0, 4.0], metavar=("LO", "HI"),
                   help="values the dimension is set to (default: -4 4)")
    p.add_argument("--frames", type=int, default=9, help="values from LO to HI, one column each (default: 9)")
    renamed(p, "--steps", "--frames")
    p.set_defaults(func=cmd_sweep)
    p = es.add_parser("interpolate", help="images along a path between two latent vectors",
                      description="Images along a path between two latent vectors (lerp or slerp), or, in a "
                                  "conditional run, between two classes at one z.")
    _common(p)
    p.add_argument("--from", dest="src_from", required=True, help="seed or z file")
    p.add_argument("--to", default=None, help="seed or z file")
    p.add_argument("--to-class", default=None, metavar="CLASS",
                   help="a conditional run: keep the --from z and move from class --class to this class instead")
    p.add_argument("--frames", type=int, default=10, help="images along the path, ends included (default: 10)")
    renamed(p, "--steps", "--frames")
    p.add_argument("--method", choices=list(L.INTERPOLATIONS), default="slerp",
                   help="straight line, or great circle keeping a Gaussian z's norm (default: slerp)")
    p.add_argument("--gif", action="store_true", help="also write an animated GIF")
    p.set_defaults(func=cmd_interpolate)
    p = es.add_parser("arithmetic", help="a - b + c on latent vectors (each the mean of several)",
                      description="Vector arithmetic (Radford et al. 2015): the mean of --a minus the mean of --b "
                                  "plus the mean of --c, and its image.")
    _common(p)
    for name in ("a", "b", "c"):
        p.add_argument(f"--{name}", nargs="+", required=True, help="seeds or z files (averaged)")
    p.set_defaults(func=cmd_arithmetic)
    p = es.add_parser("rank", help="rank latent dimensions by how much they change the image",
                      description="Rank every latent dimension by how much moving it changes the image (and how "
                                  "often the evaluator's class flips).")
    _common(p)
    p.add_argument("--n", type=int, default=256, help="random base vectors to average over (default: 256)")
    p.add_argument("--delta", type=float, default=2.0, help="how far each dimension is moved, both ways (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the base vectors (default: 0)")
    p.set_defaults(func=cmd_rank)
    return es  # (gankit.cli.control adds `explore directions` to it)
