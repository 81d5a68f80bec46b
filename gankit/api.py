"""The Python API, in the style of diffusers and the Hugging Face Hub: `gankit.train(preset, ...)`
returns a `Run`; `gankit.load(path)` returns a `GANPipeline` that samples, generates from chosen z,
runs the latent studies and saves itself with `save_pretrained`; `gankit.evaluate(...)` scores any
source. Everything here is a thin layer over the library below it (training, export, sample,
latent, metrics)."""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import torch

from . import latent as L
from .data import class_names
from .latent.directions import METHODS, Directions, along, class_direction, pca, sefa
from .latent.inversion import Inversion, invert
from .latent.studies import Subject
from .metrics.evaluator import load_evaluator
from .config import Config, chosen_preset, preset_config
from .device import resolve_device
from .errors import GankitError
from .export import PRETRAINED, build_generator, read_generator, write_generator
from .metrics import DEFAULT_N, compute_metrics, default_metrics
from . import runs
from .runs import check_run_dir, new_study_folder, save_grid, write_study_record
from .sample import balanced_labels, class_index, generate, z_from_seed
from .training import train as train_config

Classes = int | str | Sequence[int | str] | None


class GANPipeline:
    """A trained generator, ready to use: `sample`, `generate`, `z`, the latent studies, and
    `save_pretrained` / `from_pretrained` of a folder holding model.safetensors + config.json.

    Images are float tensors (N, C, H, W) in [-1, 1] on the CPU; `gankit.save_images` writes them.
    """

    def __init__(self, tensors: dict[str, torch.Tensor], meta: dict, ema: bool | None = None,
                 device: str | torch.device = "auto", source: str = "generator"):
        self._tensors, self.meta = tensors, meta
        self.folder: Path | None = None  # where it was loaded from: a run folder, a saved generator's folder
        self.source: str | Path | None = None  # the path it was loaded from, as given
        self.device = resolve_device(str(device))
        self.G = build_generator(tensors, meta, ema, self.device, source)

    @classmethod
    def from_pretrained(cls, path: str | Path, ema: bool | None = None, device: str | torch.device = "auto",
                        **hub_kwargs) -> "GANPipeline":
        """Load a run folder, a `save_pretrained` folder or a generator's .safetensors file; with
        huggingface_hub installed, a Hub repository id ("user/name") is downloaded first
        (`hub_kwargs` go to huggingface_hub.snapshot_download). Local paths never touch the network.
        `ema`: the EMA weights (None: when the run trained them)."""
        local = Path(path)
        if not local.exists() and "/" in str(path) and not str(path).startswith((".", "/")):
            local = Path(_hub().snapshot_download(repo_id=str(path), **hub_kwargs))
        tensors, meta, weights = read_generator(local)
        pipe = cls(tensors, meta, ema, device, source=str(weights))
        pipe.folder = local if local.is_dir() else local.parent
        pipe.source = path  # as given (a run folder, a file, a Hub id), for the studies' records
        return pipe

    # ---- what it is -------------------------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        """The length of a latent vector."""
        return self.G.z_dim

    @property
    def num_classes(self) -> int:
        """Classes of a conditional generator; 0 for an unconditional one."""
        return self.G.num_classes

    @property
    def class_names(self) -> list[str]:
        """A conditional generator's classes, in label order (empty when unconditional)."""
        return list(self.G.class_names)

    @property
    def img_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images it makes."""
        return tuple(self.G.img_shape)

    @property
    def weights(self) -> str:
        """Which weights are loaded: "G_ema" or "G"."""
        return self.G.weights

    def __repr__(self) -> str:
        kind = f"{self.num_classes} classes" if self.num_classes else "unconditional"
        return (f"GANPipeline({self.meta['model']} on {self.meta['dataset']}, z_dim {self.z_dim}, images "
                f"{'x'.join(map(str, self.img_shape))}, {kind}, {self.weights} weights, step {self.meta.get('step')})")

    # ---- images -------------------------------------------------------------------------------------
    def z(self, seed: int = 0, n: int = 8) -> torch.Tensor:
        """n latent vectors (n, z_dim) from a seed: the same on every machine (as `gankit sample --seed`)."""
        return z_from_seed(seed, n, self.z_dim)

    def labels(self, classes: Classes, n: int) -> torch.Tensor | None:
        """Class indices (n,) for a conditional generator: one class (index or name) for all, a list
        of n, or None for every class equally often. None for an unconditional generator."""
        if not self.num_classes:
            if classes is not None:
                raise GankitError("this generator is unconditional: it takes no classes")
            return None
        if classes is None:
            return balanced_labels(n, self.num_classes)
        items = [classes] * n if isinstance(classes, (int, str)) else list(classes)
        if len(items) != n:
            raise GankitError(f"{len(items)} classes for {n} images: give one class, or one per image")
        return torch.tensor([self._class_index(c) for c in items], dtype=torch.long)

    def _class_index(self, c: int | str) -> int:
        return class_index(c, self.class_names, "class")

    def generate(self, z: torch.Tensor, classes: Classes = None) -> torch.Tensor:
        """G(z) for latent vectors z (N, z_dim), in eval mode (an image depends only on its own z)."""
        z = torch.as_tensor(z, dtype=torch.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise GankitError(f"z of shape {tuple(z.shape)}; this generator takes (N, {self.z_dim})")
        return generate(self.G, z, y=self.labels(classes, len(z)))

    def sample(self, n: int = 8, seed: int = 0, classes: Classes = None) -> torch.Tensor:
        """n images from the seed's latent vectors (the images `gankit sample --seed SEED --n N` makes)."""
        return self.generate(self.z(seed, n), classes)

    # ---- latent studies -----------------------------------------------------------------------------
    def subject(self, cls: int | str | None = None, every_class: bool = False) -> Subject:
        """What a saved latent study runs on (gankit.latent.studies): G with a conditional G's class
        fixed to `cls` (an index or a name), or with every_class and no `cls` (or "all"), the
        conditional G itself over all its classes. Its studies are saved under this generator's folder."""
        if self.folder is None:
            raise GankitError("this generator was not loaded from a folder, so its studies have nowhere to go")
        src = str(self.source)
        if not self.num_classes:
            if cls is not None:
                raise GankitError(f"--class {cls}: {src} is an unconditional run (trained without --conditional), "
                                  f"so it has no classes to choose from")
            return Subject(self.G, src, self.folder)
        if cls is None or cls == "all":
            if every_class:
                return Subject(self.G, src, self.folder, list(range(self.num_classes)))
            raise GankitError(f"{src} is a class-conditional run: choose the class to study with --class "
                              f"(an index or one of: {', '.join(self.class_names)})")
        c = class_index(cls, self.class_names)
        return Subject(L.ForClass(self.G, c), src, self.folder, [c])

    def _study_G(self, cls: int | str | None) -> torch.nn.Module:
        """G itself, or a conditional G with its class fixed (the studies take z alone)."""
        if self.num_classes:
            return L.ForClass(self.G, self._class_index(0 if cls is None else cls))
        if cls is not None:
            raise GankitError("this generator is unconditional: it takes no class")
        return self.G

    def nudge(self, z: torch.Tensor, dim: int, delta: float, cls: int | str | None = None) -> torch.Tensor:
        """Images of z with dimension `dim` moved by -delta, 0, +delta: (3, N, C, H, W)."""
        L.check_dims([dim], self.z_dim)
        return L.nudge(self._study_G(cls), torch.as_tensor(z, dtype=torch.float32), dim, delta)

    def sweep(self, z: torch.Tensor, dims: list[int], values: Sequence[float] = tuple(range(-4, 5)),
              cls: int | str | None = None) -> torch.Tensor:
        """One base vector z (z_dim,), each of `dims` set to each value: (len(dims), len(values), C, H, W)."""
        L.check_dims(list(dims), self.z_dim)
        return L.sweep(self._study_G(cls), torch.as_tensor(z, dtype=torch.float32), list(dims), list(values))

    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, frames: int = 10, method: str = "slerp",
                    cls: int | str | None = None) -> torch.Tensor:
        """Images along the path from z0 to z1 (each (z_dim,)), ends included: (frames, C, H, W)."""
        if method not in L.INTERPOLATIONS:
            raise GankitError(f"unknown method {method!r}; valid: {', '.join(L.INTERPOLATIONS)}")
        path = L.INTERPOLATIONS[method](torch.as_tensor(z0, dtype=torch.float32),
                                        torch.as_tensor(z1, dtype=torch.float32), frames)
        return generate(self._study_G(cls), path)

    def rank_dims(self, n: int = 256, delta: float = 2.0, seed: int = 0) -> list[dict]:
        """Every latent dimension ranked by the mean change of the image when it moves by ±delta."""
        return L.rank_dims(self._study_G(None), n=n, delta=delta, seed=seed)

    # ---- control: directions and inversion -----------------------------------------------------------
    def directions(self, method: str = "sefa", k: int = 10, cls: int | str | None = None, n: int = 5000,
                   seed: int = 0, from_class: int | str | None = None, to_class: int | str | None = None) -> Directions:
        """Directions in z that matter (gankit.directions): 'sefa' (closed form), 'pca' (of G's early
        activations over n samples), or 'class' (the boundary between the evaluator's `from_class`
        and `to_class`; one direction). Their `.vectors` are (k, z_dim) unit rows, best first."""
        G = self._study_G(cls)
        if method not in METHODS:
            raise GankitError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
        if not 1 <= k <= self.z_dim:
            raise GankitError(f"k={k}: this generator's z has {self.z_dim} dimensions")
        if method == "sefa":
            found = sefa(G, k)
        elif method == "pca":
            found = pca(G, k, n, seed)
        else:
            model, _ = load_evaluator(self.meta["dataset"], "cpu")
            names = class_names(self.meta["dataset"], 10)
            pick = lambda c: c if isinstance(c, int) else [x.lower() for x in names].index(str(c).lower())
            found = class_direction(G, lambda x: torch.softmax(model(x.float()), 1), pick(from_class), pick(to_class),
                                    n, seed)
        found.fingerprint = self.G.fingerprint
        return found

    def edit(self, z: torch.Tensor, direction: torch.Tensor, amounts: Sequence[float] = (-3, 0, 3),
             cls: int | str | None = None) -> torch.Tensor:
        """Images of z (N, z_dim) moved by each amount along a direction (a (z_dim,) vector, e.g. a
        row of `directions(...).vectors`): (len(amounts), N, C, H, W)."""
        z = torch.as_tensor(z, dtype=torch.float32).reshape(-1, self.z_dim)
        d = torch.as_tensor(direction, dtype=torch.float32)
        if d.shape != (self.z_dim,):
            raise GankitError(f"a direction must be a ({self.z_dim},) vector, got {tuple(d.shape)}")
        return along(self._study_G(cls), z, d / d.norm(), list(amounts))

    def invert(self, images: torch.Tensor, iterations: int = 100, restarts: int = 2, seed: int = 0) -> Inversion:
        """Project images (N, C, H, W) in [-1, 1], of this generator's shape, into z (gankit.invert):
        the result's `.z` (and `.y` for a conditional G) redraw its `.images` with `generate`."""
        x = torch.as_tensor(images, dtype=torch.float32)
        if tuple(x.shape[1:]) != tuple(self.img_shape):
            raise GankitError(f"images of shape {tuple(x.shape[1:])}; this generator makes {tuple(self.img_shape)}")
        evaluator = load_evaluator(self.meta["dataset"], self.device)[0] if self.img_shape == (1, 28, 28) else None
        return invert(self.G, x, evaluator, iterations=iterations, restarts=restarts, seed=seed)

    # ---- saving -------------------------------------------------------------------------------------
    def save_study(self, command: str, images: torch.Tensor, z: torch.Tensor | None = None,
                   run: str | Path | None = None, **settings) -> Path:
        """Save a latent study's pictures where `gankit report` shows them, as the CLI's studies are
        saved: a new RUN/latent/COMMAND-TIME/ with COMMAND.png (a (R, N, C, H, W) result of nudge,
        sweep or edit as R rows of N; (N, C, H, W) in rows of 8) and COMMAND.json (the weights, z and
        `settings`, e.g. dims=[3], deltas=[2]). `run`: default, the folder this generator was loaded from."""
        base = Path(run) if run is not None else self.folder
        if base is None:
            raise GankitError("this generator was not loaded from a folder: give run=FOLDER to save a study")
        x = torch.as_tensor(images)
        if x.ndim not in (4, 5):
            raise GankitError(f"images of shape {tuple(x.shape)}: expected (N, C, H, W) or (R, N, C, H, W)")
        folder = new_study_folder(base, command)
        save_grid(x.reshape(-1, *x.shape[-3:]), folder / f"{command}.png", x.shape[1] if x.ndim == 5 else 8)
        write_study_record(folder, command, base, self.G, z=z, files=[f"{command}.png"], **settings)
        return folder


    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """model.safetensors (G's weights, and G_ema's when trained) and config.json (what rebuilds G)
        in `folder`, which `gankit.load`, every `gankit` command and `from_pretrained` read back.
        An existing saved generator there is kept unless `overwrite`."""
        folder = Path(folder)
        if (folder / PRETRAINED[0]).exists() and not overwrite:
            raise GankitError(f"{folder}: already holds a saved generator; choose another folder or overwrite=True")
        folder.mkdir(parents=True, exist_ok=True)
        write_generator(self._tensors, {k: v for k, v in self.meta.items() if k != "sha256"},
                        folder / PRETRAINED[0], folder / PRETRAINED[1])
        return folder

    def push_to_hub(self, repo_id: str, private: bool = False, token: str | None = None) -> str:
        """Upload the saved generator to a Hugging Face Hub repository (needs huggingface_hub and a
        network). Returns the repository's URL."""
        hub = _hub()
        api = hub.HfApi(token=token)
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message="gankit generator")
        return str(url)


