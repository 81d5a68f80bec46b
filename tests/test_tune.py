"""gankit tune, gankit grid, the balance index and `gankit train --config`. Studies train lab
6's MLP GAN for a few dozen steps on the real Fashion-MNIST (which `make test` installs); the
database storage is tested against a real PostgreSQL server started from Debian's binaries."""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from gankit.runs.balance import correlate, summarize
from gankit.training.balance import update
from gankit.cli import main
from gankit.config import preset_config
from gankit.runs import read_stats
from gankit.tuning.space import parse_param
from gankit.training.state import Tally

optuna = pytest.importorskip("optuna")

TINY = ["--preset", "lab6-gan", "--param", "d_lr=log:1e-4:1e-3", "--steps", "20", "--evals", "2", "--eval-n", "200"]


def gankit(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gankit", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, **kw)


def journal(folder: Path):
    from optuna.storages.journal import JournalFileBackend, JournalStorage
    return JournalStorage(JournalFileBackend(str(folder / "study.journal")))


# ---- the balance index ------------------------------------------------------------------------
def test_balance_counts_crossings_and_who_is_above():
    last, counts = torch.zeros(1), torch.zeros(2)
    # loss_G against loss_D/2: above, above, below, above, below -> 3 crossings, 3 of 5 above
    for g in (2.0, 3.0, 0.5, 1.5, 0.1):
        counts += torch.stack(update(last, torch.tensor(g), torch.tensor(2.0), 0.5))
    assert counts.tolist() == [3.0, 3.0]
    assert last.item() == -1.0


def test_balance_summary_weights_rows_by_the_steps_they_cover():
    rows = [{"step": 100, "epoch": 0.1, "crossing_rate": 0.0, "g_above": 1.0},
            {"step": 300, "epoch": 0.3, "crossing_rate": 0.3, "g_above": 0.5},
            {"step": 1000, "epoch": 1.0, "crossing_rate": None, "g_above": None}]
    s = summarize(rows)
    assert s["balance_index"] == pytest.approx((100 * 0 + 200 * 0.3) / 300)
    assert s["g_above"] == pytest.approx((100 * 1 + 200 * 0.5) / 300)
    assert s["crossings_per_epoch"] == pytest.approx(s["balance_index"] * 1000)
    assert s["evenness"] == pytest.approx(1 - abs(2 * s["g_above"] - 1))
    assert summarize([{"step": 10, "epoch": 1, "crossing_rate": None, "g_above": None}]) == {}


def test_correlate_is_spearman_and_refuses_too_few_points():
    assert correlate([(0.1, 50), (0.2, 40), (0.3, 30), (0.4, 20)])["rho"] == pytest.approx(-1.0)
    assert correlate([(0.1, 50), (0.2, 40)])["rho"] is None
    assert correlate([(0.0, 50), (0.0, 40), (0.0, 30)])["rho"] is None  # constant index: no ranking


def test_training_logs_the_balance_index_and_old_checkpoints_still_load(tmp_path):
    from gankit.training import train
    run = train(preset_config("lab6-gan", out_dir=str(tmp_path), steps=20, log_every=10, eval_every=0), progress=False)
    rows = read_stats(run)
    assert all(0 <= r["crossing_rate"] <= 1 and 0 <= r["g_above"] <= 1 for r in rows)
    wgan = train(preset_config("lab6-wgan", out_dir=str(tmp_path), steps=10, log_every=5, eval_every=0), progress=False)
    assert all(r["crossing_rate"] is None for r in read_stats(wgan))  # no index for Wasserstein losses
    state = Tally.zeros(torch.device("cpu")).state_dict()
    del state["balance"]  # as checkpoints before the index
    Tally.zeros(torch.device("cpu")).load_state_dict(state)
    # A checkpoint of the accumulators before the statistics were named once: each sum lands under its name.
    old = {"acc_D": torch.tensor([1., 2., 3., 4.]), "acc_G": torch.tensor([5.]), "overfit": torch.tensor([6.]),
           "balance": torch.tensor([7., 8., -1.]), "reg": torch.tensor([9., 10., 2.]), "n_D": 2, "n_G": 1}
    tally = Tally.zeros(torch.device("cpu"))
    tally.load_state_dict(old)
    from gankit.runs.stats import named
    means = named(tally.means())
    assert (means["loss_D"], means["wasserstein"], means["r_t"]) == (0.5, 2.0, 3.0)
    assert (means["loss_G"], means["crossing_rate"], means["g_above"]) == (5.0, 7.0, 8.0)
    assert (means["r1"], means["r2"], tally.n_reg, tally.balance.item()) == (4.5, 5.0, 2, -1.0)


# ---- bad input: one line, exit 2, nothing started ----------------------------------------------
@pytest.mark.parametrize("param, message", [
    ("d_lrr=log:1e-5:1e-3", "unknown config field 'd_lrr' (did you mean d_lr"),
    ("d_lr=log:1e-3:1e-5", "empty range"),
    ("d_lr=1e-3:1e-3", "empty range"),
    ("d_lr=log:0:1e-3", "a log range needs LOW > 0"),
    ("objective=bce,nope", "objective=nope does not make a valid lab6-gan config"),
    ("g_betas=0:0.9", "search one of it as g_betas.0"),
    ("g_betas.0=0:1", "g_betas must be two numbers in [0, 1)"),
    ("epochs=1,2", "epochs is not searched"),
    ("n_critic=int:1.5:3", "an int range needs whole numbers"),
    ("d_lr", "expected NAME=SPEC"),
    ("objective=bce", "nothing to search"),
])
def test_bad_search_space_is_one_line_exit_2_and_no_study(param, message, tmp_path, capsys):
    code = main(["tune", "--name", "s", "--out-dir", str(tmp_path), "--preset", "lab6-gan", "--param", param])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_unreachable_database_is_one_line_exit_2(tmp_path, capsys):
    code = main(["tune", "--name", "s", "--out-dir", str(tmp_path), *TINY,
                 "--storage", "postgresql://ada:secret@127.0.0.1:1/gankit"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot open the database" in err and "secret" not in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


def test_other_bad_study_input(tmp_path, capsys):
    assert main(["tune", "--name", "nothing-here", "--out-dir", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["tune", "--name", "s", "--out-dir", str(tmp_path), *TINY, "--trials", "0"]) == 2
    assert main(["tune", "--name", "s", "--out-dir", str(tmp_path), *TINY, "--epochs", "1"]) == 2  # two budgets
    assert "give one budget" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    assert parse_param("n_critic=1:5").kind == "int" and parse_param("d_lr=1e-4:1e-3").kind == "float"


# ---- a study ---------------------------------------------------------------------------------
def test_a_study_writes_runs_results_plots_and_a_best_config_that_trains_again(tmp_path, capsys):
    assert main(["tune", "--name", "s", "--out-dir", str(tmp_path), *TINY, "--trials", "3"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "s"
    result = json.loads((folder / "results.json").read_text())
    assert [t["state"] for t in result["trials"]] == ["complete"] * 3
    runs = sorted(folder.glob("0*-trial*"))
    assert [r.name[6:] for r in runs] == [f"trial{i:03d}-lab6-gan" for i in range(3)]
    for trial, run in zip(result["trials"], runs):
        quality = read_stats(run, "quality.jsonl")
        assert [q["step"] for q in quality] == [10, 20]  # --evals 2 over 20 steps
        assert trial["best_fid"] == pytest.approx(min(q["fid_fmnist200"] for q in quality))
        assert 0 <= trial["balance_index"] <= 1
    for png in ("history.png", "parallel.png", "importances.png", "balance_vs_fid.png"):
        assert (folder / png).stat().st_size > 5000, png
    assert "best: trial" in out and "d_lr" in out
    best = json.loads((folder / "best.json").read_text())
    assert best["trial"] == min(result["trials"], key=lambda t: t["best_fid"])["trial"]

    # `gankit train --config best.json` trains the best trial again, to the same numbers
    assert main(["train", "--config", str(folder / "best.json"), "--out-dir", str(tmp_path / "again")]) == 0
    again = next((tmp_path / "again").iterdir())
    trial_run = Path(best["run"])
    assert read_stats(again, "quality.jsonl")[-1]["fid_fmnist200"] == pytest.approx(
        read_stats(trial_run, "quality.jsonl")[-1]["fid_fmnist200"], rel=1e-5)

    # the report of the study
    assert main(["report", str(folder)]) == 0
    page = (folder / "report.html").read_text()
    assert "Study s" in page and "Balance index and FID" in page and page.count("<img") >= 4

    # joining with another space is refused; with the study's name alone it has nothing left to do
    assert main(["tune", "--name", "s", "--out-dir", str(tmp_path), *TINY[:-2], "--eval-n", "300"]) == 2
    assert "was started with other eval_n" in capsys.readouterr().err
    assert main(["tune", "--name", "s", "--out-dir", str(tmp_path)]) == 0
    assert "this process ran 0 trial(s)" in capsys.readouterr().out


@pytest.mark.e2e
@pytest.mark.slow  # (two processes of five trials, ~14 s; make test keeps the resumed study's tests)
def test_two_processes_share_a_study_without_running_a_trial_twice(tmp_path):
    args = ["tune", "--name", "shared", "--out-dir", str(tmp_path), *TINY, "--trials", "5"]
    procs = [subprocess.Popen([sys.executable, "-m", "gankit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    ran = [int(o[0].split("this process ran ")[1].split()[0]) for o in outs]
    assert sum(ran) == 5 and min(ran) >= 1, ran  # both worked; together exactly the study's trials
    study = optuna.load_study(study_name="shared", storage=journal(tmp_path / "shared"))
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    assert len(done) == 5 and len({t.number for t in done}) == 5  # none lost
    runs = sorted((tmp_path / "shared").glob("0*-trial*"))
    assert len(runs) == 5 and len({r.name[6:] for r in runs}) == 5  # none run twice
    assert {t.user_attrs["run"] for t in done} == {str(r) for r in runs}


@pytest.mark.slow  # (a study's start, a signal and its resume in fresh processes: ~12 s; make test-e2e keeps
# training's own Ctrl-C and signal tests in tests/test_faults.py, make test the resumed-study tests here)
@pytest.mark.e2e
def test_ctrl_c_leaves_a_study_that_the_same_command_resumes(tmp_path, capsys):
    args = ["tune", "--name", "s", "--out-dir", str(tmp_path), "--preset", "lab6-gan", "--param",
            "d_lr=log:1e-4:1e-3", "--steps", "400", "--evals", "1", "--eval-n", "200", "--trials", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "gankit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 120
    while not glob.glob(str(tmp_path / "s" / "*-trial000-*" / "checkpoints" / "last.pt")) and time.time() < deadline:
        time.sleep(0.05)  # (the step-0 checkpoint: training has begun)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Go on with: gankit tune --name s" in out
    run = next((tmp_path / "s").glob("*-trial000-*"))
    stopped_at = torch.load(run / "checkpoints" / "last.pt", weights_only=False)["step"]
    assert stopped_at < 400

    # the same command, in this process (the interrupted one above was a real process and signal)
    assert main(["tune", "--name", "s", "--out-dir", str(tmp_path)]) == 0, capsys.readouterr().err[-2000:]
    assert "resuming trial 0's run" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "s").glob("0*")) == [run.name]  # the same run, continued
    assert "resuming from last.pt at step" in (run / "log.txt").read_text()
    result = json.loads((tmp_path / "s" / "results.json").read_text())
    assert [(t["trial"], t["state"], t["steps"]) for t in result["trials"]] == [(1, "complete", 400)]


# ---- PostgreSQL -------------------------------------------------------------------------------
def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    return Path(shutil.which("pg_ctl")).parent if shutil.which("pg_ctl") else None


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A throw-away PostgreSQL server (Debian's binaries; run as the postgres user when the tests
    run as root, since the server refuses root). Yields its URL."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (make test-all installs Debian's postgresql)")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    # (pytest's tmp folders are private to their owner; the server's user needs its own)
    root = Path(tempfile.mkdtemp(prefix="gankit-pg-")) if as_user else tmp_path_factory.mktemp("pg")
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *cmd: subprocess.run([*as_user, *cmd], check=True, capture_output=True, text=True)  # noqa: E731
    run(str(bindir / "initdb"), "-D", str(data), "-U", "gankit", "--auth=trust")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-o",
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start")
    try:
        run(str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "gankit", "studies")
        yield f"postgresql://gankit@127.0.0.1:{port}/studies"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        if as_user:
            shutil.rmtree(root, ignore_errors=True)


@pytest.mark.e2e
@pytest.mark.slow  # (a server's start and two workers: ~30 s on a 2-core CPU; the journal-file test stays fast)
def test_a_study_in_postgresql_is_shared_by_workers_that_name_it(tmp_path, postgres):
    first = gankit("tune", "--name", "pg", "--out-dir", str(tmp_path / "machine-a"), *TINY, "--trials", "3",
                   "--storage", postgres)
    assert first.returncode == 0, first.stderr[-2000:]
    # a worker elsewhere (another folder) joins by name and URL alone, and finds the study complete
    second = gankit("tune", "--name", "pg", "--out-dir", str(tmp_path / "machine-b"), "--storage", postgres)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "this process ran 0 trial(s)" in second.stdout
    study = optuna.load_study(study_name="pg", storage=postgres)
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    assert study.user_attrs["settings"]["preset"] == "lab6-gan"
    assert not (tmp_path / "machine-a" / "pg" / "study.journal").exists()  # the database held it


# ---- a grid -----------------------------------------------------------------------------------
def test_a_grid_scores_every_cell_and_seed_and_skips_them_when_run_again(tmp_path, capsys):
    args = ["grid", "--presets", "lab6-gan", "lab04-mlp", "--seeds", "0", "1", "--steps", "20", "--n", "200",
            "--eval-n", "200", "--name", "cmp", "--out-dir", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "cmp"
    result = json.loads((folder / "results.json").read_text())
    assert [c["cell"] for c in result["cells"]] == ["lab6-gan", "lab04-mlp"]
    for cell in result["cells"]:
        fids = [r["fid_fmnist200"] for r in result["runs"] if r["cell"] == cell["cell"]]
        assert cell["fid_fmnist200"] == pytest.approx(sum(fids) / 2)
        assert cell["fid_fmnist200_std"] == pytest.approx(abs(fids[0] - fids[1]) / 2 ** 0.5)
    assert "±" in out and len(list(folder.glob("0*"))) == 4
    assert (folder / "comparison.png").exists() and (folder / "balance_vs_fid.png").exists()
    assert main(args) == 0
    assert capsys.readouterr().out.count("scored already") == 4
    assert main([*args[:-4], "--name", "cmp", "--out-dir", str(tmp_path), "--seeds", "0"]) == 2  # another grid
    assert main(["grid", "--presets", "lab6-gan", "--vary", "d_lr=1e-4:1e-3", "--out-dir", str(tmp_path)]) == 2
    assert main(["grid", "--presets", "faces64", "--out-dir", str(tmp_path), "--name", "f"]) == 2
    quality = [json.loads(x) for x in next(folder.glob("0*")).joinpath("quality.jsonl").read_text().splitlines()]
    assert quality[-1]["step"] == 20 and "fid_fmnist200" in quality[-1]  # the runs' own evaluations took --eval-n
    assert main([*args[:-6], "--eval-n", "100", "--name", "n", "--out-dir", str(tmp_path)]) == 2
    assert main(["report", str(folder)]) == 0
    assert "Grid cmp" in (folder / "report.html").read_text()


# ---- gankit train --config ---------------------------------------------------------------------
def test_train_config_file_errors_name_the_file(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    for text, message in (("[1", "not a JSON file"), ('{"config": {"modle": "x"}}', "unknown config field"),
                          ('{"config": {"g_lr": -1}}', "g_lr must be a positive number"), ("[]", "expected a JSON object")):
        bad.write_text(text)
        assert main(["train", "--config", str(bad), "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert str(bad) in err and message in err, err
    assert main(["train", "--config", str(tmp_path / "missing.json")]) == 2
    assert main(["train", "--config", str(bad), "--preset", "default"]) == 2


def test_train_config_takes_a_run_folders_config_and_flags_override_it(tmp_path, capsys):
    cfg = preset_config("lab6-wgan", g_lr=3e-5)
    cfg.save(tmp_path / "config.json", note="as a run folder writes it")
    assert main(["train", "--config", str(tmp_path / "config.json"), "--d-lr", "7e-5", "--dry-run"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {**cfg.to_dict(), "d_lr": 7e-5}


def test_the_terminal_shows_searched_values_that_round_to_one_in_full():
    from gankit.tuning.tune import show_params
    assert show_params({"ema": 0.9995, "g_lr": 0.0022134, "objective": "bce", "n_critic": 2}) == \
        "ema=0.9995 g_lr=0.00221 objective=bce n_critic=2"
