"""What every benchmark script shares: the repository on sys.path, the device's name for the
results, and appending a dated result to a Markdown file."""
from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores, {torch.get_num_threads()} threads"


def append_result(path: str | Path, title: str, intro: str, text: str) -> None:
    """Append `text` to the Markdown file at `path`, creating it with `title` and `intro`."""
    out = Path(path)
    if not out.exists():
        out.write_text(f"# {title}\n\n{intro}\n")
    with out.open("a") as f:
        f.write(text)
