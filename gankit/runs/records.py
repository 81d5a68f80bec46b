"""The record of a latent study (sample, nudge, sweep, interpolate, arithmetic, rank, directions,
invert): a new folder RUN/latent/COMMAND-TIME/ (or the folder a user names) and COMMAND.json in it,
saying what was run on which weights, with the latent vectors used. The CLI and the Python API both
write them with these functions, and Run.studies reads them back for the report and the app."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..errors import GankitError
from ..files import atomic_write_text
from ..version import __version__


def new_study_folder(base: str | Path, command: str, out: str | Path | None = None) -> Path:
    """`out` when given (new or empty: nothing saved is overwritten), else a new
    base/latent/COMMAND-YYYYmmdd-HHMMSS[-i]/ that no other study has taken."""
    if out:
        p = Path(out)
        if p.exists() and any(p.iterdir()):
            raise GankitError(f"{p}: folder exists and is not empty; choose a new --out (nothing was written)")
        p.mkdir(parents=True, exist_ok=True)
        return p
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        p = Path(base) / "latent" / (f"{command}-{stamp}" + (f"-{i}" if i else ""))
        try:
            p.mkdir(parents=True)
            return p
        except FileExistsError:
            continue
    raise GankitError(f"cannot make a new folder under {Path(base) / 'latent'}")


def write_study_record(folder: Path, command: str, src: str | Path, G, class_ids: list[int] | None = None,
                       z: torch.Tensor | None = None, **extra) -> Path:
    """folder/COMMAND.json: the command, its source `src`, the weights (G or G_ema), z_dim, the
    version, the time, `extra` (the study's own settings and files; its keys win over these), the
    classes of `class_ids` by name (a conditional G) and the latent vectors z."""
    record = {"command": command, "source": str(src), "weights": G.weights, "z_dim": G.z_dim,
              "gankit_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    if class_ids:
        record["classes"] = [G.class_names[c] for c in class_ids]
    if z is not None:
        record["z"] = z.tolist()
    path = Path(folder) / f"{command}.json"
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path
