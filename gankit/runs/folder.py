"""Run folders that describe themselves (as StyleGAN2-ADA's `00000-desc/`): where each file lives,
the stats log that training appends (stats.jsonl + TensorBoard), and `Run`, the one reading of a
finished or running folder that the API, the CLI, the report and the app share.

    NNNNN-desc/
      config.json          the resolved config, the command, versions, what the budget bought
      models.txt           both networks with their parameter counts
      stats.jsonl          one row per log tick; quality.jsonl one per evaluation; warnings.jsonl
      metrics.json         `gankit eval` results by protocol ({"fmnist10k": {...}, ...})
      images/              fixed-z grids per epoch, milestone rows (milestone_SSSSSSSS.png)
      checkpoints/         NAME.pt + NAME.pt.sha256
      generator.safetensors + generator.json, best.* (the best FID so far)
      latent/COMMAND-TIME/ a latent study: its figures and COMMAND.json (gankit.runs.records)
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch

from ..config import Config
from ..errors import ConfigError, RunError
from ..files import atomic_write_text
from ..nets import count_params
from .stats import STATS

RUN_RE = re.compile(r"^(\d{5})-")
MILESTONES = (0, 25, 50, 75, 100)  # percent of training at which the fixed-z row is kept


def create_run_dir(out_dir: str | Path, desc: str) -> Path:
    """Make `out_dir/NNNNN-desc/` with the next free number. Never reuses an existing folder:
    os.mkdir fails if another process took the name, and then the next number is tried."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    while True:
        nums = [int(m.group(1)) for p in out.iterdir() if (m := RUN_RE.match(p.name))]
        path = out / f"{max(nums, default=-1) + 1:05d}-{desc}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


class StatsLog:
    """Appends one JSON line per log tick to stats.jsonl and mirrors the scalars to TensorBoard under
    their tags (gankit.runs.stats), grouped by the part before '/' (Loss/D, D_output/real, ...)."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        self.path = run_dir / "stats.jsonl"
        self.quality_path = run_dir / "quality.jsonl"
        self.warnings_path = run_dir / "warnings.jsonl"
        if resume_step is not None:
            for p in (self.path, self.quality_path, self.warnings_path):
                truncate_after(p, resume_step)
        from torch.utils.tensorboard import SummaryWriter  # (tensorboard takes ~1 s to import; only training logs)
        # purge_step drops events a crashed run wrote after the checkpoint we resume from.
        self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)

    def write(self, row: dict) -> None:
        _append(self.path, row)
        for key, stat in STATS.items():
            if row.get(key) is not None:
                self.tb.add_scalar(stat.tag, row[key], row["step"])

    def quality(self, row: dict) -> None:
        """One quality evaluation (quality.jsonl; TensorBoard Quality/<metric>)."""
        _append(self.quality_path, row)
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, float):
                self.tb.add_scalar(f"Quality/{key}", value, row["step"])

    def warning(self, step: int, message: str) -> None:
        _append(self.warnings_path, {"step": step, "warning": message})
        self.tb.add_text("warnings", message, step)

    def image(self, tag: str, grid: torch.Tensor, step: int) -> None:
        self.tb.add_image(tag, grid, step)

    def close(self) -> None:
        self.tb.close()


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def truncate_after(path: Path, step: int) -> None:
    """Drop lines logged after `step` (written by an interrupted run past its checkpoint)."""
    if path.exists():
        keep = [json.dumps(row) for row in read_stats(path.parent, path.name) if row["step"] <= step]  # (torn rows go)
        atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def read_stats(run_dir: Path, name: str = "stats.jsonl") -> list[dict]:
    """The rows of a run's stats.jsonl (or quality.jsonl, warnings.jsonl). A line that is not a JSON
    object (a row torn by a kill in the middle of its write) is left out."""
    path = Path(run_dir) / name
    if not path.is_file():
        return []
    rows = []
    for ln in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(ln)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows


def read_json(path: Path, what: str = "JSON file") -> dict:
    """A JSON object from a file, or a RunError naming the file."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: not a readable {what} ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: not a {what} (expected a JSON object)")
    return data


