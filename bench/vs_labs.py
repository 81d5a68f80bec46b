"""What a preset buys against the labs' loop in the same training time: each `--presets` entry
trained by gankit for `--minutes` (a time budget, evaluations not counted), then the labs' loop
(bench/labloop.py, the dcgan-report settings) for the same training seconds; all judged at the end
by the same evaluator on `--eval-n` samples (fid_fmnist5k or fid_fmnist10k, with precision, recall,
coverage and the rarest class's share), mean ± std over `--seeds`. The figure puts the first seed's
grids side by side, drawn from the same 64 latent vectors.

    make demo's 3 minutes:   python bench/vs_labs.py --presets default --minutes 3 --precision auto
    the 30-minute budget:    python bench/vs_labs.py --presets default default:g_width=48,d_width=48,ema=0.9995 \
                                 --minutes 30 --eval-n 10000 --figure docs/budget30_vs_labs.png

Every `--curve-images` training images gankit's runs are also judged on 5,000 samples (not counted
in the training time), so the results show how each preset's quality grew over the budget.

`--keep DIR` keeps each finished run (its generator and scores, one pair of files per preset and
seed) and its protocol (budget, precision, evaluation, CPU, torch): run again with the same DIR, the
script trains only what DIR lacks and writes the table from all of them, so a long protocol can be
run a seed at a time and an interrupted one loses only the run in progress. Runs of another
protocol (another CPU, say) are refused, never mixed:

    the 30-minute protocol, a seed per call:
        python bench/vs_labs.py --presets default default:g_width=24 --minutes 30 --eval-n 10000 --seeds 0 --keep runs/budget30
        python bench/vs_labs.py --presets default default:g_width=24 --minutes 30 --eval-n 10000 --seeds 0 1 2 --keep runs/budget30

A conditional preset (e.g. `cdcgan`) makes every class equally often for the judge; its class
accuracy and per-class FID are reported too, and its grid has one column per class. With
`--no-labs` only the presets run and ratios are taken against the first one:

    conditional vs not:      python bench/vs_labs.py --presets default cdcgan --minutes 3 --eval-n 10000 \
                                 --seeds 0 1 2 --no-labs --figure docs/cdcgan.png --out bench/CONDITIONAL.md
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from common import append_result, device_name, mean_std
from gankit.export import export_generator, load_generator
from gankit.data import class_names
from gankit.sample import grid_labels
from gankit.config import preset_config
from gankit.sample import sample_images
from gankit.metrics import make_judge
from gankit.runs import image_grid, pyplot, read_stats
from gankit.training import train
from labloop import LabStep, lab_loader, torchvision_root
from time_to_quality import overrides

REPO = Path(__file__).resolve().parents[1]
LABS = "labs' loop"


def lab_for(seconds: float, device: str, seed: int) -> tuple[LabStep, int]:
    """The labs' loop trained for `seconds` of training time: (its step, steps taken)."""
    step, n, spent = LabStep("dcgan", device, seed), 0, 0.0
    loader = lab_loader(torchvision_root(), 128)
    while spent < seconds:
        t0 = time.perf_counter()
        for x, _ in loader:
            step(x)
            n += 1
            if spent + time.perf_counter() - t0 >= seconds:
                break
        spent += time.perf_counter() - t0
    return step, n


def gankit_for(spec: str, args, seed: int, tmp: str) -> tuple[Path, int, list]:
    """`spec` (a preset, or PRESET:KEY=VALUE,... for a variant of one; a list value as
    g_betas=[0.3,0.999]) trained for the budget:
    (its run folder, steps, [(training s, fid_fmnist5k)])."""
    preset, _, changes = spec.partition(":")
    kw = overrides([c for c in re.split(r",(?=\w+=)", changes) if c])  # a comma inside a value ([0.4,0.999]) stays
    batch = kw.get("batch_size", preset_config(preset).batch_size)
    every = max(1, round(args.curve_images / batch)) if args.curve_images else 0
    cfg = preset_config(preset, **{**kw, **dict(minutes=args.minutes, epochs=1000, precision=args.precision, seed=seed,
                                                device=args.device, out_dir=tmp, keep=0, eval_every=every, eval_n=5000)})
    run = train(cfg, progress=False)
    curve = [(r["train_time_s"], r["fid_fmnist5k"]) for r in read_stats(run, "quality.jsonl")] if every else []
    steps = read_stats(run)[-1]["step"]
    return run, steps, curve


