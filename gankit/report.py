"""The lab report: one self-contained HTML file (or Markdown with its PNGs beside it) written
from what one or several run folders already saved. Nothing of the run is recomputed; the report
adds what a reader needs beside it: a summary, real images of the dataset, and the real-data floor
of the metrics (computed once and cached by gankit.metrics). Sections whose files a run lacks (no
latent study, no metrics) are left out.
"""
from __future__ import annotations

import base64
import html
import io
import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .data import CLASS_NAMES, load_split, resize_uint8, to_float
from .data.folder import decode, find_images
from .errors import GankitError
from .export import saved_class_names
from .metrics import LABELS, real_floor
from .runs import Run, comparison_figure, headline, image_grid, last_grid, pyplot
from .runs.balance import summarize

EXPLAIN = {
    "trained": "The configuration this run trained with, as saved in its config.json.",
    "networks": "The two networks exactly as PyTorch prints them, with their parameter counts.",
    "losses": "loss_D and loss_G per log interval. For BCE, loss_D near 2·ln2 ≈ 1.39 and loss_G near "
              "ln2 ≈ 0.69 mean neither network wins; loss_D falling towards 0 means D wins outright.",
    "d_outputs": "Mean D(x) on real and D(G(z)) on generated images. Healthy BCE training keeps them apart "
                 "but away from 1 and 0; D(x) pinned at 1 with D(G(z)) at 0 means G has stopped learning.",
    "milestones": "The same 8 latent vectors through training: how one sample evolves.",
    "overfitting": "Left: r_t, the share of training batches D calls real minus the share it calls fake "
                   "(Karras et al. 2020); near 1, D calls every training image real. With --augment ada, p is the "
                   "probability of each augmentation, raised while r_t is above its target. Right: D's mean score "
                   "on 256 training images and on 256 real images it never saw; a widening gap means D memorises "
                   "its training set rather than learning what real images look like.",
    "grid": "The fixed latent vectors at the end of training, beside real images of the dataset.",
    "classes": "The evaluator's classes of the samples beside those of real images: a class G no longer makes "
               "(mode collapse) shows as a missing bar.",
    "fid_curve": "FID of {eval_n:,} samples against the test set, measured during training.",
    "latent": "Latent-space studies run on this generator (gankit sample / explore).",
    "warnings": "What the run warned about while training.",
    "comparison": "The runs side by side: settings, scores, the last fixed-z grid of each, and their curves.",
    "tune": "A gankit tune study: each trial trained the preset with the drawn parameters for the same budget "
            "and was scored by its best in-training FID; pruned trials were stopped early by the median rule.",
    "sweep": "A gankit grid: every cell trained from every seed, scored after training; mean ± std over the seeds.",
    "balance": "The balance index (gankit/training/balance.py) is the share of G steps at which loss_G and "
               "c·loss_D, D's loss per term (c = 1/2 for the BCE and least-squares objectives: the two are equal "
               "when D cannot tell real from fake), change order. It is not where the plotted loss_G and loss_D "
               "curves cross. Spearman's rho < 0 would mean: more changes of order, lower (better) FID.",
}


QUALITY_TEXT = {
    "fid": "Scores from gankit's evaluator for the dataset. FID (lower is better) measures how far the feature "
           "statistics of the samples are from the real images'; the real-data row is the floor (real images scored "
           "the same way: what a perfect generator would reach). Each row is one evaluation, its protocol (dataset "
           "and sample count) in its name; the summary quotes the one with the most samples.",
    "kid": "KID is the unbiased squared MMD between the same features: 0 for a perfect generator (slightly negative "
           "values are noise).",
    "is": "IS (higher is better) is the Inception Score of the evaluator's class predictions.",
    "precision": "Precision is the share of samples that look real, recall and coverage the share of the real "
                 "variety the samples reach.",
    "class_accuracy": "Class accuracy is the share of samples the evaluator classifies as the class G was asked for.",
    "memorised": "Memorised is the share of samples nearer to a training image than 95 % of held-out real images "
                 "are: about 0.05 for a generator that makes new images, near 1 for one that copies its training set.",
}


