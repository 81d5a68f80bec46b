"""The seeds' three questions, answered with data (issue #18):

1. Which learning rates and betas? A `gankit tune` study of `lab6-dcgan` (--trials trials of a
   one-epoch budget, Optuna's TPE sampler, median pruning), then its best config and the preset
   itself trained from --seeds each and scored with fid_fmnist10k: does the best config beat the
   preset by more than the seed spread?
2. GAN vs DCGAN vs WGAN: `gankit grid` of lab6-gan, lab6-dcgan and lab6-wgan over the same seeds
   and budget.
3. Does the "crossing" of the loss curves predict quality? The balance index (gankit/balance.py)
   of every trial and every sweep run against its FID: Spearman's rho.

    python bench/tune_study.py [--trials 20] [--epochs 1 | --steps N] [--seeds 0 1 2]
                               [--out-dir bench-runs] [--out bench/TUNE.md] [--figures docs]

With the defaults about 1 h 15 min on a 2-core CPU (fp32, so the figures hold on CPUs without bf16).
Appends its tables to --out and writes its figures as <figures>/tune_*.png; the last line says
whether the tuned config beat the preset.
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import torch

from common import append_result, device_name
from gankit.runs.balance import correlate
from gankit.tuning.sweep import run_sweep
from gankit.tuning.tune import Settings, open_study, optimize, print_table, write_results

SPACE = ["d_lr=log:2e-5:2e-3", "g_lr=log:2e-5:2e-3", "d_betas.0=0:0.9", "g_betas.0=0:0.9"]


def mean_std(cell: dict, key: str) -> tuple[float, float]:
    return cell[key], cell.get(f"{key}_std", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=None, help="a step budget instead of --epochs (smoke tests)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-n", type=int, default=None, help="samples per in-training evaluation (default 5000)")
    ap.add_argument("--n", type=int, default=10000, help="samples of the final fid of sweep runs (default 10000)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out-dir", default="bench-runs", help="where the study and sweeps put their runs")
    ap.add_argument("--name", default="lab6-dcgan-tune", help="the study's name")
    ap.add_argument("--out", default="bench/TUNE.md")
    ap.add_argument("--figures", default="docs", help="folder for the figures (tune_*.png); '' for none")
    args = ap.parse_args()
    t0 = time.perf_counter()
    budget = {"steps": args.steps} if args.steps else {"epochs": args.epochs}
    fixed = {"device": args.device, "precision": "fp32"}

    # 1. the study
    settings = Settings(preset="lab6-dcgan", params=SPACE, trials=args.trials, **budget, seed=0, eval_n=args.eval_n,
                        fixed=fixed)
    study, settings, space, folder = open_study(args.name, args.out_dir, None, settings)
    optimize(study, settings, space, folder)
    result = write_results(study, settings, folder)
    table: list[str] = []
    print_table(result, say=table.append)
    print("\n".join(table))
    import optuna  # (gankit[tune])
    importances = optuna.importance.get_param_importances(study)  # fANOVA, as importances.png draws them
    best = result["best"]

    # 2. the preset, the seeds' three models, and the best config, each from every seed
    labs = run_sweep(f"{args.name}-labs", ["lab6-gan", "lab6-dcgan", "lab6-wgan"], [], args.seeds, budget, fixed,
                     args.out_dir, args.n)
    grid = [f"{k}={v!r}" for k, v in best["params"].items()]
    tuned = run_sweep(f"{args.name}-best", ["lab6-dcgan"], grid, args.seeds, budget, fixed, args.out_dir, args.n)
    tag = labs["tag"]
    fid = f"fid_{tag}"
    preset_cell = next(c for c in labs["cells"] if c["preset"] == "lab6-dcgan")
    (pm, ps), (bm, bs) = mean_std(preset_cell, fid), mean_std(tuned["cells"][0], fid)
    margin, spread = pm - bm, ps + bs
    beats = margin > spread

    # 3. the balance index against FID
    runs = labs["runs"] + tuned["runs"]
    sweep_points = [(r["balance_index"], r[fid]) for r in runs if r.get("balance_index") is not None]
    complete = [r for r in result["trials"] if r["state"] == "complete"]  # (pruned ones trained less)
    even_trials = correlate([(r["evenness"], r["best_fid"]) for r in complete if r["evenness"] is not None])
    even_sweep = correlate([(r["evenness"], r[fid]) for r in runs if r.get("evenness") is not None])
    c_trials, c_sweep = result["balance"], correlate(sweep_points)

    train_s = sum(r["train_time_s"] or 0 for r in result["trials"]) + sum(r["train_time_s"] or 0 for r in runs)

    def rho(c: dict) -> str:
        return f"rho {c['rho']:+.2f} (p = {c['p']:.2g}, n = {c['n']})" if c["rho"] is not None else f"n = {c['n']}: -"

    figures = []
    if args.figures:
        out = Path(args.figures)
        out.mkdir(parents=True, exist_ok=True)
        for src, name in ((folder / "history.png", "tune_history.png"), (folder / "importances.png", "tune_importances.png"),
                          (folder / "balance_vs_fid.png", "tune_balance_trials.png"),
                          (Path(args.out_dir) / f"{args.name}-labs" / "comparison.png", "tune_labs_comparison.png"),
                          (Path(args.out_dir) / f"{args.name}-labs" / "balance_vs_fid.png", "tune_balance_sweep.png")):
            if src.exists():
                shutil.copy(src, out / name)
                figures.append(str(out / name))
    what = f"{args.steps} steps" if args.steps else f"{args.epochs} epoch(s)"
    seeds = " ".join(map(str, args.seeds))
    cell_rows = [f"| {c['cell']} | {c[fid]:.2f} ± {c.get(fid + '_std', 0):.2f} | "
                 f"{c.get('precision_' + tag, float('nan')):.3f} | {c.get('recall_' + tag, float('nan')):.3f} | "
                 f"{c.get('coverage_' + tag, float('nan')):.3f} |" for c in labs["cells"] + tuned["cells"]]
    balance_rows = [f"| {r['cell']} s{r['seed']} | {r.get('balance_index', float('nan')):.3f} | "
                    f"{r.get('crossings_per_epoch', float('nan')):.0f} | {r.get('g_above', float('nan')):.3f} | "
                    f"{r[fid]:.2f} |" for r in runs]
    verdict = (f"the tuned config beats the preset: {fid} {bm:.2f} ± {bs:.2f} vs {pm:.2f} ± {ps:.2f} "
               f"(margin {margin:.2f} > seed spread {spread:.2f}, the two stds added)" if beats else
               f"the study could not beat the preset by more than the seed spread: {fid} {bm:.2f} ± {bs:.2f} vs "
               f"{pm:.2f} ± {ps:.2f} (margin {margin:.2f}, seed spread {spread:.2f})")
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {args.trials} trials of {what}, seeds {seeds}\n\n"
            f"{device_name(args.device)}, torch {torch.__version__}, fp32; {train_s / 60:.0f} min of training in "
            f"all (trials and sweep runs, evaluations not counted); this invocation {time.perf_counter() - t0:.0f} s "
            f"(runs already made in --out-dir are reused).\n\n"
            f"### 1. The study: `lab6-dcgan`, searching {' '.join(SPACE)}\n\n"
            f"Each trial trains {what} from seed 0, evaluated 4 times (fid_fmnist5k of 5,000 samples at the default "
            f"eval_n; median pruning after 5 trials); its score is its best evaluation.\n\n```\n"
            + "\n".join(table) + "\n```\n\n"
            "fANOVA importances (docs/tune_importances.png): "
            + ", ".join(f"{k} {v:.2f}" for k, v in importances.items()) + "\n\n"
            f"The best config and the preset, each trained from seeds {seeds} and scored after training by "
            f"`gankit eval`'s protocol ({fid}, {args.n:,} samples, EMA weights where present; mean ± std over "
            f"the seeds):\n\n| cell | {fid} | precision | recall | coverage |\n|---|---|---|---|---|\n"
            + "\n".join(cell_rows) + f"\n\n**Verdict**: {verdict}.\n\n"
            f"### 2. GAN vs DCGAN vs WGAN (`gankit grid`, {what}, seeds {seeds})\n\nThe first three rows above.\n\n"
            f"### 3. Does the crossing of the loss curves predict quality?\n\n"
            f"Balance index = share of G steps at which the order of loss_G and loss_D/2 flips (gankit/training/balance.py; "
            f"none for WGAN). Spearman rank correlation with FID (negative: more crossing, better samples):\n\n"
            f"- completed study trials (best fid_fmnist5k; pruned trials left out, they trained a quarter of the "
            f"budget): balance index {rho(c_trials)}; evenness {rho(even_trials)}\n"
            f"- sweep runs ({fid}): balance index {rho(c_sweep)}; evenness {rho(even_sweep)}\n\n"
            f"| run | balance index | crossings / epoch | loss_G above | {fid} |\n|---|---|---|---|---|\n"
            + "\n".join(balance_rows) + "\n\n" + (f"Figures: {', '.join(figures)}\n" if figures else ""))
    append_result(args.out, "Tuning study, the seeds' comparison and the balance index",
                  "Written by `python bench/tune_study.py`; each section is one run of it.", text)
    print(f"balance index vs FID: trials {rho(c_trials)}; sweep runs {rho(c_sweep)}")
    print(verdict)


if __name__ == "__main__":
    main()