class Kept:
    """The runs `--keep DIR` holds: per preset spec (or `labs-loop`) and seed SPEC-sSEED.json
    (steps, scores, curve) beside SPEC-sSEED.G.safetensors/.json (the generator), and
    DIR/protocol.json, which every later call must match. Without a DIR it keeps nothing."""

    def __init__(self, folder: str | None, protocol: dict):
        self.dir = Path(folder) if folder else None
        if self.dir is None:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / "protocol.json"
        if path.exists():
            saved = json.loads(path.read_text())
            differs = [f"{k}: {saved.get(k)!r} there, {v!r} now" for k, v in protocol.items() if saved.get(k) != v]
            if differs:
                raise SystemExit(f"{path}: its runs were made under another protocol ({'; '.join(differs)}); "
                                 f"give another --keep folder to measure this one")
        else:
            path.write_text(json.dumps(protocol, indent=2) + "\n")

    def _paths(self, spec: str, seed: int) -> tuple[Path, Path]:
        """(the record, the generator's .safetensors)."""
        stem = f"{'labs-loop' if spec == LABS else re.sub(r'[^A-Za-z0-9_.,=+-]+', '_', spec)}-s{seed}"
        return self.dir / f"{stem}.json", self.dir / f"{stem}.G.safetensors"

    def load(self, spec: str, seed: int, device: str) -> tuple[int, dict, list, torch.nn.Module] | None:
        """(steps, scores, curve, G) of a kept run, or None."""
        if self.dir is None or not self._paths(spec, seed)[0].exists():
            return None
        record, generator = self._paths(spec, seed)
        r = json.loads(record.read_text())
        return r["steps"], r["scores"], r["curve"], load_generator(generator, device=device)

    def save(self, spec: str, seed: int, steps: int, scores: dict, curve: list, G: torch.nn.Module,
             generator: Path | None = None) -> None:
        """Keep a finished run: a copy of its generator files (gankit's export), or G exported
        here (the labs' loop), then its record, which marks it done."""
        if self.dir is None:
            return
        record, target = self._paths(spec, seed)
        if generator is not None:
            for suffix in (".safetensors", ".json"):
                shutil.copyfile(generator.with_suffix(suffix), target.with_suffix(suffix))
        else:
            export_generator(self.dir, G, None, preset_config("dcgan-report"), steps, name=target.stem)
        record.write_text(json.dumps(dict(spec=spec, seed=seed, steps=steps, scores=scores, curve=curve,
                                          date=time.strftime("%Y-%m-%d")), indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["default"],
                    help="gankit presets to train for the budget; PRESET:KEY=VALUE,... trains a variant of one")
    ap.add_argument("--minutes", type=float, default=3.0, help="training minutes of each run (and of the labs' loop)")
    ap.add_argument("--precision", default="fp32", help="gankit's precision (auto: as `make demo` runs)")
    ap.add_argument("--eval-n", type=int, default=5000, help="samples judged at the end of each run")
    ap.add_argument("--curve-images", type=int, default=0, help="judge gankit's runs every N training images (0: off)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--no-labs", action="store_true", help="presets only; ratios then against the first preset")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--figure", default=str(REPO / "docs" / "demo_vs_labs.png"))
    ap.add_argument("--out", default=str(Path(__file__).with_name("VS_LABS.md")))
    ap.add_argument("--json", metavar="FILE", help="also write every run's steps and scores to FILE (JSON)")
    ap.add_argument("--keep", metavar="DIR", help="keep each finished run in DIR and reuse the ones it holds")
    args = ap.parse_args()
    z = torch.randn(64, 100, generator=torch.Generator().manual_seed(1234)).to(args.device)
    seconds = args.minutes * 60
    kept = Kept(args.keep, dict(minutes=args.minutes, precision=args.precision, eval_n=args.eval_n,
                                curve_images=args.curve_images, device=device_name(args.device), torch=torch.__version__))
    rows: dict[str, list] = {}  # who -> [(steps, metrics)] over seeds
    grids, curves = {}, []
    for seed in args.seeds:
        judge = make_judge("fashion-mnist", args.eval_n, seed + 2, 100, torch.device(args.device))
        for preset in args.presets + ([] if args.no_labs else [LABS]):
            who = LABS if preset == LABS else f"gankit `{preset}`"
            if (found := kept.load(preset, seed, args.device)) is not None:
                steps, scores, curve, G = found
                print(f"{who} seed {seed}: kept in {args.keep}", flush=True)
            elif preset == LABS:
                lab, steps = lab_for(seconds, args.device, seed)
                G, curve, scores = lab.G, [], judge(lab.G)
                kept.save(preset, seed, steps, scores, curve, G)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    run, steps, curve = gankit_for(preset, args, seed, tmp)
                    G = load_generator(run / "generator.safetensors", device=args.device)
                    scores = judge(G)
                    kept.save(preset, seed, steps, scores, curve, G, run / "generator.safetensors")
            rows.setdefault(who, []).append((steps, scores))
            grids.setdefault(who, (steps, G))
            if curve:
                curves.append(f"- `{preset}` seed {seed}: " + ", ".join(f"{t / 60:.1f} min {f:.1f}" for t, f in curve))
            print(f"{who} seed {seed}: {steps} steps, {judge.tag} fid {scores['fid_' + judge.tag]:.2f}", flush=True)
    tag = judge.tag

    plt = pyplot()
    fig, axes = plt.subplots(1, len(grids), figsize=(5 * len(grids), 5.4), squeeze=False)
    for ax, (who, (steps, G)) in zip(axes[0], grids.items()):
        # A conditional G: one row per z, one column per class.
        zz, yy, nrow = grid_labels(z, G.num_classes) if G.num_classes else (z, None, 8)
        grid = image_grid(sample_images(G, zz, yy), nrow)
        ax.imshow(grid.permute(1, 2, 0).cpu().numpy())
        ax.set_title(f"{who.replace('`', '')} ({steps} steps)\nfid_{tag} {rows[who][0][1]['fid_' + tag]:.1f}")
        ax.axis("off")
    fig.suptitle(f"{seconds:.0f} s of training each on {device_name(args.device).split(' (')[0]}; "
                 f"seed {args.seeds[0]}; the same z" + (" (a conditional G: its first rows, one class per column)"
                                                       if any(G.num_classes for _, G in grids.values()) else ""))
    fig.tight_layout(rect=(0, 0, 1, 0.94))  # room for the suptitle above the panel titles
    Path(args.figure).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.figure, dpi=80)
    plt.close(fig)

    table = [f"| who | steps | fid_{tag} | precision | recall | coverage | rarest class share | class accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    per_class = []
    for who, runs in rows.items():
        m = lambda key, fmt: (mean_std([r[key + "_" + tag] for _, r in runs], fmt)  # noqa: E731
                              if key + "_" + tag in runs[0][1] else "–")
        table.append(f"| {who} | {mean_std([s for s, _ in runs], '.0f')} | {m('fid', '.2f')} | {m('precision', '.3f')} "
                     f"| {m('recall', '.3f')} | {m('coverage', '.3f')} | {m('rarest_class_share', '.3f')} "
                     f"| {m('class_accuracy', '.3f')} |")
        if f"class_accuracy_per_class_{tag}" in runs[0][1]:  # a conditional preset, class by class
            names = class_names("fashion-mnist", len(runs[0][1][f"class_accuracy_per_class_{tag}"]))
            per_class += [f"\n{who}, class by class (mean over seeds):\n", f"| class | class accuracy | fid_{tag} of the class |",
                          "|---|---|---|"]
            for c, name in enumerate(names):
                fid_c = [r[f"fid_per_class_{tag}"][c] for _, r in runs if f"fid_per_class_{tag}" in r]
                per_class.append(f"| {name} | {mean_std([r[f'class_accuracy_per_class_{tag}'][c] for _, r in runs], '.3f')} "
                                 f"| {mean_std(fid_c, '.2f') if fid_c else '–'} |")
    fids = {who: statistics.mean(r["fid_" + tag] for _, r in runs) for who, runs in rows.items()}
    ref = next(iter(fids)) if args.no_labs else LABS
    others = ", ".join(f"{who} fid_{tag} {f:.2f} ({f / fids[ref]:.2f} of {ref}'s)" for who, f in fids.items() if who != ref)
    summary = (f"after {args.minutes:g} min of training ({args.precision}, {len(args.seeds)} seed(s)): "
               + (f"{others}; " if others else "") + f"{ref} {fids[ref]:.2f}")
    cmd = (f"python bench/vs_labs.py --presets {' '.join(args.presets)} --minutes {args.minutes:g} --precision "
           f"{args.precision} --eval-n {args.eval_n} --curve-images {args.curve_images} --seeds "
           f"{' '.join(map(str, args.seeds))} --device {args.device} --figure {Path(args.figure).name}"
           + (" --no-labs" if args.no_labs else "") + (f" --keep {args.keep}" if args.keep else ""))
    text = (f"\n## {time.strftime('%Y-%m-%d')}: {device_name(args.device)}, torch {torch.__version__}\n\n`{cmd}`\n\n"
            + "\n".join(table + per_class) + "\n" + ("\nfid_fmnist5k over the budget (training minutes):\n" + "\n".join(curves) + "\n"
                                         if curves else "")
            + f"\n{summary}; figure: {Path(args.figure).name}\n")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"date": time.strftime("%Y-%m-%d"), "device": device_name(args.device), "command": cmd, "tag": tag,
             "runs": {who.replace("`", ""): [{"seed": seed, "steps": steps, **{k: v for k, v in r.items()
                                                                              if isinstance(v, float)}}
                                             for seed, (steps, r) in zip(args.seeds, runs)]
                      for who, runs in rows.items()}}, indent=1) + "\n")
    append_result(args.out, "gankit presets against the labs' loop in the same training time",
                  "Same training seconds, same evaluator, same z; measured by bench/vs_labs.py.", text)
    print(summary)


if __name__ == "__main__":
    main()