def _present(names: list[tuple[str, str]], shown: list[dict]) -> list[tuple[str, str]]:
    """The score columns some row has (FID always)."""
    return [(key, label) for key, label in names
            if key == "fid" or any(_score_cells(s, [(key, "")]) != ["-"] for s in shown)]


def quality_text(names: list[tuple[str, str]]) -> str:
    """The quality section's explanation: a sentence for each score its table shows."""
    keys = {key for key, _ in names}
    return " ".join(text for key, text in QUALITY_TEXT.items() if key in keys)


def balance(run: Run) -> dict:
    """The run's balance index and its parts (gankit.training.balance); empty when not logged."""
    return summarize(run.stats, run.config.n_critic)


def load_run(path: str | Path) -> Run:
    return Run(path)


# ---- rendering helpers ------------------------------------------------------------------------
class Writer:
    """Collects the body as HTML, or as Markdown with images copied beside it."""

    def __init__(self, markdown_dir: Path | None = None):
        self.parts: list[str] = []
        self.md_dir = markdown_dir
        self.n_images = 0

    def heading(self, level: int, text: str, explain: str | None = None) -> None:
        if self.md_dir:
            self.parts.append(f"{'#' * level} {text}\n" + (f"\n*{explain}*\n" if explain else ""))
        else:
            self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>"
                              + (f'<p class="explain">{html.escape(explain)}</p>' if explain else ""))

    def text(self, text: str) -> None:
        self.parts.append(text + "\n" if self.md_dir else f"<p>{html.escape(text)}</p>")

    def pre(self, text: str, summary: str) -> None:
        if self.md_dir:
            self.parts.append(f"```\n{text}\n```\n")
        else:
            self.parts.append(f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>")

    def image(self, data: bytes | Path, alt: str, pixels: bool = False) -> None:
        """An image; `pixels` for small sample grids, scaled up without smoothing."""
        raw = data.read_bytes() if isinstance(data, Path) else data
        self.n_images += 1
        if self.md_dir:
            name = f"img{self.n_images:03d}.png"
            (self.md_dir / name).write_bytes(raw)
            self.parts.append(f"![{alt}]({self.md_dir.name}/{name})\n")
        else:
            b64 = base64.b64encode(raw).decode()
            cls = ' class="pixels"' if pixels else ""
            self.parts.append(f'<figure><img{cls} src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">'
                              f"<figcaption>{html.escape(alt)}</figcaption></figure>")

    def table(self, header: list[str], rows: list[list[str]]) -> None:
        if self.md_dir:
            self.parts.append("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
                              + "".join("| " + " | ".join(r) + " |\n" for r in rows))
        else:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
            self.parts.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')

    def items(self, lines: list[str]) -> None:
        if self.md_dir:
            self.parts.append("".join(f"- {x}\n" for x in lines))
        else:
            self.parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in lines) + "</ul>")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    pyplot().close(fig)
    return buf.getvalue()


SCORE_NAMES = [(k, LABELS[k] + (" (MMD², 0 for real)" if k == "kid" else "")) for k in ("fid", "kid", "is", "precision",
                                                                                        "recall", "coverage")]


def _score_names(*scores: dict) -> list[tuple[str, str]]:
    """The score columns: class accuracy too when a conditional run has it."""
    cls = any(k.startswith("class_accuracy_") for s in scores for k in s)
    memo = any(k.startswith("memorised_") for s in scores for k in s)
    return (SCORE_NAMES + ([("class_accuracy", LABELS["class_accuracy"])] if cls else [])
            + ([("memorised", "memorised (near-copies)")] if memo else []))


def _protocol(scores: dict) -> str:
    """The protocol a row of scores was measured under: its FID's name less "fid_" (fmnist5k, emoji-21addb-1k)."""
    return next((k[4:] for k in scores if k.startswith("fid_") and not k.endswith("_std")), "-")


def _score_cells(scores: dict, names: list[tuple[str, str]] = SCORE_NAMES) -> list[str]:
    cells = []
    for key, _ in names:
        k = next((k for k in scores if k.startswith(f"{key}_") and not k.endswith(("_std", "_threshold"))), None)
        cells.append(f"{scores[k]:.3f}" if k else "-")
    return cells


