"""`gankit eval`, `gankit compare` and `gankit evaluator train`: thin shells over gankit.metrics."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .. import metrics as M
from ..errors import GankitError
from ..export import saved_class_names
from ..data.folder import available_memory, class_folders
from ..metrics.evaluator import FEATURE_DIM, available as available_evaluators, train_evaluator
from ..device import resolve_device
from ..runs import check_run_dir, comparison_figure, pyplot, read_stats
from .flags import add_device



def _value(results: dict, metric: str, tag: str) -> str:
    v = results.get(f"{metric}_{tag}")
    if v is None:
        return "-"
    std = results.get(f"{metric}_{tag}_std")
    return f"{v:.3f}" + (f" ± {std:.3f}" if std is not None else "")


def print_table(columns: list[tuple[str, dict]], tag: str) -> None:
    """Rows = metrics, one column per (title, results)."""
    rows = [(label, [_value(r, m, tag) for _, r in columns]) for m, label in M.LABELS.items()
            if any(f"{m}_{tag}" in r for _, r in columns)]
    widths = [max(len(t), *(len(v[i]) for _, v in rows)) for i, (t, _) in enumerate(columns)]
    first = f"metric ({tag})"
    name_w = max(len(first), *(len(label) for label, _ in rows)) + 2
    print(first.ljust(name_w) + "  ".join(t.rjust(w) for (t, _), w in zip(columns, widths)))
    for label, vals in rows:
        print(label.ljust(name_w) + "  ".join(v.rjust(w) for v, w in zip(vals, widths)))


def print_per_class(src: Path, results: dict, tag: str) -> None:
    """A conditional generator's scores class by class, named as its generator.json names them."""
    acc, fid = results[f"class_accuracy_per_class_{tag}"], results.get(f"fid_per_class_{tag}")
    names = saved_class_names(src, len(acc))
    width = max(len(n) for n in names) + 2
    print("\n" + "class".ljust(width) + "class accuracy" + ("       FID" if fid else ""))
    for i, name in enumerate(names):
        print(name.ljust(width) + f"{acc[i]:>14.3f}" + (f"{fid[i]:>10.2f}" if fid else ""))
    if not fid:
        print("(FID per class needs more samples per class than the 128 feature dimensions: raise --n)")


def metrics_file(src: Path) -> Path:
    folder = src if src.is_dir() else src.parent
    return folder / "metrics.json"


def check_eval(src: Path, dataset: str, n: int, data_root: str | None, inception: bool, metrics: list[str],
               evaluator: str | None = None) -> None:
    """What an evaluation needs, checked before any image is made: the source exists, n is at
    least the 129 images a 128-d FID needs and at most the real reference images there are (a
    folder's floor compares two disjoint n), and the memory it takes fits in the memory free."""
    if not src.exists():
        raise GankitError(f"{src}: no such run, generator, image folder or tensor file")
    shape = M.source_shape(src)
    if shape is None and src.is_dir():
        raise GankitError(f"{src}: no images (PNG, JPEG, BMP, WebP) and no generator in it")
    if dataset == "folder" and not inception and not evaluator:
        raise GankitError("an image folder has no evaluator of its own: score it with an evaluator trained on its "
                          "classes (`gankit evaluator train --dataset folder --data-root DIR`, then --evaluator NAME) "
                          "or Inception features (--inception-weights PATH, torch-fidelity's pt_inception-2015-12-05)")
    if n < 2:
        raise GankitError(f"--n must be >= 2, got {n}")
    if "fid" in metrics and not inception and n <= FEATURE_DIM:
        raise GankitError(f"--n {n}: FID needs more samples than the evaluator's {FEATURE_DIM} feature dimensions; "
                          f"give --n {FEATURE_DIM + 1} or more (the protocol of the figures gankit quotes is 10000), "
                          f"or leave fid out of --metrics (KID is unbiased at any n)")
    have = M.reference_size(dataset, data_root)
    need = 2 * n if dataset == "folder" else n
    if have < need:
        raise GankitError(f"--n {n}: {dataset} has {have} real reference images"
                          + (" (a folder's floor needs 2n)" if dataset == "folder" else "")
                          + f"; give --n {have // 2 if dataset == 'folder' else have} or less")
    if shape is not None:
        need_bytes = M.estimate_bytes(n, shape, 2048 if inception else FEATURE_DIM)
        free = available_memory()
        if need_bytes > 0.8 * free:
            raise GankitError(f"--n {n}: {n} images of {'x'.join(map(str, shape))} need about {need_bytes / 2**30:.1f} "
                              f"GiB of memory, more than the {free / 2**30:.1f} GiB free; lower --n")