def read_run_config(run_dir: Path) -> tuple[Config, dict]:
    """(the run's Config, the whole config.json) of a run folder, checked: a config.json that is not
    JSON, lacks its config or names unknown fields is refused, naming the file."""
    path = Path(run_dir) / "config.json"
    meta = read_json(path, "run config")
    if not isinstance(meta.get("config"), dict):
        raise RunError(f"{path}: no \"config\" object in it; is this a gankit run folder?")
    try:
        cfg = Config.from_dict(meta["config"], source=str(path))
        cfg.resolved()
    except ConfigError as e:
        raise RunError(str(e)) from None
    except TypeError as e:
        raise RunError(f"{path}: a field of another type than gankit writes ({e})") from None
    return cfg, meta


def fid_key(quality: list[dict]) -> str | None:
    """The FID column of quality.jsonl rows (its name carries the protocol, e.g. fid_fmnist5k)."""
    return next((k for k in (quality[0] if quality else {}) if k.startswith("fid_")), None)


def last_grid(run_dir: Path) -> Path | None:
    """The newest fixed-z grid of a run (images/epoch_*.png or step_*.png)."""
    grids = [*(Path(run_dir) / "images").glob("epoch_*.png"), *(Path(run_dir) / "images").glob("step_*.png")]
    return max(grids, key=lambda p: p.stat().st_mtime) if grids else None


def milestone_path(run_dir: Path, step: int) -> Path:
    return run_dir / "images" / f"milestone_{step:08d}.png"


def write_models_txt(run_dir: Path, G: torch.nn.Module, D: torch.nn.Module) -> str:
    text = (f"Generator ({count_params(G):,} parameters)\n{G}\n\n"
            f"Discriminator ({count_params(D):,} parameters)\n{D}\n")
    (run_dir / "models.txt").write_text(text)
    return text


def check_run_dir(path: str | Path) -> Path:
    p = Path(path)
    if p.is_file():
        hint = f"; did you mean its folder, {p.parent}?" if (p.parent / "config.json").is_file() else ""
        raise RunError(f"{p}: a file, not a run folder{hint}")
    if not p.is_dir():
        raise RunError(f"{p}: no such run folder")
    if not (p / "config.json").is_file():
        raise RunError(f"{p}: not a gankit run folder (no config.json)")
    return p


@dataclass(frozen=True)
class Study:
    """One latent study saved in a run folder: its folder (RUN/latent/COMMAND-TIME) and its record."""
    folder: Path
    record: dict

    @property
    def command(self) -> str:
        return self.record.get("command", self.folder.name.split("-")[0])


def read_studies(folder: Path, command: str | None = None) -> list[Study]:
    """The latent studies saved in folder/latent/ (a run's, or a saved generator's), oldest first,
    only those of `command` when given; one whose record is torn or not a JSON object is left out."""
    out = []
    for sub in sorted((Path(folder) / "latent").glob("*-*")) if (Path(folder) / "latent").is_dir() else []:
        records = sorted(sub.glob(f"{command}.json" if command else "*.json"))
        try:
            out.append(Study(sub, read_json(records[0], "study record"))) if records else None
        except RunError:
            continue
    return out


def headline(evaluations: list[dict]) -> dict | None:
    """The evaluation a report leads with: the most samples, a `gankit eval` among equals, the newest."""
    return max(evaluations, key=lambda e: (e["n"], e["source"] == "gankit eval", e["created"]), default=None)


