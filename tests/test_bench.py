"""Every bench/ script runs, with tiny arguments, and ends with the line that states its result,
so none of them can rot (as diffusers tests its examples). Their figures are not checked here:
speed belongs to the benchmarks themselves, never to timed tests. They read the real
Fashion-MNIST, which `make test` installs."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gankit.config import preset_config
from gankit.training import train

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py") if p.name not in ("common.py", "labloop.py"))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_root):
    return train(preset_config("default", data_root=str(tiny_root), out_dir=str(tmp_path_factory.mktemp("r")),
                               batch_size=16, steps=4, eval_every=0), progress=False)


def args_for(script: str, out: Path, run: Path) -> list[str]:
    """Tiny arguments per script; each writes its result file into `out`, not into bench/."""
    md = str(out / "result.md")
    return {
        "throughput.py": ["--models", "mlp", "--batch", "16", "--variants", "plain", "default", "--tick", "2", "--rounds", "2",
                          "--out", md],
        "epoch_times.py": ["--presets", "lab6-gan", "--steps", "20", "--out", md],
        "eval_time.py": [str(run), "--n", "200"],
        "figures.py": ["--list"],  # (making them trains for ~20 minutes: `make figures`; test_docs checks the registry)
        "folder.py": ["--images", "12", "--steps", "3", "--batch", "4", "--presets", "fastgan64", "--profile", "fastgan64",
                      "--out", md],
        "latent_times.py": [str(run), "--rank-n", "4", "--out", md],
        "precision.py": ["--preset", "lab6-gan", "--steps", "3", "--seeds", "0", "--n", "200", "--out", md],
        "quality.py": ["--presets", "lab6-gan", "--steps", "20", "--seeds", "0", "--n", "200", "--out", md,
                       "--runs", str(out / "runs")],
        "scaling.py": ["--nprocs", "1", "--steps", "4", "--batch", "16", "--out", md],
        "time_to_quality.py": ["--lab-epochs", "1", "--lab-steps", "3", "--seeds", "0", "--eval-every", "2", "--out", md],
        "ablation.py": ["--target", "1000", "--minutes", "0.01", "--seeds", "0", "--variants", "default",
                        "--eval-images", "512", "--out", md],
        "app_latency.py": ["--runs", str(run), "--moves", "2", "--out", md],
        "tune_study.py": ["--trials", "2", "--steps", "20", "--seeds", "0", "--eval-n", "200", "--n", "200",
                          "--out-dir", str(out / "runs"), "--out", md, "--figures", str(out / "figures")],
        "model_cost.py": ["--models", "resnet", "--width", "8", "--batch", "8", "--steps", "1", "--out", md],
        "ema_decay.py": ["--preset", "default", "--steps", "12", "--decays", "0.5", "0.9", "--n", "200", "--out", md],
        "augment_cost.py": ["--steps", "120", "--rounds", "1", "--out", md],
        "small_data.py": ["--sizes", "128", "--augments", "none", "ada", "--seeds", "0", "--steps", "6", "--n", "200",
                          "--runs", str(out / "runs"), "--out", md, "--figures", str(out / "figures")],
        "control.py": [str(run), "--n", "4", "--baseline", "64", "--samples", "16", "--pca-n", "200", "--out", md],
        "small_folder.py": ["--data-root", str(out / "shapes"), "--evaluator", str(out / "ev" / "shapes.safetensors"),
                            "--size", "64", "--augments", "none", "ada", "--seeds", "0", "--steps", "3", "--n", "130",
                            "--runs", str(out / "runs"), "--out", md, "--figures", str(out / "figures")],
        "recipes.py": ["--data-root", str(out / "shapes"), "--evaluator", str(out / "ev" / "shapes.safetensors"),
                       "--subset", "130", "--minutes", "0.02", "--seeds", "0", "--n", "130", "--runs",
                       str(out / "runs"), "--out", md, "--figure", str(out / "fig.png")],
        "saturation.py": [str(run), "--n", "8", "--out", md],
        "same_numbers.py": ["--steps", "4", "--cases", "lab6-wgan", "--file", str(out / "sn.json"), "--save"],
        "vs_labs.py": ["--presets", "default", "cdcgan", "--minutes", "0.01", "--curve-images", "500", "--eval-n", "300",
                    "--figure", str(out / "fig.png"), "--out", md],
    }[script]


LAST_LINE = {  # what each script's last line states: its result against its reference
    "throughput.py": "gankit against the labs' loop:", "figures.py": "numbers in: ", "epoch_times.py": "wrote", "eval_time.py": "x the cold-cache run",
    "folder.py": "faster than decoding", "latent_times.py": "wrote", "precision.py": "seed-to-seed spread",
    "quality.py": "wrote", "scaling.py": "images/s against 1 process", "time_to_quality.py": "the labs' time",
    "ablation.py": "wrote", "vs_labs.py": "of labs' loop's", "app_latency.py": "faster",
    "tune_study.py": "seed spread", "ema_decay.py": "the best average is ", "same_numbers.py": "saved the fingerprints",
    "augment_cost.py": "of the step time against none", "small_data.py": "against none",
    "control.py": "as much per unit as the top coordinate", "small_folder.py": "against none",
    "model_cost.py": "x the DCGAN of its size", "recipes.py": "x the reference",
    "saturation.py": "(the reference): ",
}


@pytest.mark.slow  # (a bench script's test: `make test-all`, as the smoke tests below)
def test_same_numbers_finds_the_same_runs_the_same_and_a_changed_one_changed(tmp_path, capsys, monkeypatch):
    """bench/same_numbers.py, the check of a refactor: two runs of the same code agree bit for bit, and
    a fingerprint that differs is reported (exit 1), so its verdict can go either way. (In this
    process: the script's own start-up is tested with the others below.)"""
    spec = importlib.util.spec_from_file_location("same_numbers", BENCH / "same_numbers.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.chdir(tmp_path)
    threads, file = torch.get_num_threads(), tmp_path / "sn.json"
    args = ["--steps", "4", "--cases", "default --augment ada", "--file", str(file)]

    def run(*extra) -> tuple[int, str]:
        code = script.main([*args, *extra])
        torch.set_num_threads(threads)
        return code, capsys.readouterr().out

    assert run("--save")[0] == 0
    code, out = run()
    assert code == 0 and out.strip().endswith("the same numbers, bit for bit"), out[-800:]
    data = json.loads(file.read_text())
    data["runs"]["default --augment ada"]["G"] = "0" * 16
    file.write_text(json.dumps(data))
    code, out = run()
    assert code == 1 and "DIFFERENT: G" in out and "the numbers changed" in out


def test_every_bench_script_is_covered():
    assert set(SCRIPTS) == set(LAST_LINE), "a bench script without a smoke test: add it to args_for and LAST_LINE"


# Every bench script's smoke test runs with `make test-all` only: they are the developers' measuring
# tools, not what a user runs, and together they take ~35 s of `make test`'s budget (eval_time.py's
# cold-cache run alone embeds all 60,000 training images); so do the tests of their shared helpers
# below. test_every_bench_script_is_covered stays in `make test`.
@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_runs_with_tiny_arguments(script, tmp_path, tiny_run):
    if script in ("small_folder.py", "recipes.py"):  # a class folder of 280 pictures, an evaluator of its 2 classes
        from gankit.metrics.evaluator import train_evaluator
        from test_folder import class_folder
        train_evaluator("folder", epochs=1, data_root=str(class_folder(tmp_path / "shapes", 140)),
                        out_dir=tmp_path / "ev", log=lambda m: None)
    proc = subprocess.run([sys.executable, str(BENCH / script), *args_for(script, tmp_path, tiny_run)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # (the tests' own cache)
    if script == "precision.py" and "no native bf16" in proc.stderr:
        assert proc.returncode == 1  # refused with the reason where bf16 would be emulated (hours)
        return
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert LAST_LINE[script] in last, last


@pytest.mark.e2e
@pytest.mark.slow
def test_vs_labs_keeps_runs_reuses_them_and_refuses_another_protocol(tmp_path):
    keep = tmp_path / "kept"
    base = [sys.executable, str(BENCH / "vs_labs.py"), "--presets", "default", "--no-labs", "--eval-n", "300",
            "--figure", str(tmp_path / "fig.png"), "--out", str(tmp_path / "result.md"), "--keep", str(keep)]

    def call(*extra):
        return subprocess.run([*base, *extra], capture_output=True, text=True, timeout=300, cwd=tmp_path)

    first = call("--minutes", "0.01", "--seeds", "0")
    assert first.returncode == 0, first.stderr[-3000:]
    assert sorted(p.name for p in keep.iterdir()) == ["default-s0.G.json", "default-s0.G.safetensors",
                                                      "default-s0.json", "protocol.json"]
    again = call("--minutes", "0.01", "--seeds", "0")  # nothing left to train: the same figures from the kept run
    assert again.returncode == 0, again.stderr[-3000:]
    assert "seed 0: kept in" in again.stdout and "run folder" not in again.stdout + again.stderr
    assert first.stdout.strip().splitlines()[-1] == again.stdout.strip().splitlines()[-1]
    other = call("--minutes", "0.02", "--seeds", "0")
    assert other.returncode != 0 and "another protocol (minutes: 0.01 there, 0.02 now)" in other.stderr
    assert len(list(keep.iterdir())) == 4  # nothing written by the refused call


@pytest.mark.slow  # (a bench helper's test: `make test-all`, as the smoke tests above)
def test_a_study_cell_is_reused_as_it_is_or_resumed_to_a_larger_budget(tiny_root, tmp_path):
    """bench/common.train_or_reuse: a cell trained before is scored again, not retrained; raised
    --steps resume it in its folder to the same weights as a cell trained the whole budget at once;
    other settings train a new one."""
    sys.path.insert(0, str(BENCH))
    from common import earlier_run, train_or_reuse
    from gankit.training.checkpoint import load_checkpoint

    def cfg(steps, out, **kw):
        return preset_config("default", data_root=str(tiny_root), out_dir=str(tmp_path / out), batch_size=16,
                             steps=steps, eval_every=0, log_every=2, precision="fp32", augment="ada", **kw)

    run, seconds, before = train_or_reuse(cfg(4, "cells"), "tiny-ada-s0")
    assert run.name.endswith("-tiny-ada-s0") and seconds is not None and before == 0
    assert train_or_reuse(cfg(4, "cells"), "tiny-ada-s0") == (run, None, 4)
    again, seconds, before = train_or_reuse(cfg(8, "cells"), "tiny-ada-s0")
    assert again == run and seconds is not None and before == 4
    whole, _, _ = train_or_reuse(cfg(8, "whole"), "tiny-ada-s0")
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (run, whole))
    assert a["step"] == b["step"] == 8 and all(torch.equal(a["G"][k], b["G"][k]) for k in a["G"])
    assert earlier_run(tmp_path / "cells", "tiny-ada-s0", cfg(4, "cells")) == (None, 0)  # trained past 4 steps
    assert earlier_run(tmp_path / "cells", "tiny-ada-s0", cfg(8, "cells", seed=1)) == (None, 0)  # another seed


def test_a_recipe_study_pairs_only_cells_trained_side_by_side(monkeypatch):
    """bench/recipes.py: a seed's cells are reused only when every recipe of the seed is finished
    (else all of them train again, beside each other), never with --retrain; --pool takes an
    earlier call's seed only when all its recipes trained in that call (none reused there)."""
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("recipes", BENCH / "recipes.py")
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    monkeypatch.setattr(recipes, "config", lambda job: None)
    monkeypatch.setattr(recipes, "finished", lambda out, name, cfg: name in {"a-s0", "b-s0", "a-s1"})
    jobs = [dict(seed=s, recipe=r, name=f"{r}-s{s}", out="runs") for s in (0, 1) for r in "ab"]
    recipes.mark_reuse(jobs, retrain=False)
    assert [j["reuse"] for j in jobs] == [True, True, False, False]  # seed 1's b is missing: a trains again too
    recipes.mark_reuse(jobs, retrain=True)
    assert not any(j["reuse"] for j in jobs)

    def c(seed, recipe, reused=False):
        return dict(seed=seed, recipe=recipe, reused=reused, fid_t=1.0)
    same = dict(data="d", minutes=30, precision="auto", n=1500)
    now = dict(same, cells=[c(0, "a"), c(0, "b")])
    earlier = [dict(same, date="x", cells=[c(1, "a"), c(1, "b"), c(2, "a", True), c(2, "b"), c(3, "a")]),
               dict(same, minutes=10, cells=[c(4, "a"), c(4, "b")])]
    pooled = recipes.poolable(earlier, now, ["a", "b"], "t")
    assert [(x["seed"], x["recipe"]) for call in pooled for x in call["cells"]] == [(1, "a"), (1, "b")]


STUDY = """
import sys, os, time
sys.path.insert(0, {bench!r})
from common import cell_pool

def hold(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    with cell_pool(1) as pool:
        pool.map(hold, [sys.argv[1]])
"""


@pytest.mark.e2e
@pytest.mark.slow  # (a bench helper's test: `make test-all`, as the smoke tests above)
def test_a_killed_study_takes_its_workers_with_it(tmp_path):
    """bench/common.cell_pool: a SIGTERM to a study ends its worker processes too; they would
    otherwise train on, orphaned, into the run folders the next call resumes."""
    import os
    import signal
    import time
    script, pid_file = tmp_path / "study.py", tmp_path / "worker.pid"
    script.write_text(STUDY.format(bench=str(BENCH)))
    study = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    worker = int(pid_file.read_text())
    study.send_signal(signal.SIGTERM)
    assert study.wait(30) == 128 + signal.SIGTERM

    def alive(pid):
        try:
            return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] not in ("Z", "X")
        except (FileNotFoundError, IndexError):
            return False

    deadline = time.time() + 30
    while alive(worker) and time.time() < deadline:
        time.sleep(0.1)
    if alive(worker):
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the study's worker outlived it")
