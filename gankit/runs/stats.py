"""Every statistic a log tick records, named once: its stats.jsonl key, what its value at a tick
is the mean of, when it applies, how messages and plots name it, the figure that draws it and its
TensorBoard tag. Adding a statistic is one entry here plus the line of the loop that measures it:

- the training loop adds each step's values by these names (gankit.training.state.Tally.add),
  summed on the device and laid out by DEVICE_STATS;
- a log tick averages them (Tally.means), names them (`named`), checks them (`nonfinite`) and
  writes one row in STATS' order (gankit.training.maintenance.tick_row, with `ROW` values None
  where a statistic does not apply);
- StatsLog mirrors each to TensorBoard under its tag, and gankit.runs.figures draws every
  statistic whose `plot` names a figure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Stat:
    over: str  # what the tick's value is the mean of: "D" (the D steps since the last tick), "G" (the G
    #            steps), "reg" (the D steps that computed R1/R2), "recon" (those that reconstructed), "last" (a value set on the step before the
    #            tick, not averaged), "row" (computed when the row is written, on the host)
    when: str  # when it applies (else None in the row): "always", "G" (G has stepped since the tick),
    #            "wasserstein", "balance", "ada", "probe", "r1", "r2", "decoder" (those three appear only in
    #            the rows of runs that have them)
    tag: str  # TensorBoard tag; the part before '/' groups it there
    label: str  # how messages name it
    plot: str = ""  # the figure that draws it: "loss_curve", "d_outputs", "overfitting", "overfitting/right"
    legend: str = ""  # its line's label in that figure (default: label)
    line: str = "-"  # its line's style there
    doc: str = ""


STATS: dict[str, Stat] = {
    "loss_D": Stat("D", "always", "Loss/D", "loss_D", "loss_curve", doc="D's loss with every penalty it trains on"),
    "loss_G": Stat("G", "G", "Loss/G", "loss_G", "loss_curve", doc="G's loss (with the AC-GAN class loss)"),
    "d_real": Stat("D", "always", "D_output/real", "D(x)", "d_outputs", "D(x), real images",
                   doc="the objective's score of D on real images"),
    "d_fake": Stat("D", "always", "D_output/fake", "D(G(z))", "d_outputs", "D(G(z)), generated images",
                   doc="the objective's score of D on generated images"),
    "wasserstein": Stat("D", "wasserstein", "Loss/wasserstein_estimate", "wasserstein", "loss_curve",
                        "Wasserstein estimate E[D(x)]-E[D(G(z))]", "--", doc="E[D(x)] - E[D(G(z))] in logits"),
    "grad_norm_D": Stat("last", "always", "Grad_norm/D", "grad_norm_D", doc="L2 norm of D's gradients, step before the tick"),
    "grad_norm_G": Stat("last", "G", "Grad_norm/G", "grad_norm_G", doc="L2 norm of G's gradients, step before the tick"),
    "crossing_rate": Stat("G", "balance", "Balance/crossing_rate", "crossing_rate",
                          doc="share of G steps at which the loss curves cross (gankit.training.balance)"),
    "g_above": Stat("G", "balance", "Balance/g_above", "g_above", doc="share of G steps with loss_G above the balance line"),
    "r_t": Stat("D", "always", "Overfitting/r_t", "r_t", "overfitting", "r_t = E[sign(D(x))], training batches",
                doc="E[sign(D(x))] on real images (Karras et al. 2020): near 1, D calls every training image real"),
    "ada_p": Stat("last", "ada", "Overfitting/ada_p", "ADA's p", "overfitting", "ADA's augmentation probability p",
                  doc="ADA's augmentation probability at the tick"),
    "recon": Stat("recon", "decoder", "Regularisation/reconstruction", "reconstruction", "loss_curve",
                  "D's reconstruction error (MSE, in loss_D)",
                  doc="mean squared error of D's decoders on the real images (the fastgan models' self-supervision)"),
    "r1": Stat("reg", "r1", "Regularisation/R1", "R1", doc="E||grad D(x)||^2 of the D steps that computed it"),
    "r2": Stat("reg", "r2", "Regularisation/R2", "R2", doc="E||grad D(G(z))||^2 of the D steps that computed it"),
    "d_train_probe": Stat("row", "probe", "Overfitting/D_train", "D on training images", "overfitting/right",
                          "training images (a fixed 256)", doc="D's mean score on a fixed slice of the training images"),
    "d_heldout": Stat("row", "probe", "Overfitting/D_heldout", "D on held-out images", "overfitting/right",
                      "held-out real images (256)", doc="D's mean score on as many held-out real images"),
    "heldout_gap": Stat("row", "probe", "Overfitting/heldout_gap", "held-out gap",
                        doc="d_train_probe - d_heldout: a memorising D opens it"),
    "lr_D": Stat("row", "always", "LR/D", "lr_D", doc="D's learning rate at the tick"),
    "lr_G": Stat("row", "always", "LR/G", "lr_G", doc="G's learning rate at the tick"),
    "img_per_s": Stat("row", "always", "Speed/images_per_s", "img/s", doc="training images per second since the last tick"),
}

# The statistics kept on the device, in the order of Tally.means(): the sums of each averaging group,
# then the values set at the tick.
GROUPS = {over: tuple(n for n, s in STATS.items() if s.over == over) for over in ("D", "G", "reg", "recon")}
LAST = tuple(n for n, s in STATS.items() if s.over == "last")
DEVICE_STATS = (*(n for names in GROUPS.values() for n in names), *LAST)
ROW = tuple(n for n, s in STATS.items() if s.over == "row")
OPTIONAL = ("r1", "r2", "decoder")  # "when" conditions whose statistics a run without them leaves out of its rows


def named(means: torch.Tensor) -> dict[str, float]:
    """Tally.means() (averaged over the ranks) by name."""
    return dict(zip(DEVICE_STATS, means.tolist()))


def nonfinite(values: dict[str, float], step: int) -> str | None:
    """The message for non-finite statistics, or None when all are finite."""
    bad = ", ".join(f"{STATS[k].label}={v}" for k, v in values.items()
                    if v is not None and not math.isfinite(v))
    return f"non-finite values in the steps up to step {step}: {bad}" if bad else None


def row(values: dict[str, float], holds: dict[str, bool]) -> dict:
    """A tick's statistics in STATS' order: each value where its `when` holds, else None; R1/R2 and
    the reconstruction are left out of the rows of a run that has none (no "r1"/"r2"/"decoder" key in holds)."""
    return {n: (values[n] if holds[s.when] else None) for n, s in STATS.items()
            if s.when not in OPTIONAL or s.when in holds}


def on_plot(figure: str) -> list[tuple[str, Stat]]:
    """The statistics a figure draws, in STATS' order."""
    return [(n, s) for n, s in STATS.items() if s.plot == figure]
