"""Which recipe makes the best pictures in the same wall-clock budget: each recipe trained for
--minutes of training per cell, one thread per cell, --workers cells at a time, from every seed,
scored at the end; the reference recipe (the first of --recipes) trained in the same call. Cells go
seed by seed, so with as many workers as recipes each seed's recipes train at the same time (this
machine's speed drifts between half hours: recipes trained in different hours are not compared
at the same speed).

On a small RGB folder (the default: 1,000 of the emoji, `make emoji`; x-flips off, emoji hold text
and flags): the folder presets (`folder64`: the tuned DCGAN, `fastgan64`: the FastGAN-style
family) against the faces labs' `faces64` + DiffAugment, scored by the folder's evaluator
(`gankit evaluator train --dataset folder --data-root data/emoji`, seed 0: a CNN of the 9
categories; Inception weights are not available offline) with --n samples against --n images of
the whole folder, near-copies judged against the images --subset left out. Named in --recipes only:
the folder presets at 32 and 128 px (`folder32`/`fastgan32`, `folder128`/`fastgan128`: the 64-px emoji
resized; 128-px samples scored by the 64-px evaluator, 32-px ones by an evaluator trained at 32 px,
--evaluator emoji32), R3GAN's loss with R1 + R2 (as below) on `folder64`'s DCGAN (`folder64+rpgan`, its D without
BatchNorm) and on the 64-px residual family (`resnet64+rpgan`), both with `folder64`'s recipe.

On all 60,000 Fashion-MNIST images (`--dataset fashion-mnist`): `default` against R3GAN's objective
(`rpgan` with R1 and R2, lazily every 4th step, Adam β1 0) on `default`'s DCGAN and on the
normalisation-free `resnet` family, scored by the shipped evaluator with --n 10000 samples
against the test split (fid_fmnist10k). Named in --recipes only: the ablations (R1 alone, R1 + R2 at
every step) and the residual family at half its width (`resnet16+rpgan`: widths 16, about a quarter
of the arithmetic per step; `resnet16+rpgan-dlr`: the same with D's learning rate at 1e-4, a quarter of G's;
`resnet+rpgan-g1`, `-g10`: the residual family with R1 and R2 at γ 1 and 10, 10 and 100 times the study's).

Scores: FID, KID, precision, recall, coverage, class entropy, memorised; the real-vs-real floor beside
(FID is biased upwards at a small --n, KID is not: on the 169 smileys --n can be 84 at most, as the
floor needs twice --n real images).

    python bench/recipes.py --minutes 30 --seeds 0 1 2                                  # the emoji study (~4.5 h)
    python bench/recipes.py --dataset fashion-mnist --minutes 10 --seeds 0 1 2           # the modern baseline (~1 h)
    python bench/recipes.py --dataset fashion-mnist --minutes 10 --recipes default+rpgan default+rpgan-noR2 \
        default+rpgan-eager --runs runs/ablation                                          # its ablation (~50 min)
    python bench/recipes.py --recipes folder64 folder64+rpgan --seeds 0                  # R3GAN's loss on the emoji (~35 min)
    python bench/recipes.py --recipes folder64 fastgan64 --seeds 0 --data-root data/emoji/smileys-emotion \
        --subset 100 --n 84 --score kid --runs runs/recipes-smileys                     # few-shot: 100 smileys
    gankit evaluator train --dataset folder --data-root data/emoji --image-size 32 --name emoji32 && \
    python bench/recipes.py --recipes folder32 fastgan32 --seeds 0 1 --evaluator emoji32 \
        --runs runs/recipes-folder32                                                      # 32 px (~65 min)
    python bench/recipes.py --minutes 0.2 --seeds 0 --n 200 --out /tmp/fr.md --runs /tmp/fr   # a look

A seed whose cells' run folders under --runs all finished the same settings is scored again, not
retrained (--retrain: trained anew); if one recipe of a seed is missing, all of that seed's recipes
train again, side by side. Appends to --out (bench/FOLDER_RECIPES.md, or bench/MODERN_BASELINE.md for
Fashion-MNIST) and appends every number of the call to the list beside it (.json), and draws each
recipe's samples of the call's first seed side by side (--figure). --pool adds to the table the
cells of earlier calls in that .json with the same recipes, data, minutes, precision and --n and
other seeds (each seed's recipes trained in one call, beside each other), saying which.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from common import R3GAN, append_result, cell_pool, device_name, mean_std

from gankit.config import preset_config
from gankit.data import training_images
from gankit.metrics import compute_metrics, real_floor
from gankit.metrics.registry import LABELS
from gankit.runs import read_json

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["fid", "kid", "precision", "recall", "coverage", "classes", "memorisation"]  # (kid: unbiased at a small --n)
RECIPES = {  # dataset -> name -> (preset, overrides): what each cell trains
    "folder": {
        "faces64+diffaug": ("faces64", dict(augment="diffaug", epochs=0)),
        "folder64": ("folder64", {}),
        "fastgan64": ("fastgan64", {}),
        "folder64+rpgan": ("folder64", dict(R3GAN, d_norm="none")),  # R3GAN's loss on folder64's DCGAN
        "resnet64+rpgan": ("folder64", dict(R3GAN, model="resnet64")),  # and on the residual family
        "folder128": ("folder128", {}),  # the folder presets at 128x128 (the 64-px emoji upscaled)
        "fastgan128": ("fastgan128", {}),
        "folder32": ("folder32", {}),  # and at 32x32 (the emoji downscaled)
        "fastgan32": ("fastgan32", {}),
    },
    "fashion-mnist": {
        "default": ("default", {}),
        "default+rpgan": ("default", dict(R3GAN, d_norm="none")),
        "default+rpgan-noR2": ("default", dict(R3GAN, d_norm="none", r2=0.0)),  # the ablations: R1 alone,
        "default+rpgan-eager": ("default", dict(R3GAN, d_norm="none", reg_every=1)),  # R1 + R2 at every step
        "resnet": ("default", dict(model="resnet")),
        "resnet+rpgan": ("default", dict(R3GAN, model="resnet")),
        "resnet16+rpgan": ("default", dict(R3GAN, model="resnet", g_width=16, d_width=16)),  # half its width
        "resnet16+rpgan-dlr": ("default", dict(R3GAN, model="resnet", g_width=16, d_width=16, d_lr=1e-4)),  # D slower
        "resnet+rpgan-g1": ("default", dict(R3GAN, model="resnet", r1=1.0, r2=1.0)),  # γ 10x: a smoother D
        "resnet+rpgan-g10": ("default", dict(R3GAN, model="resnet", r1=10.0, r2=10.0)),  # and 100x
    },
}

# Trained only when --recipes names them: the ablations of R3GAN's loss, its loss on the folder families, 32 and 128 px
EXTRAS = {"default+rpgan-noR2", "default+rpgan-eager", "folder64+rpgan", "resnet64+rpgan", "folder128", "fastgan128",
          "folder32", "fastgan32", "resnet16+rpgan", "resnet16+rpgan-dlr", "resnet+rpgan-g1",
          "resnet+rpgan-g10"}


def config(job: dict):
    preset, extra = RECIPES[job["dataset"]][job["recipe"]]
    where = (dict(data_root=job["data_root"], subset=job["subset"], hflip=False) if job["dataset"] == "folder"
             else dict(epochs=0))
    return preset_config(preset, seed=job["seed"], minutes=job["minutes"], precision=job["precision"], eval_every=0,
                         log_every=50, out_dir=job["out"], **where, **extra)


def finished(out: Path, name: str, cfg) -> Path | None:
    """A run folder NNNNN-`name` under `out` whose time budget ended it with `cfg`'s settings."""
    want = {k: v for k, v in cfg.to_dict().items() if k not in ("out_dir", "data_root", "device")}
    for run in sorted(out.glob(f"*-{name}"), reverse=True):
        saved = read_json(run / "config.json")
        if saved.get("budget", {}).get("ended_by") in ("minutes", "steps") and all(
                saved["config"].get(k) == v for k, v in want.items()):
            return run
    return None