class Run:
    """A run folder, read once per attribute on first use: its Config (checked), config.json's other
    records, the training statistics, the quality curve, the warnings, the metrics `gankit eval`
    saved, the latent studies and the checkpoints. `os.fspath(run)` is the folder, so a Run goes
    wherever a path does. Refuses (RunError) a path that is not a run folder, naming it."""

    def __init__(self, path: str | Path):
        self.path = check_run_dir(path)

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def _config_json(self) -> tuple[Config, dict]:
        cfg, meta = read_run_config(self.path)
        return cfg.resolved(), meta

    @property
    def config(self) -> Config:
        """The Config the run trained with (config.json, checked: unknown fields or types are refused)."""
        return self._config_json[0]

    @property
    def meta(self) -> dict:
        """The whole config.json: the config, the command, versions, the device, what the budget bought."""
        return self._config_json[1]

    @cached_property
    def stats(self) -> list[dict]:
        """stats.jsonl: one row per log tick (losses, D outputs, gradient norms, speed)."""
        return read_stats(self.path)

    @cached_property
    def quality(self) -> list[dict]:
        """quality.jsonl: one row per in-training evaluation."""
        return read_stats(self.path, "quality.jsonl")

    @cached_property
    def warnings(self) -> list[dict]:
        """warnings.jsonl: what training warned about, with the step."""
        return read_stats(self.path, "warnings.jsonl")

    @cached_property
    def metrics(self) -> dict[str, dict]:
        """metrics.json: every `gankit eval` of the run by protocol ({"fmnist10k": {"fid_fmnist10k": ...}})."""
        path = self.path / "metrics.json"
        data = read_json(path, "metrics file") if path.exists() else {}
        return {k: v for k, v in data.items() if isinstance(v, dict)}

    @cached_property
    def studies(self) -> list[Study]:
        """The latent studies saved in RUN/latent/ (read_studies)."""
        return read_studies(self.path)

    @property
    def checkpoints(self) -> list[Path]:
        """The checkpoint files in RUN/checkpoints/ (not verified here: resume does that)."""
        return sorted((self.path / "checkpoints").glob("*.pt"))

    def steps(self) -> int:
        """The last logged step (0 before the first log tick)."""
        return self.stats[-1]["step"] if self.stats else 0

    def epochs(self) -> float:
        return self.stats[-1]["epoch"] if self.stats else 0.0

    def training_seconds(self) -> tuple[float, str]:
        """(seconds, what they count): the training time the log and config.json record
        (evaluations not counted), or the wall time of the last log row in runs of older versions."""
        if isinstance(self.meta.get("budget"), dict) and "train_time_s" in self.meta["budget"]:
            return self.meta["budget"]["train_time_s"], "of training (evaluations not counted)"
        last = self.stats[-1] if self.stats else {}
        if "train_time_s" in last:
            return last["train_time_s"], "of training (evaluations not counted)"
        return last.get("time_s", 0.0), "(wall clock, evaluations included)"

    def evaluations(self) -> list[dict]:
        """Every evaluation the run has, each {"source", "n", "created", "scores", "floor"}: the last
        in-training one (quality.jsonl, source "training, step S") and each protocol `gankit eval`
        saved in metrics.json (source "gankit eval"). Scores keep the numbers and the evaluator's
        class shares (a list per protocol)."""
        keep = lambda k, v: isinstance(v, float) or (k.startswith("class_shares_") and isinstance(v, list))  # noqa: E731
        found = []
        if self.quality:
            last = self.quality[-1]
            found.append({"source": f"training, step {last.get('step', '?')}", "n": self.config.eval_n,
                          "created": "", "scores": {k: v for k, v in last.items() if keep(k, v) and k != "epoch"},
                          "floor": {}})
        for rec in self.metrics.values():
            found.append({"source": "gankit eval", "n": rec.get("n", 0), "created": rec.get("created", ""),
                          "scores": {k: v for k, v in rec.items() if keep(k, v)}, "floor": rec.get("real_floor", {})})
        return found

    def final_scores(self) -> dict:
        """The headline scores, by one rule: of the run's `evaluations()`, the one with the most
        samples, a `gankit eval` among equals (the newest of those); never a smaller one presented
        over a larger. Its numbers, the real-data floor under "_floor" when `gankit eval` measured it,
        and the sample count under "_n"."""
        best = headline(self.evaluations())
        return best["scores"] | {"_floor": best["floor"], "_n": best["n"]} if best else {}