# ---- what a run's report adds to its files ---------------------------------------------------
def summary(run: Run, scores: dict, floor: dict) -> str:
    """The report's first lines: what was trained, on what, for how long, and its final quality
    against the real-data floor."""
    c = run.config.to_dict()
    seconds, counted = run.training_seconds()
    text = (f"In short: {c['preset']} ({c['model']}, {c['objective']}) trained on {c['dataset']} for {run.steps()} "
            f"steps ({run.epochs():.2f} epochs) in {seconds:.0f} s {counted}.")
    m = run.meta
    text += (f" Trained {str(m.get('created', '?'))[:10]} on {m.get('device_name') or m.get('device', '?')} in "
             f"{m.get('precision', c['precision'])}, gankit {m.get('gankit_version', '?')}; its grids and samples "
             + (f"come from the EMA of G (decay {c['ema']:g})." if c.get("ema") else "come from G itself (no EMA)."))
    fid = next((k for k in scores if k.startswith("fid_")), None)
    if fid:
        text += (f" {fid} {scores[fid]:.2f}" + (f" against {floor[fid]:.2f} for real images under the same protocol"
                                               if fid in floor else "")
                 + " (lower is better; of the run's evaluations, the one with the most samples).")
    else:
        text += " Its sample quality was not measured (no evaluator for this dataset during training; `gankit eval`)."
    if run.warnings:
        text += f" {len(run.warnings)} warning(s) during training, listed at the end."
    return text


def grid_caption(run: Run, grid: Path) -> str:
    """What the last fixed-z grid shows: its step, and whether training ended there."""
    kind, number = grid.stem.split("_", 1)
    spe = run.steps() / run.epochs() if run.epochs() else 0
    step = int(number) if kind == "step" else round(int(number) * spe)
    where = "the end of training" if step == run.steps() else f"step {step} of the {run.steps()} trained"
    return (f"{run.config.grid_size} samples from the fixed latent vectors at step {step} "
            f"(epoch {step / spe if spe else 0:.2f}): {where}")


def milestone_caption(run: Run) -> str:
    """The milestone strip's rows as they are: their steps and shares of the steps trained."""
    steps = sorted(int(p.stem.split("_")[1]) for p in (run.path / "images").glob("milestone_*.png")
                   if p.stem.split("_")[1].isdigit())
    total = max(run.steps(), 1)
    rows = ", ".join(f"step {s} ({100 * s / total:.0f} %)" for s in steps)
    rule = ("25, 50 and 75 % of the time budget" if run.config.minutes else "25, 50 and 75 % of the steps")
    return f"The same 8 latent vectors at {rows} of the {run.steps()} steps; the middle rows are kept at {rule}."


def _tag_n(tag: str) -> int | None:
    """The sample count a protocol tag ends with: fmnist5k -> 5000, fmnist-1a2b3c-300 -> 300."""
    m = re.search(r"(\d+)(k?)$", tag)
    return (int(m.group(1)) * (1000 if m.group(2) else 1)) if m else None


def real_floor_of(run: Run, scores: dict) -> dict:
    """The real-data floor under the protocol of the run's scores (cached by gankit.metrics), or {}
    when the dataset or its evaluator is not available here."""
    c = run.config.to_dict()
    fid = next((k for k in scores if k.startswith("fid_")), None)
    n = _tag_n(fid[len("fid_"):]) if fid else None
    if not n or c["dataset"] == "folder":
        return {}
    try:
        return real_floor(c["dataset"], n=n, data_root=c.get("data_root"))
    except GankitError:
        return {}


def real_grid(run: Run) -> bytes | None:
    """A grid of real images at the run's size and channels: the test split's first, or a folder's."""
    c = run.config.to_dict()
    k = min(64, c["grid_size"])
    try:
        if c["dataset"] == "folder":
            files = find_images(Path(c["data_root"]).expanduser())[:k]
            x = torch.from_numpy(np.stack([decode(f, c["image_size"], c["channels"]) for f in files]))
        else:
            x = resize_uint8(load_split(c["dataset"], "test", c.get("data_root"))[0][:k], c["image_size"])
    except (GankitError, OSError, ValueError):
        return None
    buf = io.BytesIO()
    Image.fromarray((image_grid(to_float(x)).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8).squeeze()).save(
        buf, format="PNG")
    return buf.getvalue()


