"""`gankit grid`: a grid of presets × field values × seeds, as the seeds' "GAN vs DCGAN vs WGAN"
comparison in one command.

    runs/<name>/sweep.json                 the grid
    runs/<name>/NNNNN-<cell>-s<seed>/      one ordinary run folder per cell and seed, scored by the
                                            evaluator after training (its metrics.json, as `gankit eval`)
    runs/<name>/results.json               per cell: mean ± std over the seeds of every metric; per run:
                                            the scores and the balance index
    runs/<name>/comparison.png             each cell's grid (first seed) and curves, as `gankit compare`
    runs/<name>/balance_vs_fid.png         every run's balance index against its FID, Spearman's rho

Run again, the same command skips runs already scored and resumes interrupted ones.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import statistics
import time
from pathlib import Path

from .. import metrics as M
from ..config import preset_config
from ..errors import ConfigError, RunError
from ..files import atomic_write_text
from ..runs import RUN_RE, comparison_figure, pyplot, read_stats
from ..runs import balance
from ..training import train
from .space import apply, parse_param


def cells(presets: list[str], grid: list[str]) -> list[tuple[str, dict]]:
    """(preset, overrides) for every combination, checked: each makes a valid config."""
    if not presets:
        raise ConfigError("give at least one preset: --presets lab6-gan lab6-dcgan lab6-wgan")
    if len(set(presets)) != len(presets):
        raise ConfigError("a preset is listed twice in --presets")
    axes = []
    for text in grid:
        try:
            p = parse_param(text)
        except ConfigError as e:  # (parse_param speaks of tune's --param; here the flag is --vary)
            raise ConfigError(str(e).replace("--param ", "--vary ", 1)) from None
        if p.kind != "choice":
            raise ConfigError(f"--vary {text}: a grid lists values (FIELD=a,b,c), not a range")
        axes.append([(p.name, v) for v in p.choices])
    out = []
    for preset in presets:
        for combo in itertools.product(*axes):
            overrides = dict(combo)
            try:
                preset_config(preset, **apply({}, overrides)).validate()
            except ConfigError as e:
                what = " ".join(f"{k}={v}" for k, v in overrides.items())
                raise ConfigError(f"{preset}{' with ' + what if what else ''}: {e}") from None
            out.append((preset, overrides))
    return out


def cell_name(preset: str, overrides: dict) -> str:
    return "-".join([preset, *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in overrides.items())])


def find_run(folder: Path, name: str) -> Path | None:
    found = sorted(p for p in folder.iterdir() if RUN_RE.match(p.name) and p.name[6:] == name) if folder.is_dir() else []
    return found[-1] if found else None


def run_sweep(name: str, presets: list[str], grid: list[str], seeds: list[int], budget: dict, fixed: dict,
              out_dir: str = "runs", n: int = M.DEFAULT_N, say=print) -> dict:
    """Train and score every cell × seed not yet scored, then write the results."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError("--seeds needs distinct seeds, e.g. --seeds 0 1 2")
    if len(budget) > 1:
        raise ConfigError("give at most one budget: --epochs, --steps or --minutes")
    if n <= 128:
        raise ConfigError(f"--n must exceed the evaluator's 128 feature dimensions, got {n}")
    grid_cells = cells(presets, grid)
    folder = Path(out_dir) / name
    for preset, overrides in grid_cells:
        cfg = preset_config(preset, **apply({**fixed, **budget}, overrides))
        cfg.validate()
        if not cfg.judged_in_training():
            raise ConfigError(f"{preset}: gankit's evaluators judge 28x28 Fashion-MNIST/MNIST images, not "
                              f"{cfg.dataset} at {cfg.image_size}x{cfg.image_size}; a grid scores every run")
    folder.mkdir(parents=True, exist_ok=True)
    record = {"sweep": name, "presets": presets, "grid": grid, "seeds": seeds, "budget": budget, "fixed": fixed, "n": n}
    saved = folder / "sweep.json"
    if saved.exists() and json.loads(saved.read_text()) != record:
        raise ConfigError(f"{saved}: this folder holds a grid with other cells; name a new one with --name")
    atomic_write_text(saved, json.dumps(record, indent=2) + "\n")
    tag = M.protocol("fashion-mnist", n)
    todo = [(p, o, s) for p, o in grid_cells for s in seeds]
    for i, (preset, overrides, seed) in enumerate(todo, 1):
        run_name = f"{cell_name(preset, overrides)}-s{seed}"
        run = find_run(folder, run_name)
        metrics_path = run / "metrics.json" if run else None
        if metrics_path and metrics_path.exists() and tag in json.loads(metrics_path.read_text()):
            say(f"[{i}/{len(todo)}] {run_name}: scored already ({run.name})")
            continue
        cfg = preset_config(preset, **apply({**fixed, **budget, "seed": seed, "out_dir": str(folder)}, overrides))
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # each run's log is in its folder
            try:
                run = train(cfg, resume=run, command=["gankit", "grid", "--name", name], progress=False,
                            run_name=run_name)
            except RunError as e:  # trained to its end, not yet scored
                if run is None or "already trained" not in str(e):
                    raise
        scores = M.compute_metrics(run, "fashion-mnist", M.METRICS, n, 0)
        M.save_results(run / "metrics.json", tag, {**scores, "n": n, "seed": 0, "ema": None,
                                                  "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        say(f"[{i}/{len(todo)}] {run_name}: fid_{tag} {scores[f'fid_{tag}']:.2f}, {time.perf_counter() - t0:.0f} s "
            f"[{run}]")
    return write_results(folder, grid_cells, seeds, tag)


def write_results(folder: Path, grid_cells: list[tuple[str, dict]], seeds: list[int], tag: str) -> dict:
    runs, table = [], []
    for preset, overrides in grid_cells:
        cell = cell_name(preset, overrides)
        per_seed = []
        for seed in seeds:
            run = find_run(folder, f"{cell}-s{seed}")
            scores = json.loads((run / "metrics.json").read_text())[tag]
            cfg = json.loads((run / "config.json").read_text())["config"]
            stats = read_stats(run)
            per_seed.append(scores)
            quality = read_stats(run, "quality.jsonl")  # (its train_time_s leaves the evaluations out)
            runs.append({"cell": cell, "seed": seed, "run": str(run),
                         "train_time_s": quality[-1]["train_time_s"] if quality else stats[-1]["time_s"] if stats else None,
                         **{k: v for k, v in scores.items() if isinstance(v, float)},
                         **balance.summarize(stats, cfg["n_critic"])})
        mean = {}
        for key in per_seed[0]:
            values = [s[key] for s in per_seed if isinstance(s.get(key), float)]
            if len(values) == len(per_seed) and key.endswith(tag):
                mean[key] = statistics.fmean(values)
                if len(values) > 1:
                    mean[f"{key}_std"] = statistics.stdev(values)
        table.append({"cell": cell, "preset": preset, "overrides": overrides, **mean})
    fid = f"fid_{tag}"
    points = [(r["balance_index"], r[fid]) for r in runs if r.get("balance_index") is not None]
    result = {"tag": tag, "seeds": seeds, "cells": table, "runs": runs, "balance": balance.correlate(points)}
    if points:
        balance.scatter(points, folder / "balance_vs_fid.png", f"sweep {folder.name}: runs", fid,
                        labels=[r["cell"] for r in runs if r.get("balance_index") is not None])
    firsts = [find_run(folder, f"{cell_name(p, o)}-s{seeds[0]}") for p, o in grid_cells]
    titles = [f"{c['cell']}\n{fid} {c[fid]:.2f}" + (f" ± {c[fid + '_std']:.2f}" if fid + "_std" in c else "")
              + f"\n(seed {seeds[0]} shown)" for c in table]
    fig = comparison_figure(firsts, titles)
    fig.savefig(folder / "comparison.png")
    pyplot().close(fig)
    atomic_write_text(folder / "results.json", json.dumps(result, indent=1) + "\n")
    return result
