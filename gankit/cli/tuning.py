"""`gankit tune` and `gankit grid`: thin shells over gankit.tuning (the [tune] extra)."""
from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..metrics import DEFAULT_N
from ..tuning.sweep import run_sweep
from ..tuning.tune import Settings, open_study, optimize, print_table, write_results
from ..training import TrainingStopped
from .flags import add_device, renamed
from .metrics import print_table as print_metrics_table


def _fixed(args) -> dict:
    """Overrides every run of the study shares (where and how fast it runs)."""
    return {k: v for k, v in (("device", args.device), ("precision", args.precision)) if v is not None}


def _budget_flags(p, default_what: str) -> None:
    g = p.add_argument_group("budget of each run (one of)")
    g.add_argument("--epochs", type=int, default=None, help=f"epochs per run ({default_what})")
    g.add_argument("--steps", type=int, default=None, help="D steps per run")
    g.add_argument("--minutes", type=float, default=None, help="minutes of training per run (evaluations not counted)")
    add_device(p)
    p.add_argument("--precision", default=None, choices=("fp32", "bf16", "auto"),
                   help="precision of every run (default: the preset's)")


def _budget(args) -> dict:
    given = {k: getattr(args, k) for k in ("epochs", "steps", "minutes") if getattr(args, k) is not None}
    if len(given) > 1:
        raise ConfigError(f"give one budget, not {' and '.join('--' + k for k in given)}")
    for k, v in given.items():
        if not v > 0:
            raise ConfigError(f"--{k} must be > 0, got {v:g}")
    return given


def cmd_tune(args) -> int:
    budget = _budget(args)
    joining = args.preset is None and not args.param
    if joining and (budget or args.trials is not None):
        raise ConfigError(f"joining study '{args.name}' takes its own settings; name --preset and --param to start "
                          f"a new study")
    settings = None if joining else Settings(
        preset=args.preset or "default", params=args.param, trials=args.trials if args.trials is not None else 20,
        **(budget or {"epochs": 1}), evals=args.evals, seed=args.seed, eval_n=args.eval_n, pruner=args.pruner,
        fixed=_fixed(args))
    study, settings, space, folder = open_study(args.name, args.out_dir, args.storage, settings)
    print(f"study {args.name}: {settings.preset}, {settings.trials} trials of {settings.describe_budget()}, "
          f"searching {' '.join(settings.params)}; trials in {folder}")
    try:
        ran = optimize(study, settings, space, folder)
    except (TrainingStopped, KeyboardInterrupt):
        write_results(study, settings, folder)
        print(f"gankit tune: interrupted; the study is kept. Go on with: gankit tune --name {args.name}"
              + (f" --out-dir {args.out_dir}" if args.out_dir != "runs" else "")
              + (f" --storage {args.storage}" if args.storage else ""))
        return 130
    result = write_results(study, settings, folder)
    print_table(result)
    print(f"this process ran {ran} trial(s); results in {folder} (results.json, best.json, *.png); "
          f"`gankit report {folder}` writes the study's report")
    return 0


def cmd_grid(args) -> int:
    # (an --eval-n the evaluator cannot take is refused by Config.validate in run_sweep, before any folder)
    during = {} if args.eval_n is None else {"eval_every": 0} if args.eval_n == 0 else {"eval_n": args.eval_n}
    result = run_sweep(args.name, args.presets, args.vary, args.seeds, _budget(args), {**_fixed(args), **during},
                       args.out_dir, args.n)
    print()
    print_metrics_table([(c["cell"], c) for c in result["cells"]], result["tag"])
    c = result["balance"]
    if c["rho"] is not None:
        print(f"balance index vs fid_{result['tag']} over {c['n']} runs: Spearman rho {c['rho']:+.2f} (p = {c['p']:.2g})")
    print(f"mean ± std over seeds {' '.join(map(str, result['seeds']))}; results in {args.out_dir}/{args.name} "
          f"(results.json, comparison.png, balance_vs_fid.png); `gankit report {args.out_dir}/{args.name}` for the report")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("tune", help="a hyperparameter study on Optuna (needs gankit[tune])",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Search a preset's hyperparameters with Optuna. Each trial is a run folder under "
                                   "OUT_DIR/STUDY/, scored by its best in-training FID and pruned from its "
                                   "evaluations. Run the same command in several processes (or machines, with "
                                   "--storage postgresql://...) to share the trials; Ctrl-C keeps a resumable study.",
                       epilog="--param syntax:\n  d_lr=log:1e-5:1e-3   log-uniform float\n"
                              "  g_betas.0=0:0.9      uniform float (.0/.1: one of the two betas)\n"
                              "  n_critic=int:1:5     whole number\n  objective=bce,hinge  one of the values\n"
                              "example:\n  gankit tune --name lrs --preset lab6-dcgan --param d_lr=log:1e-5:1e-3 "
                              "--param g_lr=log:1e-5:1e-3 --trials 20 --epochs 1")
    p.add_argument("--name", required=True, help="the study's name (its folder: OUT_DIR/NAME)")
    renamed(p, "--study", "--name")
    p.add_argument("--preset", default=None, help="preset every trial starts from (default: default)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=SPEC", help="a searched parameter (repeat)")
    p.add_argument("--trials", type=int, default=None, help="trials in the study, all workers together (default 20)")
    _budget_flags(p, "default 1")
    p.add_argument("--evals", type=int, default=4,
                   help="evaluations per trial, spread over the budget (with --minutes: one per epoch and one at "
                        "the end); the pruner judges them (default 4)")
    p.add_argument("--eval-n", type=int, default=None, help="samples per evaluation (default: the preset's, 5000)")
    p.add_argument("--seed", type=int, default=0, help="the run seed of every trial (default 0)")
    p.add_argument("--pruner", default="median", choices=("median", "none"),
                   help="median: stop a trial whose FID is worse than the median of earlier trials at the same step "
                        "(after 5 trials, from a trial's second evaluation on); none: never")
    p.add_argument("--storage", default=None,
                   help="Optuna storage: a database URL (postgresql://user:pw@host/db) for workers on several "
                        "machines, or a journal file (default: OUT_DIR/NAME/study.journal)")
    p.add_argument("--out-dir", default="runs", help="parent folder of the study folder (default: runs)")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("grid", help="a grid of presets x field values x seeds, scored and compared",
                       description="Train every preset (x every combination of --vary values) with every seed, score "
                                   "each run with the evaluator, and compare the cells as mean ± std over the seeds.",
                       epilog="example: gankit grid --presets lab6-gan lab6-dcgan lab6-wgan --seeds 0 1 2 --epochs 1")
    p.add_argument("--presets", nargs="+", required=True, help="presets to compare")
    renamed(p, "--grid", "--vary")
    p.add_argument("--vary", action="append", default=[], metavar="FIELD=a,b",
                   help="also vary a field over these values (repeat for a grid)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds of each cell (default: 0 1 2)")
    _budget_flags(p, "default: the preset's")
    p.add_argument("--n", type=int, default=DEFAULT_N, help=f"samples per final evaluation (default {DEFAULT_N})")
    p.add_argument("--eval-n", type=int, default=None,
                   help="samples per evaluation during each run's training (its quality.jsonl and FID curve; default: "
                        "the preset's, 5000); 0: none, only the final evaluation")
    p.add_argument("--name", default="grid", help="the grid's folder name under OUT_DIR (default: grid)")
    p.add_argument("--out-dir", default="runs", help="parent folder (default: runs)")
    p.set_defaults(func=cmd_grid)
