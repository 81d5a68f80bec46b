"""gankit on a CUDA GPU: every preset trains, resumes and is evaluated there, a CUDA run is read
on the CPU, and torchrun runs DDP over NCCL. Skipped where torch sees no GPU (CI has none); on a
GPU machine: `python -m pytest tests/test_cuda.py`."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import free_port
from gankit.config import preset_config
from gankit.device import resolve_precision
from gankit.export import load_generator
from gankit.training.checkpoint import load_checkpoint
from gankit.runs import read_stats
from gankit.training import train

from test_folder import make_folder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
ROOT = Path(__file__).resolve().parents[1]
FMNIST_PRESETS = ["default", "lab04-mlp", "lab04-cnn", "dcgan-report", "lab6-gan", "lab6-dcgan", "lab6-wgan",
                  "wgan-gp"]


def cuda_cfg(root, out, preset, **kw):
    return preset_config(preset, **{**dict(data_root=str(root), out_dir=str(out), batch_size=16, log_every=2,
                                           steps=8, eval_every=0, device="cuda"), **kw})


def assert_finite_run(run: Path, steps: int) -> None:
    rows = read_stats(run)
    assert rows and rows[-1]["step"] == steps
    assert all(math.isfinite(r[k]) for r in rows for k in ("loss_D", "loss_G") if r[k] is not None)  # None: no G step in the tick
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == steps
    assert all(torch.isfinite(v).all() for v in ckpt["G"].values() if v.is_floating_point())


@pytest.mark.parametrize("preset", FMNIST_PRESETS)
def test_each_preset_trains_and_resumes_on_cuda(preset, tiny_root, tmp_path):
    run = train(cuda_cfg(tiny_root, tmp_path, preset), progress=False)
    assert_finite_run(run, 8)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["precision"] == resolve_precision(preset_config(preset).precision, torch.device("cuda"))
    assert cfg["channels_last"] is False  # auto: contiguous on CUDA
    train(cuda_cfg(tiny_root, tmp_path, preset, steps=12), resume=run, progress=False)
    assert_finite_run(run, 12)


@pytest.mark.parametrize("preset,size", [("faces64", 64), ("faces128", 128)])
def test_folder_presets_train_on_cuda(preset, size, tmp_path):
    faces = make_folder(tmp_path / "faces", n=48)
    run = train(cuda_cfg(faces, tmp_path / "runs", preset, bad_files="skip", steps=4), progress=False)
    assert_finite_run(run, 4)
    G = load_generator(run / "generator.safetensors", ema=False, device="cuda")
    with torch.no_grad():
        x = G(torch.randn(2, G.z_dim, device="cuda"))
    assert x.shape == (2, 3, size, size) and x.is_cuda


def test_fast_path_switches_on_cuda(tiny_root, tmp_path):
    """fused optimizers, torch.compile, fp32 and channels_last each train and stay finite."""
    for i, kw in enumerate([dict(optim_impl="fused"), dict(compile=True), dict(precision="fp32"),
                            dict(channels_last=True), dict(data_on_device=False, host_sync=True)]):
        run = train(cuda_cfg(tiny_root, tmp_path / str(i), "dcgan-report", **kw), progress=False)
        assert_finite_run(run, 8)


@pytest.mark.e2e
def test_in_training_evaluation_and_cli_on_cuda(tmp_path):
    """On Fashion-MNIST itself (the evaluator is trained on it): quality during training, then the
    CLI's eval, sample, explore and report on the CUDA run."""
    pytest.importorskip("gankit.data").locate("fashion-mnist", "train", download=False)
    run = train(preset_config("default", out_dir=str(tmp_path), steps=40, log_every=10, eval_every=20, eval_n=500,
                              device="cuda"), progress=False)
    quality = [json.loads(x) for x in (run / "quality.jsonl").read_text().splitlines()]
    assert [q["step"] for q in quality] == [20, 40] and all(math.isfinite(q["fid_fmnist500"]) for q in quality)

    def gankit(*args):
        out = subprocess.run([sys.executable, "-m", "gankit", *args], cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    gankit("eval", str(run), "--n", "500", "--device", "cuda", "--metrics", "fid", "is", "classes")
    metrics = json.loads((run / "metrics.json").read_text())["fmnist500"]
    assert math.isfinite(metrics["fid_fmnist500"]) and math.isfinite(metrics["is_fmnist500"])
    gankit("sample", str(run), "--n", "8", "--out", str(tmp_path / "s"))
    gankit("explore", "nudge", str(run), "--dims", "0", "1", "--out", str(tmp_path / "n"))
    gankit("explore", "sweep", str(run), "--dims", "0", "--out", str(tmp_path / "w"))
    gankit("report", str(run))
    assert (run / "report.html").stat().st_size > 10_000


def test_a_cuda_run_is_read_on_the_cpu_and_a_cpu_run_resumes_on_cuda(tiny_root, tmp_path):
    run = train(cuda_cfg(tiny_root, tmp_path / "gpu", "default"), progress=False)
    G = load_generator(run / "generator.safetensors", ema=True, device="cpu")
    z = torch.randn(4, G.z_dim)
    with torch.no_grad():
        cpu = G(z)
        gpu = load_generator(run / "generator.safetensors", ema=True, device="cuda")(z.cuda()).float().cpu()
    assert torch.allclose(cpu, gpu, atol=2e-2)
    cpu_run = train(cuda_cfg(tiny_root, tmp_path / "cpu", "dcgan-report", device="cpu"), progress=False)
    train(cuda_cfg(tiny_root, tmp_path / "cpu", "dcgan-report", steps=12), resume=cpu_run, progress=False)
    assert_finite_run(cpu_run, 12)
    assert "noise stream was saved on another kind of device than cuda: re-seeded at step 8" in \
        (cpu_run / "log.txt").read_text()


@pytest.mark.e2e
def test_torchrun_trains_with_nccl(tiny_root, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "--master-port",
           str(free_port()), "-m", "gankit", "train", "--preset", "dcgan-report", "--data-root",
           str(tiny_root), "--out-dir", str(tmp_path), "--device", "cuda", "--steps", "6", "--batch-size", "16",
           "--eval-every", "0", "--log-every", "2"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    run = next(tmp_path.iterdir())
    assert json.loads((run / "config.json").read_text())["world_size"] == 1
    assert_finite_run(run, 6)
