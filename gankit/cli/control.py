"""`gankit explore directions` and `gankit invert`: the directions in z that matter
(gankit.latent.directions) and real images projected into z (gankit.latent.inversion). Each parses
its flags, loads the generator through the Python API and saves the study with
gankit.latent.studies into RUN_DIR/latent/<command>-<time>/ (or --out), never over anything."""
from __future__ import annotations

import argparse

import torch

from ..data import class_names, load_split, to_float
from ..errors import GankitError
from ..latent import directions as Dn, studies
from ..latent.inversion import read_images
from ..metrics.evaluator import load_evaluator
from ..sample import class_index
from .flags import add_device, renamed
from .latent import _common, classifier, load


# ---- explore directions -----------------------------------------------------------------------
def cmd_directions(args) -> int:
    pipe, s = load(args)
    G = s.G
    if not 1 <= args.k <= G.z_dim:
        raise GankitError(f"--k {args.k}: this generator's z has {G.z_dim} dimensions, so at most {G.z_dim} directions")
    studies.check_memory(G, 3 * args.n)
    names = class_names(G.dataset, 10) if G.img_shape == (1, 28, 28) else []
    if args.method == "class":
        if args.src_from is None or args.to is None:
            raise GankitError("--method class needs --from CLASS and --to CLASS (classes of the evaluator: "
                              + ", ".join(names) + ")" if names else "--method class needs --from and --to")
        classify = classifier(G, pipe.device)
        if classify is None:
            raise GankitError(f"--method class needs the evaluator of {G.dataset}, which judges 1x28x28 images only; "
                              f"this generator makes {'x'.join(map(str, G.img_shape))}: use --method sefa or pca")
        a, b = class_index(args.src_from, names, "--from"), class_index(args.to, names, "--to")
        found = Dn.class_direction(G, lambda x: torch.softmax(classify(x.to(pipe.device)), 1).cpu(), a, b, args.n,
                                   args.seed)
        found.details.update({"from_name": names[a], "to_name": names[b]})
    elif args.method == "pca":
        found = Dn.pca(G, args.k, args.n, args.seed)
    else:
        found = Dn.sefa(G, args.k)
    path = studies.directions(s, found, args.seed, args.out)
    print(f"{len(found.vectors)} {args.method} directions -> {path} and directions.png; use them with "
          f"--direction {path}:K in explore nudge / sweep")
    return 0


# ---- invert -----------------------------------------------------------------------------------
def cmd_invert(args) -> int:
    args.cls = None
    pipe, s = load(args, every_class=True)
    G = s.G
    if bool(args.images) == bool(args.dataset_split):
        raise GankitError("give images to invert (files or folders), or --dataset-split test|train --n N, not both")
    if args.dataset_split:
        x_all = load_split(G.dataset, args.dataset_split)[0]
        if not 1 <= args.n <= len(x_all):
            raise GankitError(f"--n {args.n}: the {args.dataset_split} split has {len(x_all)} images")
        x, names = to_float(x_all[:args.n]), [f"{G.dataset} {args.dataset_split} #{i}" for i in range(args.n)]
        if tuple(x.shape[1:]) != tuple(G.img_shape):
            raise GankitError(f"{G.dataset} images are {tuple(x.shape[1:])}, this generator makes {tuple(G.img_shape)}")
    else:
        x, names = read_images(args.images, tuple(G.img_shape))
    evaluator = None
    if G.img_shape == (1, 28, 28):
        try:
            evaluator = load_evaluator(G.dataset, pipe.device)[0]
        except GankitError:
            evaluator = None
    folder, summary = studies.invert(s, x, names, evaluator, args.iterations, args.restarts, args.seed, args.out)
    print(f"inverted {len(x)} images in {summary['seconds']:.1f} s: pixel MSE {summary['pixel_mse']:.4f}"
          + (f", feature distance {summary['feature_distance']:.3f}, same class {100 * summary['class_agreement']:.1f} %"
             if evaluator is not None else "") + f" -> {folder}")
    print(f"redraw the reconstructions: gankit sample {args.src} --z {folder / 'z.npy'}"
          + (" --class C (each image's class is in labels.npy)" if summary["conditional"] else ""))
    return 0


# ---- parsers ----------------------------------------------------------------------------------
def add_parsers(sub, explore) -> None:
    p = explore.add_parser("directions", help="find the directions in z that matter: sefa, pca or class",
                           description="Directions in z that change the image most: SeFa (closed form, from G's first "
                                       "layer), PCA of G's early activations (GANSpace), or a class boundary fitted "
                                       "on the evaluator's classes (--from, --to). Writes directions.json and a sheet "
                                       "of images moved from -3 to +3 along each.")
    _common(p)
    p.add_argument("--method", choices=Dn.METHODS, default="sefa", help="how to find them (default: sefa)")
    p.add_argument("--k", type=int, default=10, help="directions to keep, best first (default: 10)")
    p.add_argument("--from", dest="src_from", default=None, metavar="CLASS", help="--method class: the class to move from")
    p.add_argument("--to", default=None, metavar="CLASS", help="--method class: the class to move toward")
    p.add_argument("--n", type=int, default=5000, help="samples for pca and class (default: 5000)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the vectors drawn: pca's and class's samples, and the sheet's base vector (default: 0)")
    renamed(p, "--base-seed", "--seed")
    p.set_defaults(func=cmd_directions)

    p = sub.add_parser("invert", help="project real images into z (a z file every latent command reads)",
                       description="Find the z whose image looks most like each given image (pixels, evaluator "
                                   "features and a prior on z), so it can be redrawn (gankit sample --z) and edited "
                                   "(--direction). Writes z.npy, a sheet of inputs above reconstructions, and the "
                                   "figures per image.")
    p.add_argument("src", help="a run folder or a generator.safetensors file")
    p.add_argument("images", nargs="*", help="image files or folders of them (converted to the generator's size)")
    p.add_argument("--dataset-split", choices=("test", "train"), default=None,
                   help="invert the first --n images of this split of the run's dataset instead")
    p.add_argument("--n", type=int, default=16, help="with --dataset-split: how many images (default: 16)")
    p.add_argument("--iterations", type=int, default=100, help="optimisation steps per image (default: 100)")
    p.add_argument("--restarts", type=int, default=2, help="searches per image, the best kept (default: 2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starting points (default: 0)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None,
                   help="use the EMA weights (default: EMA when the run trained one)")
    p.add_argument("--out", default=None, help="folder for the results (default: RUN_DIR/latent/invert-<time>)")
    add_device(p)
    p.set_defaults(func=cmd_invert)