def mark_reuse(jobs: list[dict], retrain: bool) -> None:
    """Set each job's "reuse": whether its seed's cells are all finished under --runs (and not
    --retrain). A seed's cells are reused only all together: a recipe trained now beside one
    trained in another hour would meet another machine speed, and the pair would be no pair."""
    for seed in {j["seed"] for j in jobs}:
        mine = [j for j in jobs if j["seed"] == seed]
        done = not retrain and all(finished(Path(j["out"]), j["name"], config(j)) for j in mine)
        for j in mine:
            j["reuse"] = done


def cell(job: dict) -> dict:
    """Train one cell (a worker process of one thread), or take the one an earlier call finished
    when every recipe of its seed was finished there (`job["reuse"]`)."""
    torch.set_num_threads(1)
    from gankit.training import train
    cfg = config(job)
    run = finished(Path(job["out"]), job["name"], cfg) if job["reuse"] else None
    reused = run is not None
    if run is None:
        run = train(cfg, progress=False, run_name=job["name"])
    budget = read_json(run / "config.json")["budget"]
    return {**job, "run": str(run), "reused": reused, "steps": budget["steps"], "train_s": budget["train_time_s"],
            "precision_used": read_json(run / "config.json").get("precision")}


def figure(cells: list[dict], path: Path, score: str = "fid") -> None:
    """Each recipe's seed-0 grid (its last fixed-z grid), side by side, titled with its `score` (FID or KID)."""
    from PIL import Image

    from gankit.runs import last_grid, pyplot
    firsts = [c for c in cells if c["seed"] == min(x["seed"] for x in cells)]
    plt = pyplot()
    fig, axes = plt.subplots(1, len(firsts), figsize=(4 * len(firsts), 4.6), dpi=110, squeeze=False)
    for ax, c in zip(axes[0], firsts):
        ax.imshow(Image.open(last_grid(Path(c["run"]))).convert("RGB"), interpolation="nearest")
        ax.set_axis_off()
        value = f"{c[f'{score}_' + c['tag']]:{'.1f' if score == 'fid' else '.2f'}}"
        ax.set_title(f"{c['recipe']}: {c['steps']:,} steps\n{score} {value}, recall "
                     f"{c['recall_' + c['tag']]:.2f}", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.88, wspace=0.04)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def earlier_calls(path: Path) -> list[dict]:
    """The calls recorded in a results .json (a list, newest last; an older file holds one call)."""
    if not path.exists():
        return []
    calls = json.loads(path.read_text())
    return calls if isinstance(calls, list) else [calls]


