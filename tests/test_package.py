"""The package a stranger installs: the wheel carries every file gankit reads at run time, and,
installed into a fresh virtual environment (reusing this one's torch and other dependencies),
trains and evaluates from a folder outside the checkout (that one in `make test-all`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(ROOT)], check=True, cwd=tmp_path, capture_output=True, timeout=300)
    return next(dist.glob("gankit-*.whl"))


@pytest.mark.e2e
def test_the_wheel_carries_every_file_gankit_reads(tmp_path):
    names = zipfile.ZipFile(build_wheel(tmp_path)).namelist()
    for needed in ("gankit/metrics/weights/fashion-mnist.safetensors", "gankit/metrics/weights/fashion-mnist.json",
                   "gankit/training/loop.py", "gankit/data/idx.py", "gankit/cli/__init__.py"):
        assert needed in names, f"{needed} is missing from the wheel"
    assert any(n.endswith("LICENSE") for n in names)


@pytest.mark.e2e
@pytest.mark.slow  # (a virtual environment, an install, a training and an evaluation in fresh processes: ~20 s)
def test_wheel_installs_trains_and_evaluates_outside_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path)
    # A fresh environment: gankit from the wheel alone; torch and the rest from this environment's
    # site-packages (a plain path, so this checkout's editable install is not seen there).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   timeout=300, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import gankit; print(gankit.__file__)"], cwd=work, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(venv)), f"gankit imported from {where}, not from the installed wheel"
    gankit = str(venv / "bin" / "gankit")
    subprocess.run([gankit, "train", "--preset", "lab04-mlp", "--steps", "20", "--eval-n", "500"], cwd=work, env=env,
                   check=True, capture_output=True, timeout=600)
    run = next((work / "runs").glob("00000-*"))
    assert "fid_fmnist500" in (run / "quality.jsonl").read_text()  # the in-training evaluation found the weights
    # (--metrics without memorisation: it compares with all 60,000 training images, ~45 s of
    # embedding that the tour's `gankit eval` already pays; here the installed evaluator is the point.)
    out = subprocess.run([gankit, "eval", str(run), "--n", "500", "--metrics", "fid", "precision", "classes"], cwd=work,
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "metrics.json").read_text())["fmnist500"]["fid_fmnist500"] > 0
