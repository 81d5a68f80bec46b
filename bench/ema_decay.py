"""Which EMA decay of G suits a budget? One training run per seed, with extra exponential moving
averages of G at other decays riding along (Yazıcı et al. 2019 on averaging in GANs): the training
itself is the preset's, and since a decay changes nothing but the average that is shown, one
trajectory answers for every decay. Each average, and G itself (decay 0), is judged at the end by
the same evaluator (fid_fmnist10k by default), mean ± std over seeds.

    python bench/ema_decay.py --preset default --minutes 30 --decays 0.999 0.9995 0.9998 0.9999 --seeds 0 1 2

gankit's EMA warms up as d_t = min(decay, (1 + t) / (10 + t)) after t G steps, so a decay only
takes effect after 1 / (1 - decay) - 10 steps: up to then every decay's average is the same, one
over roughly the last tenth of the steps (0.9999: for the first 99990 steps). The extra averages are
updated in the loop's time, so the run makes a few steps fewer than it would alone; the script
reports how many. Appends its table to bench/EMA.md; the last line names the best decay.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from common import append_result, device_name, mean_std
from gankit.export import load_generator
from gankit.config import preset_config
from gankit.nets import EMA
from gankit.metrics import make_judge
from gankit.runs import read_stats
from gankit.training import state as training_state, train
from time_to_quality import overrides


class RidingEMA(EMA):
    """The run's own EMA, plus one EMA per extra decay that follows every update it makes; they are
    no submodules, so nothing of them reaches the checkpoints or the export."""
    decays: tuple[float, ...] = ()
    last: "RidingEMA | None" = None

    def __init__(self, model: torch.nn.Module, decay: float):
        super().__init__(model, decay)
        self.riders = {d: EMA(model, d) for d in self.decays if d != decay}
        RidingEMA.last = self

    def update(self, model: torch.nn.Module) -> None:
        super().update(model)
        for rider in self.riders.values():
            rider.update(model)

    def averages(self) -> dict[float, torch.nn.Module]:
        return {self.decay: self.module, **{d: r.module for d, r in self.riders.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="default", help="a preset with an EMA (its decay is one of those judged)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides on top of the preset")
    ap.add_argument("--decays", type=float, nargs="+", default=[0.999, 0.9995, 0.9998, 0.9999])
    ap.add_argument("--minutes", type=float, default=3.0, help="training minutes per seed")
    ap.add_argument("--steps", type=int, default=0, help="train this many steps instead (a smoke test)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--n", type=int, default=10000, help="samples judged per average")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(Path(__file__).with_name("EMA.md")))
    args = ap.parse_args()
    if not all(0 < d < 1 for d in args.decays):
        raise SystemExit(f"--decays are EMA decays in (0, 1), got {args.decays}")
    kw = overrides(args.set)
    cfg0 = preset_config(args.preset, **kw)
    if cfg0.ema == 0:
        raise SystemExit(f"preset {args.preset} keeps no EMA of G (ema 0); give one, e.g. --set ema=0.999")
    RidingEMA.decays = tuple(args.decays)
    scores: dict[float, list[dict]] = {}  # decay (0: G itself) -> one metrics dict per seed
    steps = []
    for seed in args.seeds:
        judge = make_judge("fashion-mnist", args.n, seed + 2, cfg0.z_dim, torch.device(args.device))
        budget = dict(steps=args.steps) if args.steps else dict(minutes=args.minutes, epochs=1000)
        with tempfile.TemporaryDirectory() as tmp:
            cfg = preset_config(args.preset, **{**kw, **budget, "precision": args.precision, "seed": seed,
                                                "device": args.device, "eval_every": 0, "keep": 0, "out_dir": tmp})
            with mock.patch.object(training_state, "EMA", RidingEMA):  # the run's EMA, with the extra averages riding along
                run = train(cfg, progress=False)
            steps.append(read_stats(run)[-1]["step"])
            # G itself (decay 0) as the run exported it, and every average of it.
            averages = {0.0: load_generator(run, ema=False, device=args.device), **RidingEMA.last.averages()}
        for decay, net in sorted(averages.items()):
            scores.setdefault(decay, []).append(judge(net))
            print(f"seed {seed}, {steps[-1]} steps: decay {decay:g} fid_{judge.tag} "
                  f"{scores[decay][-1]['fid_' + judge.tag]:.2f}", flush=True)
    tag = judge.tag
    m = lambda d, key, fmt: mean_std([s[f"{key}_{tag}"] for s in scores[d]], fmt)  # noqa: E731
    rows = [f"| {'G itself (no average)' if d == 0 else f'{d:g}'}{' (the preset)' if d == cfg0.ema else ''} "
            f"| {m(d, 'fid', '.2f')} | {m(d, 'precision', '.3f')} | {m(d, 'recall', '.3f')} | {m(d, 'coverage', '.3f')} |"
            for d in sorted(scores)]
    budget_text = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
    cmd = (f"python bench/ema_decay.py --preset {args.preset}" + (f" --set {' '.join(args.set)}" if args.set else "")
           + f" --decays {' '.join(f'{d:g}' for d in args.decays)} "
           + (f"--steps {args.steps}" if args.steps else f"--minutes {args.minutes:g}")
           + f" --seeds {' '.join(map(str, args.seeds))} --n {args.n} --precision {args.precision} --device {args.device}")
    fid = {d: statistics.mean(s[f"fid_{tag}"] for s in v) for d, v in scores.items()}
    best = min(fid, key=fid.get)
    best_name = "G itself (no average)" if best == 0 else f"decay {best:g}"
    summary = (f"after {budget_text} of `{args.preset}` ({statistics.mean(steps):.0f} steps, {len(args.seeds)} seed(s)): "
               f"the best average is {best_name}, fid_{tag} {fid[best]:.2f} against {fid[cfg0.ema]:.2f} for the "
               f"preset's {cfg0.ema:g} ({fid[best] / fid[cfg0.ema]:.2f}x)")
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device_name(args.device)}, torch {torch.__version__}\n\n`{cmd}`\n\n"
            f"Steps per seed: {', '.join(map(str, steps))}.\n\n"
            f"| EMA decay | fid_{tag} | precision | recall | coverage |\n|---|---|---|---|---|\n" + "\n".join(rows)
            + f"\n\n{summary}\n")
    append_result(args.out, "EMA decay of G for a budget", "One trajectory per seed, every average judged at its end; "
                  "measured by bench/ema_decay.py.", text)
    print(summary)


if __name__ == "__main__":
    main()