def cmd_eval(args) -> int:
    args.device = str(resolve_device(args.device))
    src = Path(args.src)
    if args.metrics is None:
        args.metrics = M.default_metrics(args.n, bool(args.inception_weights))
        if "fid" not in args.metrics:
            print(f"--n {args.n}: no FID (it needs more samples than the evaluator's {FEATURE_DIM} feature "
                  f"dimensions); KID, unbiased at any n, scores the distance instead")
    check_eval(src, args.dataset, args.n, args.data_root, bool(args.inception_weights), args.metrics, args.evaluator)
    t0 = time.perf_counter()
    x, y, weights = M.load_labelled_images(src, args.n, args.seed, args.ema, args.device)
    results = M.compute_metrics(x, args.dataset, args.metrics, args.n, data_root=args.data_root,
                                device=args.device, inception_weights=args.inception_weights, labels=y,
                                evaluator=args.evaluator, trained_on=M.training_set(src))
    seconds = time.perf_counter() - t0
    floor = M.real_floor(args.dataset, args.metrics, args.n, data_root=args.data_root, device=args.device,
                         inception_weights=args.inception_weights, shape=(x.shape[1], x.shape[-1]),
                         evaluator=args.evaluator)
    tag = M.protocol(args.dataset, args.n, M.feature_network(args.dataset, args.inception_weights, "cpu",
                                                             args.evaluator)[2])
    real = "real data (folder vs folder)" if args.dataset == "folder" else "real data (train vs test)"
    print_table([(src.name or str(src), results), (real, floor)], tag)
    if y is not None:
        print_per_class(src, results, tag)
    print(f"{args.n} samples" + (" (every class equally often)" if y is not None else "")
          + f", evaluator {args.evaluator or args.dataset}, {seconds:.1f} s")
    record = {**results, "n": args.n, "seed": args.seed, "weights": weights, "seconds": round(seconds, 2),
              "real_floor": floor, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = Path(args.out) if args.out else metrics_file(src)
    key = f"{tag}" + ("" if args.ema is None else ("-ema" if args.ema else "-raw"))
    M.save_results(out, key, record)
    print(f"wrote {out} [{key}]")
    return 0


def cmd_compare(args) -> int:
    args.device = str(resolve_device(args.device))
    runs = [check_run_dir(r) for r in args.runs]
    tag = M.protocol(args.dataset, args.n)
    columns = []
    for run in runs:
        cfg = json.loads((run / "config.json").read_text())["config"]
        results = M.compute_metrics(run, args.dataset, M.METRICS, args.n, args.seed, device=args.device)
        stats = read_stats(run)
        results["_info"] = {"preset": cfg["preset"], "model": cfg["model"], "objective": cfg["objective"],
                            "epochs": stats[-1]["epoch"] if stats else 0,
                            "train_s": stats[-1]["time_s"] if stats else None}
        columns.append((run.name, results))
    floor = M.real_floor(args.dataset, M.METRICS, args.n, device=args.device)
    print_table(columns + [("real data", floor)], tag)
    out = Path(args.out or "comparison")
    if out.exists() and any(out.iterdir()):
        raise GankitError(f"{out}: folder exists and is not empty; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps({name: r for name, r in columns} | {"real_floor": floor},
                                                    indent=1) + "\n")
    # One figure: each run's last fixed-z grid side by side, then losses and FID curves overlaid.
    titles = [f"{run.name}\n{r['_info']['model']} / {r['_info']['objective']}, {r['_info']['epochs']:g} ep\n"
              f"fid_{tag} {r.get(f'fid_{tag}', float('nan')):.2f}" for run, (_, r) in zip(runs, columns)]
    fig = comparison_figure(runs, titles)
    fig.savefig(out / "comparison.png")
    pyplot().close(fig)
    print(f"wrote {out / 'comparison.json'} and {out / 'comparison.png'}")
    return 0


