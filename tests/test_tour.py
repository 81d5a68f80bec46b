"""The README's tour and the guide's first page run as typed: each documented command is run in a
fresh folder, in order, with its own defaults (`--device auto` included), as a user would run it,
and checked by its exit code and what it wrote. One substitution only, a training budget a test
cannot afford (SUBSTITUTIONS). `gankit app RUN` is served with its defaults and its page opened in
a real browser. These start processes: `make test-e2e` runs them (CI runs it after `make test`).
Then every subcommand runs once, in this process, on a run like the tour's with only its required
arguments: the good path, beside tests/test_cli_fuzz.py's bad ones (`make test`)."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shared import CHROMIUM, PAGES, ROOT, gankit, gankit_blocks, run_of, shared_folder, tour_commands


def test_the_readme_and_the_guide_show_the_same_tour():
    readme, guide = (tour_commands(p) for p in PAGES)
    assert readme == guide and len(readme) == 5
    assert [shlex.split(c)[1] for c in readme] == ["train", "sample", "eval", "report", "app"]


@pytest.fixture(scope="session")
def tour(tmp_path_factory) -> Path:
    """A folder in which the tour's first command (`gankit train ...`) ran as typed; shared by every
    pytest worker of the session (the first to arrive trains, the others wait for it)."""
    def make(folder: Path) -> None:
        out = gankit(tour_commands(PAGES[0])[0], folder)
        assert out.returncode == 0, out.stderr[-3000:]
    return shared_folder(tmp_path_factory, "tour", make)


@pytest.mark.e2e
def test_the_tour_runs_as_typed(tour):
    first, sample, evaluate, report, app = tour_commands(PAGES[0])
    run = run_of(tour)
    # train: the folder the README names, with everything it lists
    assert run.is_dir(), f"`{first}` did not make {run.name}: {sorted(p.name for p in (tour / 'runs').iterdir())}"
    for name in ("config.json", "models.txt", "stats.jsonl", "quality.jsonl", "generator.safetensors"):
        assert (run / name).is_file(), name
    assert json.loads((run / "config.json").read_text())["config"]["preset"] == "default"
    # sample: 8 images from seed 0
    out = gankit(sample, tour)
    assert out.returncode == 0, out.stderr
    folder = Path(re.search(r"-> (\S+)/samples\.png", out.stdout).group(1))
    assert np.load(tour / folder / "samples.npy").shape == (8, 1, 28, 28)
    # eval: the metrics at the documented n, merged into metrics.json
    out = gankit(evaluate, tour)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["fmnist10k"]["fid_fmnist10k"])
    # report: one HTML file where the comment says
    out = gankit(report, tour)
    assert out.returncode == 0, out.stderr
    html = (run / "report.html").read_text()
    assert "fid_fmnist10k" in html and "<img" in html


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test-e2e installs it)")
def test_the_app_serves_with_its_defaults_and_its_page_opens(tour):
    """`gankit app RUN` as typed (device auto, Gradio's port): it serves, and the page shows the run's images."""
    pytest.importorskip("gradio")
    playwright = pytest.importorskip("playwright.sync_api")
    line = tour_commands(PAGES[0])[4]
    script = Path(sys.executable).with_name("gankit")
    argv = ([str(script)] if script.exists() else [sys.executable, "-m", "gankit"]) + shlex.split(line)[1:]
    proc = subprocess.Popen(argv, cwd=tour, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines, url, t0 = [], None, time.time()
        while url is None and time.time() - t0 < 180:
            text = proc.stdout.readline()
            if not text:
                break
            lines.append(text)
            m = re.search(r"open (http://\S+)", text)
            url = m.group(1) if m else None
        assert url, f"`{line}` did not serve (exit {proc.poll()}):\n{''.join(lines)[-3000:]}"
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(url)
            page.wait_for_selector("#main img", timeout=60_000)
            assert page.locator("#eight img").count() == 8
            assert not errors, errors
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)


# ---- every subcommand, once, with only its required arguments ------------------------------------
# name: (the command with its required arguments, RUN standing for a run like the tour's; the budget
# flags a test can afford where the defaults train or score for minutes). Slow ones run in
# `make test-all` only.
GOOD_PATH = {
    "presets": ("gankit presets", ""),
    "sample": ("gankit sample RUN", ""),
    "explore nudge": ("gankit explore nudge RUN --dims 0", ""),                # --dims: required without --direction
    "explore sweep": ("gankit explore sweep RUN --dims 0", ""),
    "explore interpolate": ("gankit explore interpolate RUN --from 0 --to 1", ""),
    "explore arithmetic": ("gankit explore arithmetic RUN --a 0 --b 1 --c 2", ""),
    "explore rank": ("gankit explore rank RUN", "--n 32"),                     # not 256 base vectors
    "explore directions": ("gankit explore directions RUN", ""),
    "invert": ("gankit invert RUN --dataset-split test", "--n 4"),             # images, or a split; not 16
    "compare": ("gankit compare RUN", "--n 1000"),                             # not 10,000 samples
    "report": ("gankit report RUN", ""),
    "grid": ("gankit grid --presets lab04-mlp", "--seeds 0 --steps 20 --eval-n 0 --n 1000"),
    "tune": ("gankit tune --name s --preset lab04-mlp --param d_lr=log:1e-4:1e-3", "--trials 1 --steps 20"),
    "evaluator train": ("gankit evaluator train", "--epochs 1"),               # one pass over 60,000 images
}
# train, eval and app: their good path is the tour's own (train with its preset and a short budget;
# `make test-e2e`); `make test` trains every preset through gankit.cli.main (test_train.py), evaluates
# in test_eval_cli.py and draws the app's parts in-process (test_app.py).
# tune's runs in `make test-all`: tests/test_tune.py runs studies in `make test`.
SLOW = {"evaluator train", "tune"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in GOOD_PATH])
def test_every_subcommand_runs_with_only_its_required_arguments(name, real_run, tmp_path, monkeypatch, capsys):
    """In this process, through gankit.cli.main, as the `gankit` script calls it (the tour above runs
    the script itself; this test stays in `make test`): on a copy of the session's 60-step `default`
    run (conftest's real_run, the run the tour's first command makes, trained in-process), so that
    what one command writes there (a report, a latent study) never meets another's."""
    from gankit.cli import main
    run = shutil.copytree(real_run, tmp_path / "run", ignore=shutil.ignore_patterns(".*"))  # (.*: atomic writes' temporaries)
    line = " ".join(GOOD_PATH[name]).strip().replace("RUN", str(run))
    # a fresh working folder (new files land there); the evaluator it trains goes to a private cache
    monkeypatch.chdir(tmp_path)
    if name == "evaluator train":
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code = main(shlex.split(line)[1:])
    err = capsys.readouterr().err
    assert code == 0, f"`{line}` exit {code}:\n{err[-3000:]}"
    assert "internal error" not in err and "Traceback" not in err
    if name in ("grid", "tune"):
        assert (tmp_path / "runs").is_dir()
    if name == "evaluator train":
        assert list((tmp_path / "cache").rglob("fashion-mnist.safetensors"))
    if name == "compare":
        assert (tmp_path / "comparison" / "comparison.json").is_file()


# ---- the tutorial ("Your first lab report in 15 minutes"), as typed ------------------------------------
TUTORIAL = ROOT / "docs" / "tutorial.md"


def tutorial_commands() -> list[str]:
    """Every `gankit` line of the tutorial's bash blocks, in order."""
    return [line for lines in gankit_blocks(TUTORIAL) for line in lines]


@pytest.mark.e2e
@pytest.mark.slow  # (three trainings and a comparison of 5,000 samples each: ~3 minutes on a 2-core CPU)
def test_the_tutorial_runs_as_typed(tmp_path):
    lines = tutorial_commands()
    assert [shlex.split(c)[1] for c in lines] == ["train"] * 3 + ["sample", "explore", "explore", "compare",
                                                                  "report", "report"]
    for line in lines:
        out = gankit(line, tmp_path)
        assert out.returncode == 0, f"`{line}` exit {out.returncode}:\n{out.stderr[-3000:]}"
    names = sorted(p.name for p in (tmp_path / "runs").iterdir() if not p.name.startswith("."))
    assert names == ["00000-default-fashion-mnist", "00001-lab04-mlp-fashion-mnist", "00002-lab6-wgan-fashion-mnist"]
    run = tmp_path / "runs" / names[0]
    assert {p.name.split("-")[0] for p in (run / "latent").iterdir()} == {"sample", "nudge", "sweep"}
    assert set(json.loads((tmp_path / "comparison" / "comparison.json").read_text())) == {*names, "real_floor"}
    assert (run / "report.html").is_file() and (tmp_path / "report.html").is_file()
