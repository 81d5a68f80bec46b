"""The one typed Config, its presets and its validation.

Every default lives here with its one-line help (field metadata); the CLI flags (`--d-lr 1e-4`)
and their help are generated from these fields and the Python API takes the same names, as torch-fidelity feeds both from
one DEFAULTS. Presets are dicts of overrides, like StyleGAN2-ADA's cfg_specs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from .data import DATASET_CHOICES, class_names
from .data.folder import survey
from .errors import ConfigError
from .files import atomic_write_text
from .nets import DECODERS, D_CONDITIONING, D_NORMS, LR_SCHEDULES, MODELS, OBJECTIVES, OPTIMIZERS, build_models, has_batchnorm
from .nets.augment import parse_policy


def F(default, help: str, choices=None):
    """A Config field: its default, its one-line help, and for a field that takes one of a few
    names, those names (a registry's keys, or a tuple). `--help`, the flags' argparse choices and
    validate() all read this metadata."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class Config:
    # What to train.
    preset: str = F("default", "preset the values came from (recorded in the run name)")
    dataset: str = F("fashion-mnist", "an IDX dataset, or folder: any folder of images (with --data-root)", DATASET_CHOICES)
    data_root: str | None = F(None,
        "folder with the IDX files (unset: $GANKIT_DATA, Debian's package, then a download), or of the images")
    channels: int = F(1, "image channels (Fashion-MNIST and MNIST are grayscale; a folder may be 1 or 3)")
    image_size: int = F(0, "side of the square images; 0: the model's own size", (0, 28, 32, 64, 128))
    hflip: bool = F(False, "flip half of every real batch horizontally (faces; not for digits or clothes)")
    subset: int = F(0, "train on this many of the dataset's images (stratified by class in an IDX dataset, a seeded "
                       "choice in a folder); 0: all. Evaluations still compare with the full test split")
    augment: str = F("none", "augment every image D sees, real and generated, in D's and G's steps: none, diffaug "
                             "(DiffAugment, Zhao et al. 2020) or ada (adaptive, Karras et al. 2020), for small "
                             "datasets", ("none", "diffaug", "ada"))
    diffaug_policy: str = F("color,translation,cutout", "DiffAugment's transforms, comma-separated: color, "
                                                        "translation, cutout (colour saturation on RGB only)")
    ada_target: float = F(0.8, "ADA's target for r_t = E[sign(D(x))]: p rises while D calls more of the training "
                               "images real than this, and falls below it (the ADA paper's 0.6 lets p burst early "
                               "under a BCE D, whose r_t starts high on any data)")
    ada_speed: int = F(50_000, "ADA's speed: real images it takes p to go from 0 to 1 (p is adjusted every 4 steps)")
    bad_files: str = F("skip", "unreadable files in a folder dataset: skip (listed by name) or fail", ("skip", "fail"))
    model: str = F("dcgan", "the model family (`gankit presets` and the guide describe each)", MODELS)
    z_dim: int = F(100, "latent dimensions")
    hidden_dim: int = F(256, "width of the mlp-lab6 hidden layers")
    g_width: int = F(64, "G's base channel width in the dcgan, dcgan32/64/128, dcgan64-paper, resnet and fastgan models (ngf)")
    d_width: int = F(64, "D's base channel width in those models (ndf)")
    blocks: int = F(1, "residual blocks per resolution in the resnet models (G and D each)")
    decoder: str = F("auto", "the fastgan models' self-supervised D: reconstructions of the real images it sees from "
                             "its 8x8 features (image), of a random quarter from its 16x16 ones (crop), both, or "
                             "none; auto: both for fastgan, none for the other models", ("auto", *DECODERS))
    recon_weight: float = F(1.0, "weight of D's reconstruction loss (the fastgan models' decoder)")
    d_norm: str = F("batch",
        "D's normalisation: batch | layer | none (models with norm layers) | spectral (any model: SN of D's weights, no norm layers)", D_NORMS)
    init: str = F("normal02", "weight init: normal02 (DCGAN paper) or default (PyTorch's)", ("normal02", "default"))
    conditional: bool = F(False,
        "class-conditional G and D on the dataset's labels (a folder: one class per sub-folder)")
    num_classes: int = F(0, "classes of a conditional run, set from the dataset; 0: unconditional")
    d_cond: str = F("projection",
        "how a conditional D sees the class: concat (the labs' label map) | projection | acgan", D_CONDITIONING)
    ac_weight: float = F(1.0, "weight of the class loss of an AC-GAN discriminator (d_cond acgan)")
    # How to train it.
    objective: str = F("bce", "the GAN objective (loss)", OBJECTIVES)
    n_critic: int = F(1, "D steps per G step")
    clip: float | None = F(None, "WGAN weight clipping bound (unset: the objective's own, 0.01 for wgan, else 0 = none)")
    gp_weight: float | None = F(None, "gradient penalty weight (unset: the objective's own, 10 for wgan-gp, else 0 = none)")
    r1: float = F(0.0, "R1 weight gamma: gamma/2 E||grad D(x)||^2 on real images (Mescheder et al. 2018); 0: none")
    r2: float = F(0.0, "R2 weight gamma: gamma/2 E||grad D(G(z))||^2 on generated images (R3GAN's pair to R1); 0: none")
    reg_every: int = F(1, "lazy regularisation: R1/R2 every this many D steps, scaled by it (StyleGAN2 uses 16)")
    gamma_schedule: str = F("constant", "R1/R2's gamma over training: constant | linear | cosine (down to gamma_end x "
                                        "r1 and r2 at the last step or when the time budget is spent)", LR_SCHEDULES)
    gamma_end: float = F(0.1, "with a decaying gamma_schedule: the final R1/R2 weights as a fraction of r1 and r2 "
                              "(R3GAN decays gamma tenfold)")
    epochs: int = F(15, "passes over the training set (by D, one real batch per D step); 0 with --minutes: no bound "
                        "but the time budget")
    steps: int = F(0, "if > 0, total D steps instead of `epochs` (short runs, tests)")
    minutes: float | None = F(None,
        "time budget: stop after this many minutes of training (evaluations not counted), or at epochs/steps if sooner")
    batch_size: int = F(128, "real images per D step (per process under DDP)")
    g_optimizer: str = F("adam", "G's optimizer", OPTIMIZERS)
    d_optimizer: str = F("adam", "D's optimizer", OPTIMIZERS)
    g_lr: float = F(2e-4, "G learning rate")
    d_lr: float = F(2e-4, "D learning rate")
    g_betas: tuple[float, float] = F((0.5, 0.999), "G Adam betas (RMSprop: alpha=b2; SGD: momentum=b1)")
    d_betas: tuple[float, float] = F((0.5, 0.999), "D Adam betas (RMSprop: alpha=b2; SGD: momentum=b1)")
    g_weight_decay: float = F(0.0, "G weight decay")
    d_weight_decay: float = F(0.0, "D weight decay")
    lr_schedule: str = F("constant",
        "learning rates over training: constant | linear | cosine (down to lr_end x the lr at the last step or when the time budget is spent)", LR_SCHEDULES)
    lr_end: float = F(0.0, "with a decaying lr_schedule: the final learning rates as a fraction of g_lr and d_lr")
    ema: float = F(0.0, "decay of an exponential moving average of G's weights; 0: off")
    # Where and how fast.
    seed: int = F(0, "seeds weights, data order, noise and the fixed grid z")
    device: str = F("auto", "where to run: auto (a GPU when there is one, else the CPU), cpu, cuda, cuda:N or mps")
    precision: str = F("fp32", "fp32, bf16, or auto (bf16 where the hardware has it); losses stay fp32",
        ("fp32", "bf16", "auto"))
    on_nan: str = F("stop",
        "non-finite losses: stop (with a message) | rollback (last checkpoint, lr halved, <= 3 times)", ("stop", "rollback"))
    deterministic: bool = F(False, "torch.use_deterministic_algorithms for bitwise-repeatable runs")
    data_on_device: bool = F(True,
        "the dataset as one uint8 tensor on the device; off: kept on the CPU, each batch copied over")
    host_sync: bool = F(False,
        "read the losses on the host every step as lab loops do (.item()); off: only at log ticks")
    optim_impl: str = F("foreach",
        "optimizer kernels: foreach (multi-tensor) | fused (one kernel per step) | loop (per tensor)", ("foreach", "fused", "loop"))
    channels_last: bool | None = F(None,
        "channels_last (NHWC) convolutions (unset: on for conv models on the CPU, where measured faster)")
    compile: bool = F(False, "torch.compile G and D (Inductor's default mode); the gradient penalty stays eager")
    sync_bn: bool = F(False, "under torchrun: BatchNorm statistics over all ranks' batches (SyncBatchNorm)")
    # What to write.
    out_dir: str = F("runs", "parent folder of run folders")
    log_every: int = F(100, "D steps between log ticks (stats.jsonl, TensorBoard, NaN checks); epochs shorter than "
                            "this are taken together for the epoch line, grid and checkpoint")
    ckpt_every: int = F(1, "epochs between checkpoints (last.pt is rewritten each time)")
    ckpt_minutes: float = F(5.0, "minutes of training between checkpoints within an epoch too, so a kill loses at most "
                                 "that much; 0: at epoch ends only")
    keep: int = F(2, "periodic checkpoints kept besides last.pt")
    grid_size: int = F(64, "fixed-z samples in the per-epoch grid (8 per row)")
    eval_every: int = F(-1,
        "D steps between quality evaluations; -1: each epoch (if the dataset has an evaluator); 0: off")
    eval_n: int = F(5000, "generated and test images per quality evaluation")

    # ---- derived values -------------------------------------------------------------
    def resolved(self) -> "Config":
        """A copy with objective-dependent defaults filled in, so the saved config says
        exactly what ran."""
        cfg = dataclasses.replace(self)
        _check_types(cfg)
        obj = OBJECTIVES.get(cfg.objective)
        if obj is not None:
            if cfg.clip is None:
                cfg.clip = obj.default_clip
            if cfg.gp_weight is None:
                cfg.gp_weight = obj.default_gp
        if cfg.image_size == 0 and cfg.model in MODELS:
            cfg.image_size = MODELS[cfg.model].size
        if cfg.conditional and cfg.num_classes == 0:
            cfg.num_classes = len(class_names(cfg.dataset, 0, cfg.data_root))
        cfg.g_betas = tuple(cfg.g_betas)
        cfg.d_betas = tuple(cfg.d_betas)
        return cfg

    def validate(self) -> "Config":
        """Raise ConfigError naming the field and the reason for anything that cannot run.
        Called on a resolved config before any work is done."""
        self._validate_choices()
        self._validate_sizes()
        self._validate_budget()
        self._validate_optimisation()
        self._validate_constraint()
        return self

    def _validate_choices(self) -> None:
        for name, valid in field_choices().items():
            _choice(name, getattr(self, name), valid)
        if not (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")):
            raise ConfigError(f"device '{self.device}' is not valid; use auto, cpu, cuda, cuda:N or mps")
        if self.num_classes and not self.conditional:
            raise ConfigError(f"num_classes={self.num_classes} without --conditional: the class count is taken "
                              f"from the dataset when --conditional is on; leave num_classes at 0")
        if self.conditional and self.num_classes < 2:
            raise ConfigError(f"--conditional needs at least 2 classes, got {self.num_classes}")
        if not (math.isfinite(self.ac_weight) and self.ac_weight >= 0):
            raise ConfigError(f"ac_weight must be a number >= 0, got {self.ac_weight}")
        self._validate_decoder()

    def _validate_decoder(self) -> None:
        decodes = self.model.startswith("fastgan")
        if self.decoder not in ("auto", "none") and not decodes:
            raise ConfigError(f"--decoder {self.decoder}: model {self.model} has no reconstruction decoder; models "
                              f"with one: {', '.join(k for k in MODELS if k.startswith('fastgan'))}")
        if not (math.isfinite(self.recon_weight) and self.recon_weight >= 0):
            raise ConfigError(f"recon_weight must be a number >= 0, got {self.recon_weight}")
        if decodes and self.decoder != "none" and self.conditional and self.d_cond == "concat":
            raise ConfigError(f"--d-cond concat with {self.model}'s decoder: the label map joined to the image would "
                              f"be reconstructed too; use --d-cond projection (or --decoder none)")

    def _validate_sizes(self) -> None:
        for name in ("channels", "z_dim", "hidden_dim", "g_width", "d_width", "blocks", "n_critic", "batch_size",
                     "log_every", "ckpt_every", "grid_size"):
            _positive(name, getattr(self, name))
        for name, most in LIMITS.items():  # sizes past these would exhaust memory before the first step
            if getattr(self, name) > most:
                raise ConfigError(f"{name} {getattr(self, name)} is past what gankit's models are made for "
                                  f"(at most {most}); did you mean a smaller value?")
        if self.channels != 1 and self.dataset in ("fashion-mnist", "mnist"):
            raise ConfigError(f"dataset {self.dataset} is grayscale: channels must be 1, got {self.channels}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if self.subset < 0 or (0 < self.subset < self.batch_size):
            raise ConfigError(f"subset must be 0 (all images) or at least one batch ({self.batch_size}), got {self.subset}")
        if self.augment == "diffaug":
            try:
                parse_policy(self.diffaug_policy)
            except ValueError as e:
                raise ConfigError(f"diffaug_policy: {e}") from None
        if not 0 < self.ada_target < 1:
            raise ConfigError(f"ada_target must be between 0 and 1 (r_t's target; the paper's is 0.6), got {self.ada_target}")
        if self.ada_speed <= 0:
            raise ConfigError(f"ada_speed must be a positive number of images, got {self.ada_speed}")
        if self.dataset == "folder" and not self.data_root:
            raise ConfigError("dataset folder needs --data-root DIR, the folder of images (searched recursively)")
        native = MODELS[self.model].size
        if self.image_size != native:
            same = [k for k, v in MODELS.items() if v.size == self.image_size]
            raise ConfigError(f"model {self.model} makes {native}x{native} images, not {self.image_size}x"
                              f"{self.image_size}" + (f"; models at {self.image_size}: {', '.join(same)}" if same
                                                      else f"; image sizes: {sorted({v.size for v in MODELS.values()})}"))

    def _validate_budget(self) -> None:
        if self.steps < 0:
            raise ConfigError(f"steps must be >= 0 (0 means: use epochs), got {self.steps}")
        if self.steps == 0 and not (self.epochs == 0 and self.minutes):
            if self.epochs == 0:
                raise ConfigError("epochs 0 (no bound but the time budget) needs --minutes M, or --steps N")
            _positive("epochs", self.epochs)
        if self.eval_every < -1:
            raise ConfigError(f"eval_every must be -1 (each epoch), 0 (off) or a number of steps, got {self.eval_every}")
        if self.eval_every != 0 and self.eval_n <= 128:
            raise ConfigError(f"eval_n must exceed the evaluator's 128 feature dimensions for FID, got {self.eval_n}")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ConfigError(f"minutes must be a positive number of minutes (leave it out for no time budget), "
                              f"got {self.minutes}")
        if self.eval_every > 0 and not self.judged_in_training():
            raise ConfigError(f"--eval-every {self.eval_every}: gankit's evaluators judge 28x28 Fashion-MNIST/MNIST "
                              f"images; for {self.dataset} at {self.image_size}x{self.image_size} use `gankit eval` "
                              f"with --inception-weights after training")
        if not (math.isfinite(self.ckpt_minutes) and self.ckpt_minutes >= 0):
            raise ConfigError(f"ckpt_minutes must be a number of minutes >= 0 (0: checkpoints at epoch ends only), "
                              f"got {self.ckpt_minutes}")
        if self.keep < 0:
            raise ConfigError(f"keep must be >= 0, got {self.keep}")

    def _validate_optimisation(self) -> None:
        if not (0.0 <= self.lr_end <= 1.0):
            raise ConfigError(f"lr_end is the final learning rates' fraction of g_lr and d_lr, in [0, 1]; got {self.lr_end}")
        for who in ("g", "d"):
            lr, betas, wd = (getattr(self, f"{who}_{k}") for k in ("lr", "betas", "weight_decay"))
            if not (math.isfinite(lr) and lr > 0):
                raise ConfigError(f"{who}_lr must be a positive number, got {lr}")
            if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
                raise ConfigError(f"{who}_betas must be two numbers in [0, 1), got {betas}")
            if not (math.isfinite(wd) and wd >= 0):
                raise ConfigError(f"{who}_weight_decay must be >= 0, got {wd}")
        if not (0.0 <= self.ema < 1.0):
            raise ConfigError(f"ema is a decay in [0, 1) (0 turns EMA off), got {self.ema}")

    def _validate_constraint(self) -> None:
        """The critic's Lipschitz constraint and D's normalisation."""
        clip, gp = self.clip or 0.0, self.gp_weight or 0.0
        if clip < 0 or gp < 0 or not (math.isfinite(clip) and math.isfinite(gp)):
            raise ConfigError(f"clip and gp_weight must be >= 0, got clip={clip}, gp_weight={gp}")
        if clip > 0 and gp > 0:
            raise ConfigError(
                "weight clipping and a gradient penalty together: the penalty replaces clipping "
                "(Gulrajani et al. 2017); set --clip 0 or --gp-weight 0")
        if OBJECTIVES[self.objective].wasserstein and clip == 0 and gp == 0:
            raise ConfigError(
                f"objective {self.objective} needs a Lipschitz constraint on the critic: "
                "--clip 0.01 (WGAN) or --gp-weight 10 (WGAN-GP)")
        if self.d_norm in ("layer", "none") and not MODELS[self.model].d_norm:
            raise ConfigError(f"model {self.model}'s discriminator has no normalisation layers, "
                              f"so d_norm={self.d_norm} does not apply; models with one: "
                              + ", ".join(k for k, v in MODELS.items() if v.d_norm))
        self._validate_r1_r2(clip, gp)
        if gp > 0:
            _, D = build_models(dataclasses.replace(self, init="default"))
            if has_batchnorm(D):
                raise ConfigError(
                    f"a gradient penalty with a BatchNorm critic ({self.model}, d_norm=batch) is "
                    "invalid: the penalty is per sample and BatchNorm mixes the batch. "
                    "Use --d-norm layer (as Gulrajani et al. 2017) or --d-norm none")

    def _validate_r1_r2(self, clip: float, gp: float) -> None:
        """R1 and R2: non-negative weights, a positive interval, a per-sample D, no second constraint."""
        for name in ("r1", "r2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name} is a penalty weight gamma >= 0 (0: none), got {value}")
        if self.reg_every < 1:
            raise ConfigError(f"--reg-every is how many D steps lie between R1/R2 updates (1: every step), "
                              f"got {self.reg_every}")
        if not (0.0 <= self.gamma_end <= 1.0):
            raise ConfigError(f"gamma_end is the final R1/R2 weights' fraction of r1 and r2, in [0, 1]; got {self.gamma_end}")
        if not (self.r1 or self.r2):
            if self.gamma_schedule != "constant":
                raise ConfigError(f"--gamma-schedule {self.gamma_schedule} decays the R1/R2 weights, but the run has "
                                  f"none: add --r1 GAMMA and/or --r2 GAMMA")
            return
        if clip > 0 or gp > 0:
            raise ConfigError("R1/R2 and a Wasserstein constraint together: weight clipping or the gradient "
                              "penalty already bounds the critic's gradients, and R1/R2 do not apply to a "
                              "Wasserstein critic; set --r1 0 --r2 0, or use --objective rpgan/bce/hinge")
        _, D = build_models(dataclasses.replace(self, init="default"))
        if has_batchnorm(D):
            raise ConfigError(f"R1/R2 with a BatchNorm discriminator ({self.model}, d_norm=batch) are invalid: the "
                              "penalties are per sample and BatchNorm mixes the batch. Use --d-norm layer or "
                              "--d-norm none")

    def validate_launch(self, world_size: int, device_type: str) -> "Config":
        """What only the launch decides: the checks for several processes (torchrun) on a device."""
        if self.sync_bn and world_size > 1 and device_type != "cuda":
            raise ConfigError("--sync-bn needs CUDA: torch's SyncBatchNorm runs on GPUs only; on the CPU each "
                              "rank's BatchNorm uses its own batch (drop --sync-bn)")
        for name in ("lr_schedule", "gamma_schedule"):
            if getattr(self, name) != "constant" and self.minutes and world_size > 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)} with --minutes under torchrun: the "
                                  f"schedule would follow each rank's own clock, so the ranks' weights would drift "
                                  f"apart; give the budget as --steps or --epochs")
        return self

    def judged_in_training(self) -> bool:
        """gankit's evaluators judge 28x28 Fashion-MNIST/MNIST images; other runs are scored after
        training with Inception features (`gankit eval --inception-weights`)."""
        return self.image_size == 28 and self.dataset != "folder"

    # ---- JSON -----------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The fields as JSON-ready values (betas as lists)."""
        d = dataclasses.asdict(self)
        d["g_betas"], d["d_betas"] = list(self.g_betas), list(self.d_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "config") -> "Config":
        """A Config from saved fields; unknown fields are refused, naming `source`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown config field(s) {unknown}")
        cfg = cls(**d)
        cfg.g_betas, cfg.d_betas = tuple(cfg.g_betas), tuple(cfg.d_betas)
        return cfg

    def save(self, path: Path, **extra) -> None:
        """{"config": the fields, **extra} as JSON at `path` (a run folder's config.json)."""
        atomic_write_text(Path(path), json.dumps({"config": self.to_dict(), **extra}, indent=2) + "\n")


def _check_types(cfg: Config) -> None:
    """Each field holds a value of its declared type (an int is fine where a float is asked);
    values from the Python API or a hand-edited JSON get the same checks as CLI flags."""
    for name, tp in field_types().items():
        value = getattr(cfg, name)
        optional = type(None) in typing.get_args(tp)
        kind = base_type(tp)
        if value is None and optional:
            continue
        if kind is tuple:
            ok = (isinstance(value, (tuple, list)) and len(value) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        elif kind is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, kind)
        if not ok:
            want = "two numbers" if kind is tuple else kind.__name__ + (" or null" if optional else "")
            raise ConfigError(f"{name} must be {want}, got {value!r}")


def _choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(map(str, valid))}")