def poolable(calls: list[dict], now: dict, recipes: list[str], tag: str) -> list[dict]:
    """Earlier calls' cells that this call's table may pool: the same data, minutes, precision and
    sample count, every recipe of this call trained in that call for the seed (so each seed's
    recipes ran beside each other), and a seed this call did not train; the same evaluator (its
    fingerprint is in the metric's name)."""
    seen, found = {c["seed"] for c in now["cells"]}, []
    for call in reversed(calls):
        if any(call.get(k) != now[k] for k in ("data", "minutes", "precision")) or call.get("n", now["n"]) != now["n"]:
            continue
        cells = [c for c in call["cells"]
                 if c["seed"] not in seen and c["recipe"] in recipes and f"{now.get('score', 'fid')}_{tag}" in c]
        by_seed = {s: [c for c in cells if c["seed"] == s] for s in {c["seed"] for c in cells}}
        cells = [c for s, cs in by_seed.items() if {c["recipe"] for c in cs} == set(recipes)
                 and len({c.get("reused", False) for c in cs}) == 1 for c in cs]  # (trained in one call)
        if cells:
            found.append({**call, "cells": cells})
            seen |= {c["seed"] for c in cells}
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="folder", choices=list(RECIPES))
    ap.add_argument("--data-root", default=str(ROOT / "data" / "emoji"), help="the folder (--dataset folder)")
    ap.add_argument("--evaluator", default="emoji", help="the folder's evaluator (gankit evaluator train; for "
                    "32-px recipes one trained with --image-size 32 --name emoji32)")
    ap.add_argument("--subset", type=int, default=1000, help="images of the folder trained on")
    ap.add_argument("--minutes", type=float, default=30.0, help="minutes of training per cell")
    ap.add_argument("--recipes", nargs="+", choices=[r for d in RECIPES.values() for r in d],
                    help="the first is the reference (default: every recipe of the dataset but the extras: the "
                         "ablations, R3GAN's loss on a folder and the 128-px folder presets)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--score", default="fid", choices=["fid", "kid"],
                    help="the score the table ranks by: kid where --n is below the evaluator's feature dimensions "
                         "(128 for a folder's evaluator), where FID is not defined")
    ap.add_argument("--precision", default="auto", choices=["fp32", "auto"])
    ap.add_argument("--workers", type=int, default=2, help="cells trained at a time, one thread each")
    ap.add_argument("--n", type=int, help="samples scored, against as many real images (default: 1,500 of a "
                                           "folder, 10,000 of Fashion-MNIST's test split)")
    ap.add_argument("--runs", help="where the cells' run folders go (default: runs/recipes-DATASET)")
    ap.add_argument("--out", help="the results file (default: bench/FOLDER_RECIPES.md or bench/MODERN_BASELINE.md)")
    ap.add_argument("--figure", default=None, help="the first seed's grids side by side (PNG)")
    ap.add_argument("--retrain", action="store_true", help="train every cell anew, even where --runs holds a finished "
                                                            "one (cells of one seed trained in different calls)")
    ap.add_argument("--pool", action="store_true", help="pool other seeds' cells of earlier calls (same settings) "
                                                         "from --out's .json into the table")
    args = ap.parse_args()
    folder = args.dataset == "folder"
    args.recipes = args.recipes or [r for r in RECIPES[args.dataset] if r not in EXTRAS]
    if wrong := [r for r in args.recipes if r not in RECIPES[args.dataset]]:
        raise SystemExit(f"--recipes {' '.join(wrong)}: not a recipe for {args.dataset} "
                         f"({', '.join(RECIPES[args.dataset])})")
    args.n = args.n or (1500 if folder else 10000)
    names = NAMES if args.score == "fid" else [k for k in NAMES if k != "fid"]
    args.runs = args.runs or str(ROOT / "runs" / f"recipes-{args.dataset}")
    args.out = args.out or str(ROOT / "bench" / ("FOLDER_RECIPES.md" if folder else "MODERN_BASELINE.md"))
    if folder and not Path(args.data_root).is_dir():
        raise SystemExit(f"{args.data_root}: no such folder (make emoji fetches the emoji)")
    reference, data_root, evaluator = ("folder", args.data_root, args.evaluator) if folder else (args.dataset, None, None)
    t0 = time.perf_counter()
    jobs = [dict(dataset=args.dataset, recipe=r, seed=s, name=f"{r}-s{s}-{args.precision}", data_root=args.data_root,
                 subset=args.subset, minutes=args.minutes, precision=args.precision, out=args.runs)
            for s in args.seeds for r in args.recipes]  # seed-major: the recipes of a seed train side by side
    mark_reuse(jobs, args.retrain)
    cfg0 = config(jobs[0])
    training_images(cfg0, say=print)  # decoded once here (the workers may not start processes)
    with cell_pool(args.workers) as pool:
        cells = pool.map(cell, jobs, chunksize=1)
    for c in cells:
        scores = compute_metrics(c["run"], reference, names, args.n, seed=0, data_root=data_root, evaluator=evaluator)
        c["tag"] = next(k[len(args.score) + 1:] for k in scores
                        if k.startswith(args.score + "_") and not k.endswith("_std"))
        c.update(scores)
        key = f"{args.score}_{c['tag']}"
        print(f"{c['name']}: {c['steps']} steps, {key} {scores[key]:.4g}", flush=True)
    tag = cells[0]["tag"]
    floor = real_floor(  # at the cells' image size (a 64-px folder upscaled for a 128-px recipe)
        reference, names, args.n, data_root=data_root, evaluator=evaluator, shape=(cfg0.channels, cfg0.image_size))
    wall = time.perf_counter() - t0
    what = f"{args.subset:,} images of {args.data_root}" if folder else f"all of {args.dataset}"
    result = {"score": args.score, "device": device_name("cpu"), "torch": torch.__version__, "minutes": args.minutes,
              "data": what, "precision": args.precision, "n": args.n, "date": time.strftime("%Y-%m-%d"),
              "wall_s": round(wall),
              "real_floor": floor, "cells": cells}
    calls = earlier_calls(Path(args.out).with_suffix(".json"))
    pooled = poolable(calls, result, args.recipes, tag) if args.pool else []
    table = cells + [c for call in pooled for c in call["cells"]]
    cols = [args.score] + [k for k in ["fid", "kid", "precision", "recall", "coverage", "class_entropy", "memorised"]
                           if k != args.score]
    cols = [k for k in cols if all(f"{k}_{tag}" in c for c in table)]  # (cells pooled from before KID: no KID)
    rows = []
    for r in args.recipes:
        mine = [c for c in table if c["recipe"] == r]
        vals = [mean_std([c[f"{k}_{tag}"] for c in mine], ".2f" if k == "fid" else ".3f") for k in cols]
        rows.append(f"| `{r}` | {statistics.mean(c['steps'] for c in mine):,.0f} | " + " | ".join(vals) + " |")
    rows.append("| real data | - | " + " | ".join(
        f"{floor[f'{k}_{tag}']:.3f}" if f"{k}_{tag}" in floor else "-" for k in cols) + " |")
    key = f"{args.score}_{tag}"
    ref = statistics.mean(c[key] for c in table if c["recipe"] == args.recipes[0])
    best = min(args.recipes, key=lambda r: statistics.mean(c[key] for c in table if c["recipe"] == r))
    best_score = statistics.mean(c[key] for c in table if c["recipe"] == best)
    seeds = sorted({c["seed"] for c in table})
    default_root = Path(ap.get_default("data_root")).resolve()
    where_flags = "".join((  # the flags that differ from their defaults, so the line reruns this call
        f" --data-root {os.path.relpath(args.data_root, ROOT)}"
        if folder and Path(args.data_root).resolve() != default_root else "",
        f" --subset {args.subset}" if folder and args.subset != ap.get_default("subset") else "",
        f" --evaluator {args.evaluator}" if folder and args.evaluator != ap.get_default("evaluator") else "",
        f" --n {args.n}" if args.n != (1500 if folder else 10000) else "",
        f" --score {args.score}" if args.score != "fid" else "",
        f" --runs {os.path.relpath(args.runs, ROOT)}"
        if Path(args.runs).resolve() != ROOT / "runs" / f"recipes-{args.dataset}" else ""))
    text = (f"\n## {result['date']}: {what}, {args.minutes:g} minutes of training per cell, seeds "
            f"{seeds}, precision {args.precision}\n\n"
            f"Measured by `python bench/recipes.py --dataset {args.dataset} --recipes {' '.join(args.recipes)} "
            f"--minutes {args.minutes:g} --seeds {' '.join(map(str, args.seeds))} --precision {args.precision}"
            f"{where_flags}{' --retrain' if args.retrain else ''}{' --pool' if args.pool else ''}` on "
            f"{result['device']}, torch "
            f"{torch.__version__}; {args.workers} cells at a time, one thread each; "
            f"{sum(c['reused'] for c in cells)} of {len(cells)} cells reused from an earlier call; {wall / 60:.0f} min "
            f"in this call. Mean ± std over the seeds; {args.n:,} samples of each EMA generator against {args.n:,} "
            f"real images ({'of the folder' if folder else 'the test split'}), evaluator `{tag}`."
            + "".join(f" The cells of seed(s) {', '.join(str(x) for x in sorted({c['seed'] for c in call['cells']}))} "
                      f"are pooled from the call of {call['date']} ({call['device']}, {call['wall_s'] / 60:.0f} min)."
                      for call in pooled) + "\n\n"
            f"| recipe | steps | {key} | " + " | ".join(LABELS.get(k, k) for k in cols[1:]) + " |\n"
            "|---|---|" + "---|" * len(cols) + "\n" + "\n".join(rows) + "\n\n"
            + f"Per cell (seed: steps, {args.score}): " + "; ".join(
                f"`{r}` " + ", ".join(f"{c['seed']}: {c['steps']:,}, {c[key]:{'.2f' if args.score == 'fid' else '.3f'}}"
                                      for c in sorted(table, key=lambda c: c["seed"]) if c["recipe"] == r)
                for r in args.recipes) + ".\n")
    if args.figure:
        figure(cells, Path(args.figure), args.score)
        where = os.path.relpath(Path(args.figure).resolve(), Path(args.out).resolve().parent)
        text += f"\n![samples of seed {min(args.seeds)}]({where})\n"
    append_result(args.out, "Recipes in the same time", "Written by bench/recipes.py; newest at the bottom.", text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(calls + [result], indent=1, default=str))
    print(text)
    print(f"best: {best}, {key} {best_score:.4g} = {best_score / ref:.2f}x the reference {args.recipes[0]}'s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
