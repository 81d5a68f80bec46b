"""Directions and inversion, measured on trained `default` generators (one per seed).

(a) Inversion: the first --n test images (G never saw them) projected into z with gankit invert's
defaults; mean pixel MSE (in [0, 1] image units), evaluator-feature distance, the evaluator's class
agreement between input and reconstruction, and seconds per image, against the baseline: for each
image the best of 10,000 random z by evaluator-feature distance.
(b) Directions: the top 5 SeFa and PCA directions and the 5 top-ranked single coordinates
(gankit explore rank's order): the mean |pixel change| per unit step and the share of images whose
evaluator class flips, from moving 256 random z by ±3 along each.

    python bench/control.py RUN [RUN ...] [--n 1000] [--out bench/CONTROL.md]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from common import append_result, device_name

from gankit.latent import directions as Dn
from gankit import latent as L
from gankit.data import load_split, to_float
from gankit.export import load_source
from gankit.latent.inversion import best_random, invert
from gankit.metrics.evaluator import load_evaluator


def one_run(run: str, n: int, baseline: int, samples: int, pca_n: int) -> dict:
    G, _ = load_source(run)
    evaluator = load_evaluator(G.dataset, "cpu")[0]
    x = to_float(load_split(G.dataset, "test")[0][:n])
    t0 = time.perf_counter()
    found = invert(G, x, evaluator)
    inv_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = best_random(G, x, evaluator, n=baseline)
    base_s = time.perf_counter() - t0
    stats = lambda r, s: {"pixel_mse": float(r.pixel_mse.mean()), "feature_distance": float(r.feature_distance.mean()),
                          "class_agreement": float(r.same_class.double().mean()), "s_per_image": s / n}
    classify = lambda imgs: evaluator(imgs.float())
    axes = {"sefa": Dn.sefa(G, 5).vectors, "pca": Dn.pca(G, 5, n=pca_n).vectors,
            "coordinates": torch.eye(G.z_dim)[[r["dim"] for r in L.rank_dims(G, n=samples)[:5]]]}
    moves = {k: Dn.measure(G, v, classify, n=samples, step=3.0) for k, v in axes.items()}
    return {"run": run, "inversion": stats(found, inv_s), "best_of_10000": stats(base, base_s), "directions": moves}


def ms(values) -> str:
    values = list(values)
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{values[0]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--baseline", type=int, default=10000, help="random z the baseline picks the best of")
    ap.add_argument("--samples", type=int, default=256, help="random z each axis is measured on")
    ap.add_argument("--pca-n", type=int, default=5000, help="samples of the PCA directions")
    ap.add_argument("--out", default=str(Path(__file__).parent / "CONTROL.md"),
                    help="the Markdown file to append to (its .json beside it gets every number)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    results = [one_run(r, args.n, args.baseline, args.samples, args.pca_n) for r in args.runs]
    rows = []
    for name in ("inversion", "best_of_10000"):
        rs = [r[name] for r in results]
        rows.append(f"| {name.replace('_', ' ')} | " + " | ".join(ms(r[k] for r in rs) for k in
                                                               ("pixel_mse", "feature_distance", "class_agreement",
                                                                "s_per_image")) + " |")
    moves = []
    for kind in ("sefa", "pca", "coordinates"):
        for i in range(5):
            cs = [r["directions"][kind][i] for r in results]
            moves.append(f"| {kind} | {i + 1} | {ms(c['change_per_unit'] for c in cs)} | "
                         f"{ms(c['class_flip_rate'] for c in cs)} |")
    text = (f"\n## {time.strftime('%Y-%m-%d')}: inversion and directions, {len(results)} generators\n\n"
            f"Measured by `python bench/control.py {' '.join(Path(r).name for r in args.runs)} --n {args.n}` on "
            f"{device_name('cpu')}, torch {torch.__version__}; {(time.perf_counter() - t0) / 60:.0f} min. "
            f"Mean ± std over the generators.\n\n(a) {args.n} test images projected into z (default settings), "
            f"against the best of {args.baseline:,} random z:\n\n"
            "| | pixel MSE | feature distance | class agreement | s per image |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\n(b) Moving 256 random z by ±3 along each axis:\n\n"
            "| axes | rank | mean abs pixel change per unit | class flips at ±3 |\n|---|---|---|---|\n"
            + "\n".join(moves) + "\n")
    print(text)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    append_result(out, "Directions and inversion",
                  "Written by bench/control.py; the results page is docs/results/control.md.", text)
    ratio = statistics.mean(r["inversion"]["feature_distance"] / r["best_of_10000"]["feature_distance"] for r in results)
    gain = statistics.mean(r["directions"]["sefa"][0]["change_per_unit"] / r["directions"]["coordinates"][0]["change_per_unit"]
                           for r in results)
    print(f"wrote {out}: inversion's feature distance is {ratio:.2f} x the best-of-{args.baseline} baseline's; the top "
          f"SeFa direction changes the image {gain:.1f} x as much per unit as the top coordinate")


if __name__ == "__main__":
    main()