def cmd_evaluator_train(args) -> int:
    if args.dataset == "folder" and not args.data_root:
        raise GankitError("--dataset folder needs --data-root DIR: a folder with one sub-folder of images per class")
    if args.dataset == "folder":
        class_folders(args.data_root)  # one sub-folder per class, checked before any work
    train_evaluator(args.dataset, epochs=args.epochs, seed=args.seed, data_root=args.data_root, out_dir=args.out,
                    image_size=args.image_size, channels=args.channels, name=args.name)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("eval", help="sample quality: FID, KID, IS, precision/recall, density/coverage, classes",
                       description="Score n samples of a generator (or images from a folder or a tensor file) "
                                   "against n real test images with the dataset's evaluator; the real-data floor "
                                   "is printed beside them and everything is merged into metrics.json.")
    p.add_argument("src", help="run folder, saved generator folder, generator .safetensors, folder of PNGs, "
                               "or .npy/.pt images")
    p.add_argument("--metrics", nargs="+", default=None, choices=M.METRICS, metavar="METRIC",
                   help=f"which metrics (default: all of {', '.join(M.METRICS)}; without fid at an --n of "
                        f"{FEATURE_DIM} or less, as a folder of under {2 * FEATURE_DIM + 2} images needs)")
    p.add_argument("--n", type=int, default=M.DEFAULT_N, help=f"samples (and reference test images); default {M.DEFAULT_N}")
    p.add_argument("--dataset", default="fashion-mnist", choices=(*available_evaluators(), "folder"),
                   help="whose evaluator and test set (the datasets with an evaluator, shipped or trained with "
                        "`gankit evaluator train`); folder: the images in --data-root, scored with an evaluator "
                        "trained on them (--evaluator) or --inception-weights (default: fashion-mnist)")
    p.add_argument("--evaluator", default=None, metavar="NAME|PATH",
                   help="an evaluator instead of the dataset's: one `gankit evaluator train` wrote (by its name, e.g. "
                        "a folder's: emoji) or a .safetensors path (its .json card beside it); metrics of an "
                        "evaluator gankit does not ship are named apart (fid_fmnist-1a2b3c-10k, fid_emoji-4d5e6f-1500)")
    p.add_argument("--data-root", default=None, help="where the reference dataset lives (for folder: the image folder)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generated samples (default: 0)")
    p.add_argument("--ema", action=argparse.BooleanOptionalAction, default=None, help="EMA weights (default: when present)")
    add_device(p)
    p.add_argument("--out", default=None, help="the metrics file to merge into (default: metrics.json beside the source)")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="use Inception-v3 features (torch-fidelity's pt_inception-2015-12-05 state dict) "
                        "instead of the evaluator; metric names then read *_inception10k")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="compare runs: metrics table, grids side by side, curves overlaid",
                       description="Score every run with the same protocol and write comparison.json and "
                                   "comparison.png (last grids side by side, losses and FID curves overlaid).")
    p.add_argument("runs", nargs="+", help="run folders")
    p.add_argument("--n", type=int, default=M.DEFAULT_N, help=f"samples per run and reference images (default {M.DEFAULT_N})")
    p.add_argument("--dataset", default="fashion-mnist", choices=available_evaluators(),
                   help="whose evaluator and test set (default: fashion-mnist)")
    p.add_argument("--seed", type=int, default=0, help="seed of every run's samples (default: 0)")
    add_device(p)
    p.add_argument("--out", default=None, help="folder for comparison.json and comparison.png (default: ./comparison)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluator", help="the domain evaluator behind the metrics",
                       description="The small CNN classifier whose features and class probabilities the metrics "
                                   "use (fid_fmnist10k and the rest).")
    es = p.add_subparsers(dest="evaluator_command", required=True, metavar="ACTION")
    t = es.add_parser("train", help="train a dataset's evaluator",
                      description="Train a dataset's evaluator and write <dataset>.safetensors and its card.")
    t.add_argument("--dataset", default="fashion-mnist", choices=("fashion-mnist", "mnist", "folder"),
                   help="the IDX dataset to learn, or folder: the classes of --data-root's sub-folders "
                        "(root/CLASS/image.png; 15 %% of each class held out to test) (default: fashion-mnist)")
    t.add_argument("--epochs", type=int, default=None, help="passes over the training images (default: 8; a folder 20)")
    t.add_argument("--image-size", type=int, default=64, choices=(32, 64, 128),
                   help="a folder's images are judged at this size (default: 64)")
    t.add_argument("--channels", type=int, default=3, choices=(1, 3), help="a folder's channels (default: 3)")
    t.add_argument("--name", default=None, help="the evaluator's name, what --evaluator NAME finds it by (default: "
                                                "the dataset, or the folder's name)")
    t.add_argument("--seed", type=int, default=0, help="seed of the weights and the data order (default: 0)")
    t.add_argument("--data-root", default=None, help="folder with the dataset's IDX files (default: where gankit finds "
                                                     "them), or the image folder")
    t.add_argument("--out", default=None, help="folder for <dataset>.safetensors + .json (default: the user's "
                                                "cache, ~/.cache/gankit/evaluators, where gankit looks too)")
    t.set_defaults(func=cmd_evaluator_train)