def class_histogram(scores: dict, floor: dict, c: dict) -> bytes | None:
    """Bars of the evaluator's class shares: the samples beside real images."""
    key = next((k for k in scores if k.startswith("class_shares_")), None)
    if key is None or not isinstance(scores.get(key), list):
        return None
    shares, real = scores[key], floor.get(key)
    names = CLASS_NAMES.get(c["dataset"], [str(i) for i in range(len(shares))])
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=110)
    xs = np.arange(len(shares))
    ax.bar(xs - 0.2, shares, 0.4, label="samples")
    if isinstance(real, list) and len(real) == len(shares):
        ax.bar(xs + 0.2, real, 0.4, label="real images")
    ax.set_xticks(xs)
    ax.set_xticklabels(names[:len(shares)], fontsize=8, rotation=20)
    ax.set_ylabel("share")
    ax.set_title("The evaluator's classes", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _figure_png(fig)


# ---- sections -----------------------------------------------------------------------------
def write_run(w: Writer, run: Run, level: int = 2, heading: bool = True) -> None:
    """One run's section; `heading=False` for a report of this run alone, whose title already names it
    (its sections then sit one level higher)."""
    c, s = run.config.to_dict(), run.stats
    if heading:
        w.heading(level, f"Run {run.name}")
    else:
        level -= 1
    scores = run.final_scores()
    scores.pop("_n", None)
    floor = scores.pop("_floor", {}) or (real_floor_of(run, scores) if scores else {})
    w.text(summary(run, scores, floor))
    w.heading(level + 1, "What was trained", EXPLAIN["trained"])
    trained = s[-1] if s else {}
    seconds, counted = run.training_seconds()
    rows = [["preset", c["preset"]], ["dataset", c["dataset"]], ["model", c["model"]],
            ["objective", c["objective"] + (f", clip {c['clip']}" if c.get("clip") else "")
             + (f", gradient penalty {c['gp_weight']}" if c.get("gp_weight") else "")],
            ["trained", f"{trained.get('epoch', 0):.2f} epochs, {trained.get('step', 0)} steps, batch {c['batch_size']}, "
                        f"n_critic {c['n_critic']}" + (f"; a time budget of {c['minutes']:g} minutes" if c.get("minutes") else "")],
            ["G optimizer", f"{c['g_optimizer']} lr {c['g_lr']:g} betas {_fmt(c['g_betas'])} weight decay {c['g_weight_decay']:g}"],
            ["D optimizer", f"{c['d_optimizer']} lr {c['d_lr']:g} betas {_fmt(c['d_betas'])} weight decay {c['d_weight_decay']:g}"],
            ["init, z_dim, EMA", f"{c['init']}, {c['z_dim']}, {c['ema'] or 'off'}"],
            *([["classes", f"{c['num_classes']}, conditional: G joins a class embedding to z; D by {c['d_cond']}"
                           + (f" (class loss weight {c['ac_weight']:g})" if c["d_cond"] == "acgan" else "")]]
              if c.get("num_classes") else []),
            ["device, precision", f"{run.meta.get('device')}"
                                  + (f" ({run.meta['device_name']})" if run.meta.get("device_name") else "")
                                  + f", {run.meta.get('precision', c['precision'])}"],
            ["training time", f"{seconds:.0f} s {counted}"],
            ["gankit, torch", f"{run.meta.get('gankit_version')}, {run.meta.get('torch_version')}"],
            ["command", " ".join(run.meta.get("command") or [])]]
    w.table(["setting", "value"], rows)
    if (run.path / "models.txt").exists():
        text = (run.path / "models.txt").read_text()
        w.heading(level + 1, "The networks", EXPLAIN["networks"])
        w.text(" · ".join(line for line in text.splitlines() if "parameters)" in line))
        w.pre(text.rstrip(), "print(G) and print(D)")
    for key, file, title in (("losses", "loss_curve.png", "Losses"), ("d_outputs", "d_outputs.png", "D(x) and D(G(z))"),
                             ("overfitting", "overfitting.png", "Overfitting monitor"),
                             ("milestones", "milestones.png", "Samples through training")):
        if (run.path / file).exists():
            w.heading(level + 1, title, EXPLAIN[key])
            w.image(run.path / file, milestone_caption(run) if key == "milestones" else title)
            if key == "losses" and (b := balance(run)):
                w.text(f"Balance index (the share of G steps at which loss_G and D's loss per term, c·loss_D, "
                       f"change order; not the plotted curves' crossings): {b['balance_index']:.3f}, "
                       f"{b['crossings_per_epoch']:.0f} changes of order per epoch; loss_G above c·loss_D "
                       f"{100 * b['g_above']:.0f} % of the time (evenness {b['evenness']:.2f}).")
    grid = last_grid(run.path)
    if grid:
        w.heading(level + 1, "Generated and real images", EXPLAIN["grid"])
        w.image(grid, grid_caption(run, grid), pixels=True)
        if (real := real_grid(run)) is not None:
            k = min(64, c["grid_size"])
            where = (f"the first {k} image files under {c['data_root']}, sorted by path" if c["dataset"] == "folder"
                     else f"the first {k} images of {c['dataset']}'s test split")
            w.image(real, f"Real images at the run's size, for comparison: {where}", pixels=True)
    write_quality(w, run, scores, floor, level + 1)
    if run.studies:
        w.heading(level + 1, "Latent-space studies", EXPLAIN["latent"])
        for study in run.studies:
            write_study(w, study.folder, study.record, level + 2)
    if run.warnings:
        w.heading(level + 1, "Warnings", EXPLAIN["warnings"])
        w.items([f"step {x['step']}: {x['warning']}" for x in run.warnings])


def write_quality(w: Writer, run: Run, scores: dict, floor: dict, level: int) -> None:
    """Every evaluation the run has, one row each, the headline marked; the class histogram, the
    per-class table of a conditional run and the FID curve when there are."""
    evaluations = run.evaluations()
    if not evaluations:
        return
    c = run.config.to_dict()
    lead = headline(evaluations)
    shown = [e["scores"] for e in evaluations]  # (the columns the evaluations have; the floor fills what it can)
    names = _present(_score_names(*shown), shown)
    w.heading(level, "Sample quality", quality_text(names))
    rows = [[e["source"] + (" (the headline)" if e is lead and len(evaluations) > 1 else ""),
             _protocol(e["scores"]), f"{e['n']:,}"] + _score_cells(e["scores"], names)
            for e in sorted(evaluations, key=lambda e: -e["n"])]
    if floor:
        rows.append(["real data (floor)", _protocol(floor), f"{lead['n']:,}"] + _score_cells(floor, names))
    w.table(["evaluation", "protocol", "samples"] + [label for _, label in names], rows)
    if not floor:
        w.text("No real-data floor: the dataset's images or its evaluator are not available here.")
    if (hist := class_histogram(scores, floor, c)) is not None:
        w.image(hist, EXPLAIN["classes"])
    write_per_class(w, run)
    if (run.path / "fid_curve.png").exists() and len(run.quality) > 1:  # (one point makes no curve)
        w.image(run.path / "fid_curve.png", EXPLAIN["fid_curve"].format(**c))


def write_per_class(w: Writer, run: Run) -> None:
    """A conditional run's last evaluation, class by class: how often the evaluator recognises
    the class G was asked for, and that class's FID against its own test images."""
    last = run.quality[-1] if run.quality else {}
    acc = next((v for k, v in last.items() if k.startswith("class_accuracy_per_class_")), None)
    if not acc:
        return
    fid = next((v for k, v in last.items() if k.startswith("fid_per_class_")), None)
    names = saved_class_names(run.path, len(acc))
    w.text(f"Per class, at step {last['step']}: the share of samples made for the class that the evaluator "
           f"classifies as it" + (", and the class's FID against its own test images." if fid else "."))
    w.table(["class", "class accuracy"] + (["FID"] if fid else []),
            [[n, f"{a:.3f}"] + ([f"{f:.2f}"] if fid else []) for n, a, f in zip(names, acc, fid or [None] * len(acc))])


STUDY_TEXT = {
    "sample": "Samples from chosen latent vectors (the z used is saved beside them).",
    "nudge": "Single dimensions moved by -delta, 0 and +delta for the same base vectors: rows that change "
             "together show what a dimension controls.",
    "sweep": "One base vector, one dimension per row set to each value of the sweep.",
    "interpolate": "A straight (lerp) or great-circle (slerp) path between two latent vectors.",
    "arithmetic": "a - b + c on latent vectors, each input the mean of its vectors.",
    "rank": "How much moving each dimension changes the image (and how often the predicted class flips).",
}


def study_caption(stem: str, record: dict) -> str:
    """What one picture of a latent study shows, from its file's stem and the study's record."""
    if m := re.fullmatch(r"combined_delta(.+)", stem):
        return f"Every axis moved by -{m.group(1)}, 0 and +{m.group(1)}: three rows per axis, one column per base vector"
    if m := re.fullmatch(r"(.+)_delta(.+)", stem):
        axis = re.sub(r"^dim0*(\d)", r"dimension \1", m.group(1))
        return f"{axis} alone moved by -{m.group(2)}, 0 and +{m.group(2)}"
    if m := re.fullmatch(r"base(\d+)", stem):
        return f"The base vector of seed {m.group(1)}: one row per axis, swept across the values above the columns"
    return {"samples": "The samples, one per latent vector (one row per class for a conditional G)",
            "strip": "The path from the first vector (left) to the last (right)",
            "arithmetic": "The inputs a, b and c (each the mean of its vectors) and a - b + c",
            "inputs": "The vectors averaged into a, b and c, one row each",
            "rank": "Mean pixel change per dimension, largest first",
            "directions": f"One base vector moved along each direction found ({record.get('method', '')}), best first",
            "inversion": "Input images (top) and G(z) of the z found for each (bottom)"}.get(stem, stem.replace("_", " "))


def write_study(w: Writer, folder: Path, record: dict, level: int) -> None:
    cmd = record.get("command", folder.name.split("-")[0])
    args = {k: v for k, v in record.items()
            if k in ("seed", "seeds", "base_seeds", "n", "dims", "deltas", "method", "steps", "delta")}
    for k in ("a", "b", "c"):  # arithmetic inputs: lists of {"seed": s} or {"file": f}
        if k in record:
            args[k] = [g.get("seed", g.get("file")) for g in record[k]]
    w.heading(level, f"{cmd}: {', '.join(f'{k} {_fmt(v)}' for k, v in args.items())}", STUDY_TEXT.get(cmd))
    pngs = sorted(folder.glob("*.png"))
    if cmd == "nudge":  # the per-dimension figures repeat what the combined ones show
        pngs = [p for p in pngs if p.name.startswith("combined")]
    for png in pngs:
        w.image(png, study_caption(png.stem, record))
    if cmd == "rank":
        rows = record["measurements"]
        flips = "class_flip_rate" in rows[0]
        show = rows[:10] + rows[-10:] if len(rows) > 20 else rows
        w.table(["rank", "dim", "mean |pixel change|"] + (["class flips"] if flips else []),
                [[str(r["rank"]), str(r["dim"]), f"{r['mean_abs_change']:.4f}"]
                 + ([f"{r['class_flip_rate']:.3f}"] if flips else []) for r in show])


def _balance_text(c: dict, what: str) -> str:
    if c.get("rho") is None:
        return f"Too few {what} with a balance index for a rank correlation (n = {c.get('n', 0)})."
    return (f"Spearman's rho between the balance index and FID over {c['n']} {what}: {c['rho']:+.2f} "
            f"(p = {c['p']:.2g}).")


def write_tune(w: Writer, folder: Path) -> None:
    """The section of a `gankit tune` study folder: settings, trials, Optuna's plots, the best config."""
    settings = json.loads((folder / "study.json").read_text())
    result = json.loads((folder / "results.json").read_text()) if (folder / "results.json").exists() else None
    w.heading(2, f"Study {settings['study']}", EXPLAIN["tune"])
    budget = ", ".join(f"{settings[k]:g} {k}" for k in ("epochs", "steps", "minutes") if settings.get(k))
    w.table(["setting", "value"], [["preset", settings["preset"]], ["searched", " ".join(settings["params"])],
                                   ["trials", str(settings["trials"])], ["budget per trial", budget],
                                   ["evaluations per trial", str(settings["evals"])], ["pruner", settings["pruner"]],
                                   ["run seed", str(settings["seed"])], ["storage", settings["storage"]]])
    if result is None:
        w.text("No results yet: results.json is written when a gankit tune process ends.")
        return
    metric = result["metric"] or "fid"
    names = sorted({k for r in result["trials"] for k in r["params"]})
    w.table(["trial", "state"] + names + [f"best {metric}", "balance index", "training time", "run"],
            [[str(r["trial"]), r["state"]] + [_fmt(r["params"].get(n, "-")) for n in names]
             + [_fmt(r["best_fid"]) if r["best_fid"] is not None else "-",
                f"{r['balance_index']:.3f}" if r["balance_index"] is not None else "-",
                f"{r['train_time_s']:.0f} s" if r["train_time_s"] else "-", Path(r["run"] or "-").name]
             for r in result["trials"]])
    if "best" in result:
        b = result["best"]
        w.text(f"Best: trial {b['trial']}, {metric} {b['best_fid']:.2f}, with "
               + ", ".join(f"{k} = {_fmt(v)}" for k, v in b["params"].items())
               + f". gankit train --config {folder / 'best.json'} trains it again.")
    for file, alt in (("history.png", "optimization history"), ("importances.png", "parameter importances (fANOVA)"),
                      ("parallel.png", "parallel coordinates of the trials"),
                      ("balance_vs_fid.png", "balance index against FID, trial by trial")):
        if (folder / file).exists():
            w.image(folder / file, alt)
    w.heading(3, "Balance index and FID", EXPLAIN["balance"])
    w.text(_balance_text(result["balance"], "trials"))


def write_sweep(w: Writer, folder: Path) -> None:
    """The section of a `gankit grid` folder: the cells' mean ± std, the figure, the balance index."""
    grid = json.loads((folder / "sweep.json").read_text())
    w.heading(2, f"Grid {grid['sweep']}", EXPLAIN["sweep"])
    if not (folder / "results.json").exists():
        w.text("No results yet: results.json is written when every run of the sweep is scored.")
        return
    result = json.loads((folder / "results.json").read_text())
    tag = result["tag"]
    keys = [k for k in ("fid", "kid", "is", "precision", "recall", "coverage") if f"{k}_{tag}" in result["cells"][0]]
    w.table(["cell"] + [f"{LABELS[k]} ({tag})" for k in keys],
            [[c["cell"]] + [f"{c[f'{k}_{tag}']:.3f}" + (f" ± {c[f'{k}_{tag}_std']:.3f}" if f"{k}_{tag}_std" in c else "")
                            for k in keys] for c in result["cells"]])
    w.text(f"Seeds {', '.join(map(str, result['seeds']))}; budget per run: "
           + (", ".join(f"{v:g} {k}" for k, v in grid["budget"].items()) or "the presets' own") + ".")
    if (folder / "comparison.png").exists():
        w.image(folder / "comparison.png", "each cell's last fixed-z grid (first seed) and its curves")
    w.heading(3, "Balance index and FID", EXPLAIN["balance"])
    w.table(["run", "balance index", "changes of order per epoch", f"FID ({tag})"],
            [[f"{r['cell']} seed {r['seed']}", f"{r['balance_index']:.3f}" if "balance_index" in r else "-",
              f"{r['crossings_per_epoch']:.0f}" if "crossings_per_epoch" in r else "-", f"{r[f'fid_{tag}']:.2f}"]
             for r in result["runs"]])
    w.text(_balance_text(result["balance"], "runs"))
    if (folder / "balance_vs_fid.png").exists():
        w.image(folder / "balance_vs_fid.png", "balance index against FID, run by run")


def write_comparison(w: Writer, runs: list[Run]) -> None:
    w.heading(2, "Comparison", EXPLAIN["comparison"])
    scored = any(r.final_scores() for r in runs)  # score columns only when some run has scores
    rows = []
    for r in runs:
        last = r.stats[-1] if r.stats else {}
    names = _score_names(*(r.final_scores() for r in runs))
    for r in runs:
        last = r.stats[-1] if r.stats else {}
        scores = _score_cells({k: v for k, v in r.final_scores().items() if k != "_floor"}, names) if scored else []
        rows.append([r.name, r.config.preset, r.config.objective, r.config.model, f"{last.get('epoch', 0):g}",
                     f"{last.get('time_s', 0):.0f} s"] + scores)
    w.table(["run", "preset", "objective", "model", "epochs", "time"]
            + ([label for _, label in names] if scored else []), rows)
    titles = [f"{r.name[:5]} {r.config.preset}\n{r.config.model} / {r.config.objective}" for r in runs]
    w.image(_figure_png(comparison_figure([r.path for r in runs], titles)),
            "the last fixed-z grid of each run; losses and FID of the runs, overlaid")


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:0 auto;padding:1rem;
color:#222;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
h3{margin-top:1.6rem}.explain{color:#555;font-style:italic;margin-top:-.4rem}
figure{margin:.6rem 0}img{max-width:100%;height:auto}img.pixels{width:484px;image-rendering:pixelated}
figcaption{font-size:.85rem;color:#666}table{border-collapse:collapse;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f3f3f3}
.scroll{overflow-x:auto}pre{font-size:.75rem;overflow-x:auto;background:#f7f7f7;padding:.5rem}
@media print{details{display:block}details>pre{display:block}h2{page-break-before:auto}figure{page-break-inside:avoid}}
"""


def new_file(out: Path, markdown: bool = False) -> Path:
    """`out`, or the first free of OUT-2, OUT-3, ...: a report never replaces a file (nor, in
    Markdown, the folder of images beside it)."""
    taken = lambda p: p.exists() or (markdown and p.with_name(p.stem + "_files").exists())  # noqa: E731
    k, path = 1, out
    while taken(path):
        k += 1
        path = out.with_name(f"{out.stem}-{k}{out.suffix}")
    return path


def build_report(run_dirs: list[str | Path], out: str | Path, markdown: bool = False) -> Path:
    """Write the report of one run, or a comparison followed by each run, to `out` (or, when `out`
    exists, to OUT-2, OUT-3, ...: nothing saved is replaced); returns the file written. A `gankit
    tune` study folder or a `gankit grid` folder among them gets its own section."""
    groups = [Path(p) for p in run_dirs if (Path(p) / "study.json").is_file() or (Path(p) / "sweep.json").is_file()]
    runs = [load_run(p) for p in run_dirs if Path(p) not in groups]
    out = new_file(Path(out), markdown)
    out.parent.mkdir(parents=True, exist_ok=True)
    md_dir = None
    if markdown:
        md_dir = out.with_name(out.stem + "_files")
        md_dir.mkdir()
    w = Writer(md_dir)
    title = (f"GAN lab report: {groups[0].name}" if groups and not runs else
             f"GAN lab report: {runs[0].name}" if len(runs) == 1 else f"GAN lab report: {len(runs)} runs compared")
    for folder in groups:
        (write_tune if (folder / "study.json").is_file() else write_sweep)(w, folder)
    if len(runs) > 1:
        write_comparison(w, runs)
    for r in runs:
        write_run(w, r, heading=len(runs) > 1 or bool(groups))
    if markdown:
        out.write_text(f"# {title}\n\n" + "\n".join(w.parts))
    else:
        out.write_text(f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                       f'<meta name="viewport" content="width=device-width,initial-scale=1">'
                       f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
                       f"<h1>{html.escape(title)}</h1>" + "".join(w.parts) + "</body></html>\n")
    return out