def _positive(name: str, value) -> None:
    if not (isinstance(value, int) and value >= 1):
        raise ConfigError(f"{name} must be a whole number >= 1, got {value}")


LIMITS = {"z_dim": 4096, "hidden_dim": 16384, "g_width": 1024, "d_width": 1024, "blocks": 64, "grid_size": 1024,
          "batch_size": 65536, "n_critic": 1000}

# ---- presets: each course-lab experiment by name ------------------------------------------
# Values not named take the Config defaults above. `about` is shown by `gankit presets`.
_QUALITY_PER_MINUTE = dict(
    model="dcgan", g_width=32, d_width=32, objective="bce", init="normal02", batch_size=64, epochs=15,
    g_lr=4e-4, d_lr=4e-4, ema=0.999, precision="auto")

# A folder a user brings: default's lessons (half width, Adam 4e-4, EMA, bf16 where native) on the
# 5x5-kernel DCGAN of the faces labs, DiffAugment (a folder is usually small), and a time budget:
# an epoch of a 1,000-image folder is 16 steps, so epochs are no measure of a run's length.
_FOLDER = {**_QUALITY_PER_MINUTE, "dataset": "folder", "channels": 3, "augment": "diffaug", "hflip": False,
           "epochs": 0, "minutes": 30.0, "eval_every": 0}