def _hub():
    try:
        import huggingface_hub  # (optional: only the Hub's download and upload need it)
    except ImportError:
        raise GankitError("the Hugging Face Hub needs huggingface_hub: pip install huggingface_hub") from None
    return huggingface_hub


def load(path: str | Path, ema: bool | None = None, device: str | torch.device = "auto") -> GANPipeline:
    """A trained generator from a run folder, a `save_pretrained` folder or a .safetensors file."""
    return GANPipeline.from_pretrained(path, ema=ema, device=device)


class Run(runs.Run):
    """A run folder (gankit.runs.Run: its config, statistics, quality curve, metrics, latent studies
    and checkpoints) with its generator and its evaluation a call away."""

    @property
    def generator(self) -> GANPipeline:
        """The run's generator (its EMA weights when it trained them), as gankit.load gives it."""
        return load(self.path)

    def evaluate(self, **kwargs) -> dict:
        """gankit.evaluate of this run's generator."""
        return evaluate(self.path, **kwargs)


def train(preset: str | Config | None = None, *, resume: str | Path | None = None, progress: bool | None = None,
          on_quality: Callable[[dict], bool] | None = None, **overrides) -> Run:
    """Train a preset (`gankit.PRESETS`) or a Config, with any Config field overridden by keyword
    (`gankit.train("default", minutes=3, seed=1)`), and return the Run. No preset: 'default', or
    for `data_root=` a folder of images, the folder preset of its image size (as `gankit train
    --data-root DIR`). With `resume`, continue that run folder (overrides may raise its epochs,
    steps or minutes). `on_quality` sees each in-training evaluation; returning True ends training there."""
    if resume is not None:
        saved = json.loads((check_run_dir(resume) / "config.json").read_text())["config"]
        cfg = Config.from_dict({**saved, **overrides}, source=str(Path(resume) / "config.json"))
    elif isinstance(preset, Config):
        cfg = dataclasses.replace(preset, **overrides)
    else:
        cfg = preset_config(chosen_preset(preset, overrides), **overrides)
    return Run(Path(train_config(cfg, resume=resume, progress=progress, on_quality=on_quality)))


