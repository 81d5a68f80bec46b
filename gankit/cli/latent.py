"""`gankit sample` and `gankit explore nudge|sweep|interpolate|arithmetic|rank`: each command parses
its flags, loads the generator through the Python API (`GANPipeline`), runs the study of
gankit.latent.studies, which writes labelled figures and a JSON record into
RUN_DIR/latent/<command>-<time>/ or --out DIR (never over anything), and prints where."""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..api import GANPipeline
from ..device import resolve_device
from ..errors import GankitError, RunError
from ..latent import INTERPOLATIONS, studies
from ..metrics.evaluator import load_evaluator
from ..sample import read_z, z_from_seed
from .flags import add_device, renamed


# ---- commands ---------------------------------------------------------------------------------
def load(args, every_class: bool = False) -> tuple[GANPipeline, studies.Subject]:
    """The generator (through the API) and the subject of the study: for a conditional run, G fixed
    to the class `--class` names (an index or a name); with every_class, `--class all` (and no
    --class) studies every class."""
    for name, low in (("n", 1), ("frames", 2)):
        value = getattr(args, name, None)
        if value is not None and value < low:
            raise GankitError(f"--{name} must be >= {low}, got {value}")
    for name in ("deltas", "range", "delta"):
        value = getattr(args, name, None)
        if value is not None and not all(math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            raise GankitError(f"--{name} must be finite numbers, got {value}")
    if not Path(args.src).exists():  # (a path, never a Hub id: the CLI reads local files only)
        raise RunError(f"{args.src}: no such run folder or generator file")
    pipe = GANPipeline.from_pretrained(args.src, ema=args.ema, device=resolve_device(args.device))
    return pipe, pipe.subject(getattr(args, "cls", None), every_class)


def classifier(G, device):
    """The evaluator of G's dataset as an images -> logits function, when one ships and G makes
    grayscale 28x28 images; else None (rank then measures pixel change only)."""
    if G.img_shape != (1, 28, 28):
        return None
    try:
        model, _ = load_evaluator(getattr(G, "dataset", "fashion-mnist"), device)
    except GankitError:
        return None
    return lambda x: model(x.float())


def cmd_sample(args) -> int:
    pipe, s = load(args, every_class=True)
    if args.z:
        z, given = read_z(args.z, pipe.z_dim), {"z_file": args.z}
    else:
        z, given = z_from_seed(args.seed, args.n, pipe.z_dim), {"seed": args.seed, "n": args.n}
    folder, x = studies.sample(s, z, given, args.out)
    print(f"{len(x)} samples -> {folder / 'samples.png'} and samples.npy (uint8); z saved in z.npy: repeat with "
          f"--z {folder / 'z.npy'}" + (f" --class {args.cls}" if args.cls not in (None, "all") else ""))
    return 0


def cmd_nudge(args) -> int:
    _, s = load(args)
    folder = studies.nudge(s, args.seed, args.n, args.deltas, args.dims, args.direction, args.out)
    axes = len(args.dims) if args.dims else 1
    print(f"nudge: {axes} axes x {len(args.deltas)} deltas -> {folder}")
    return 0


def cmd_sweep(args) -> int:
    _, s = load(args)
    lo, hi = args.range
    folder = studies.sweep(s, args.seeds, lo, hi, args.frames, args.dims, args.direction, args.out)
    axes = len(args.dims) if args.dims else 1
    print(f"sweep: {len(args.seeds)} base vectors x {axes} axes x {args.frames} values -> {folder}")
    return 0


def cmd_interpolate(args) -> int:
    _, s = load(args)
    folder = studies.interpolate(s, args.src_from, args.to, args.to_class, args.frames, args.method, args.gif, args.out)
    print(f"interpolate ({args.method}, {args.frames} frames) -> {folder}")
    return 0


def cmd_arithmetic(args) -> int:
    _, s = load(args)
    folder = studies.arithmetic(s, args.a, args.b, args.c, args.out)
    print(f"arithmetic -> {folder / 'arithmetic.png'}")
    return 0


def cmd_rank(args) -> int:
    pipe, s = load(args)
    folder, rows, seconds = studies.rank(s, args.n, args.delta, args.seed, classifier(pipe.G, pipe.device), args.out)
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
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="seeds of the base vectors, one figure each (default: 0)")
    renamed(p, "--base-seeds", "--seeds")
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
    p.add_argument("--method", choices=list(INTERPOLATIONS), default="slerp",
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