# The preset a folder of images of each size gets without --preset: the folder study's best at 30
# minutes (docs/results/folder-recipes.md: at 128 px the FastGAN-style family led the DCGAN in all 3 seeds,
# at 32 and 64 px the DCGAN led where bf16 is native)
FOLDER_DEFAULT = {32: "folder32", 64: "folder64", 128: "fastgan128"}
FOLDER_SIZES = tuple(FOLDER_DEFAULT)


def _picked(name: str, size: int) -> str:
    """The words a folder preset's `about` line adds when it is what a folder of `size` px gets."""
    return " (what `gankit train --data-root DIR` picks for such images)" if FOLDER_DEFAULT[size] == name else ""

SMALL_FOLDER = 10_000  # images: below it a folder trains with DiffAugment

PRESETS: dict[str, dict] = {
    "default": dict(
        about="quality per minute: DCGAN at half the labs' width, batch 64, Adam 4e-4, EMA of G, bf16 on CPUs with it",
        **_QUALITY_PER_MINUTE),
    "best": {
        **_QUALITY_PER_MINUTE,
        "about": "the best recipe measured for 30 minutes on a 2-core CPU: default's (no variant tried beat it), "
                 "trained for 30 minutes of training time, judged every 4685 steps (5 epochs)",
        "epochs": 1000, "minutes": 30.0, "eval_every": 5 * (60000 // 64)},  # 5 epochs of Fashion-MNIST at batch 64
    "lab04-mlp": dict(
        about="lab 4 vanilla GAN: MLP, BCE, Adam 2e-4 b(0.5,0.999)",
        model="mlp", objective="bce", init="default", batch_size=64, epochs=20),
    "lab04-cnn": dict(
        about="lab 4 CNN GAN: Linear + Upsample + Conv, BCE, Adam 2e-4 b(0.5,0.999)",
        model="cnn-upsample", objective="bce", init="normal02", batch_size=64, epochs=20),
    "dcgan-report": dict(
        about="DCGAN report: DCGAN, BCE, N(0,0.02) init, Adam 2e-4 b(0.5,0.999)",
        model="dcgan", objective="bce", init="normal02", batch_size=128, epochs=15),
    "lab6-gan": dict(
        about="lab 6 GAN: MLP (h=256), BCE, Adam 2e-4",
        model="mlp-lab6", objective="bce", init="default", batch_size=64, epochs=20,
        g_betas=(0.9, 0.999), d_betas=(0.9, 0.999)),
    "lab6-dcgan": dict(
        about="lab 6 DCGAN: FC + ConvT G, conv/maxpool D, BCE, Adam 2e-4",
        model="dcgan-fc", objective="bce", init="default", batch_size=64, epochs=20,
        g_betas=(0.9, 0.999), d_betas=(0.9, 0.999)),
    "lab6-wgan": dict(
        about="lab 6 WGAN: dcgan-fc, RMSprop 5e-5, clip 0.01, n_critic 5",
        model="dcgan-fc", objective="wgan", init="default", batch_size=64, epochs=20,
        g_optimizer="rmsprop", d_optimizer="rmsprop", g_lr=5e-5, d_lr=5e-5,
        g_betas=(0.0, 0.99), d_betas=(0.0, 0.99), clip=0.01, n_critic=5),
    "wgan-gp": dict(
        about="WGAN-GP: DCGAN with a LayerNorm critic, Adam 1e-4 b(0,0.9), n_critic 5, gp 10",
        model="dcgan", d_norm="layer", objective="wgan-gp", init="normal02", batch_size=64,
        epochs=20, g_lr=1e-4, d_lr=1e-4, g_betas=(0.0, 0.9), d_betas=(0.0, 0.9), n_critic=5,
        gp_weight=10.0),
    "cgan": dict(
        about="conditional GAN as course labs write it: lab 4's MLP, the class embedded and joined to z and to the image",
        model="mlp", conditional=True, d_cond="concat", objective="bce", init="default", batch_size=64, epochs=20),
    "cdcgan": dict(
        about="conditional DCGAN: the default recipe with the class joined to z and a projection discriminator",
        conditional=True, d_cond="projection", **_QUALITY_PER_MINUTE),
    **{f"folder{size}": dict(
        about=f"any folder of images at {size}x{size}{_picked(f'folder{size}', size)}: "
              f"default's recipe on the {size}-px DCGAN, DiffAugment, 30 minutes",
        **{**_FOLDER, "model": f"dcgan{size}", "image_size": size}) for size in FOLDER_SIZES},
    **{f"fastgan{size}": dict(
        about=f"small image folders at {size}x{size}{_picked(f'fastgan{size}', size)}: the FastGAN-style family "
              "(GLU up-blocks, skip-layer excitation, a self-supervised D), hinge loss, DiffAugment colour + "
              "translation, EMA, 30 minutes",
        **{**_FOLDER, "model": f"fastgan{size}", "image_size": size, "objective": "hinge", "init": "normal02",
           "g_width": 8, "d_width": 16,
           "g_lr": 2e-4, "d_lr": 2e-4, "diffaug_policy": "color,translation"}) for size in FOLDER_SIZES},
    "faces64": dict(
        about="faces at 64x64 (an image folder): DCGAN k5, Adam, D lr 1e-4 < G lr 2e-4, wd 1e-4 D / 1e-6 G",
        dataset="folder", channels=3, image_size=64, model="dcgan64", objective="bce", init="normal02",
        batch_size=64, epochs=25, g_lr=2e-4, d_lr=1e-4, g_weight_decay=1e-6, d_weight_decay=1e-4, hflip=True),
    "faces128": dict(
        about="faces at 128x128: as faces64 with one more layer in G and D",
        dataset="folder", channels=3, image_size=128, model="dcgan128", objective="bce", init="normal02",
        batch_size=64, epochs=25, g_lr=2e-4, d_lr=1e-4, g_weight_decay=1e-6, d_weight_decay=1e-4, hflip=True),
}


def folder_preset(root: str | Path) -> tuple[str, dict, str] | None:
    """The preset a folder of images gets when nothing else is named (`gankit train --data-root DIR`):
    (preset, the overrides its images need, a line saying so), or None when `root` holds no images
    or holds IDX files (a dataset such as Fashion-MNIST). The size is the folder's median shorter side
    rounded to the nearest of FOLDER_SIZES; a grayscale folder trains in 1 channel; a folder of
    SMALL_FOLDER images or more without DiffAugment."""
    root = Path(root).expanduser()
    if not root.is_dir() or any(root.rglob("*-idx[13]-ubyte*")):
        return None
    found = survey(root)
    if not found.count:
        return None
    size = min(FOLDER_SIZES, key=lambda s: (abs(math.log2(max(found.side, 1) / s)), -s))
    name, overrides = FOLDER_DEFAULT[size], {}
    if found.grayscale:
        overrides["channels"] = 1
    if found.count >= SMALL_FOLDER:
        overrides["augment"] = "none"
    described = (f"{found.count:,} {'grayscale' if found.grayscale else 'colour'} images, typically "
                 f"{found.side} px") + (f", {SMALL_FOLDER:,} or more: no DiffAugment" if "augment" in overrides else "")
    return name, overrides, (f"{root}: a folder of images ({described}): preset {name} "
                             f"({PRESETS[name]['minutes']:g} minutes); --preset NAME chooses another")


def chosen_preset(preset: str | None, overrides: dict, say=print) -> str:
    """The preset named, else the folder preset when `data_root` is a folder of images and no
    `dataset` is given (said in one line; the overrides its images need are added to `overrides`
    where not set), else 'default'. The CLI's `gankit train` and the API's `gankit.train` both ask."""
    if preset is None and "dataset" not in overrides and overrides.get("data_root"):
        found = folder_preset(overrides["data_root"])
        if found:
            preset, needs, line = found
            for k, v in needs.items():
                overrides.setdefault(k, v)
            say(line)
    return preset or "default"


def preset_config(name: str, **overrides) -> Config:
    """The resolved Config of preset `name` with `overrides` applied (not yet validated)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset '{name}'; valid: {', '.join(PRESETS)}")
    values = {k: v for k, v in PRESETS[name].items() if k != "about"}
    values.update(overrides)
    values["preset"] = name
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s) {unknown}; valid: {', '.join(sorted(known))}")
    return Config(**values).resolved()


# ---- the fields' types and help, for the CLI flags (gankit.cli.flags) and search spaces -----------
def field_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def field_choices() -> dict[str, tuple[str, ...]]:
    """The names each choice-valued field takes, from the field metadata."""
    return {f.name: tuple(f.metadata["choices"]) for f in dataclasses.fields(Config) if f.metadata.get("choices")}


def field_help() -> dict[str, str]:
    """Each field's one-line help, from its metadata, for `--help`."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(Config)}


def base_type(tp):
    origin = typing.get_origin(tp)
    if origin is tuple:
        return tuple
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return base_type(args[0])
    return tp