def evaluate(source: str | Path | Run | GANPipeline | torch.Tensor, dataset: str = "fashion-mnist",
             n: int = DEFAULT_N, metrics: Sequence[str] | None = None, seed: int = 0, ema: bool | None = None,
             device: str = "auto", data_root: str | None = None, inception_weights: str | None = None) -> dict:
    """Sample quality of n images from `source` (a run, a generator, an image folder, a tensor of
    images) against n real test images of `dataset`, with its evaluator (or Inception-v3 features
    from `inception_weights`): {"fid_fmnist10k": ..., "precision_fmnist10k": ..., ...}. `metrics`
    names them; by default all, but FID where n is too small for it (default_metrics)."""
    device = str(resolve_device(device))
    metrics = default_metrics(n, bool(inception_weights)) if metrics is None else metrics
    if isinstance(source, GANPipeline):
        y = source.labels(None, n)
        return compute_metrics(generate(source.G, source.z(seed, n), y=y), dataset, list(metrics), n,
                               data_root=data_root, device=device, inception_weights=inception_weights, labels=y)
    return compute_metrics(Path(source) if isinstance(source, Run) else source, dataset, list(metrics), n, seed,
                           ema=ema, data_root=data_root, device=device, inception_weights=inception_weights)


def save_images(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Images (N, C, H, W) in [-1, 1] as one PNG grid, `nrow` per row."""
    path = Path(path)
    save_grid(images, path, nrow)
    return path


__all__ = ["GANPipeline", "Run", "evaluate", "load", "save_images", "train"]
