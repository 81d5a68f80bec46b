"""No traceback from the command line, whatever it is given: every subcommand driven by generated
argument lists (wrong types; negative, zero, huge and non-finite numbers; missing files; folders
where files belong; text, empty, truncated and random bytes in place of checkpoints, generators,
z files, images and configs). Each run must end with exit 0 or 2 and, when it refuses, say so in
at most 3 lines. The arguments are chosen so that no accepted command can start real work: train
always runs with --dry-run, tune and grid always get a budget that is not positive, and the app,
the evaluator's training and the resumes are only ever given broken inputs."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gankit.cli import main
from gankit.config import preset_config
from gankit.training import train

from conftest import png_bomb


@pytest.fixture(scope="module")
def files(tiny_root, tmp_path_factory) -> dict[str, str]:
    """A valid tiny run, and broken stand-ins for every kind of file gankit reads."""
    root = tmp_path_factory.mktemp("fuzz")
    run = train(preset_config("lab04-mlp", data_root=str(tiny_root), out_dir=str(root / "runs"), batch_size=16,
                              steps=2, log_every=1, eval_every=0, precision="fp32"), progress=False)
    weights = (run / "generator.safetensors").read_bytes()
    bad = {"text.pt": b"hello\n", "empty.safetensors": b"", "random.npy": os.urandom(300), "text.npy": b"abc",
           "truncated.safetensors": weights[: len(weights) // 2], "random.pt": os.urandom(500), "z.json": b"[1, 2",
           "nan.json": b"[NaN]", "config.json": b"{\"config\": {\"no_such_field\": 1}}", "image.png": os.urandom(64),
           "notes.txt": b"notes"}
    for name, data in bad.items():
        (root / name).write_bytes(data)
    (root / "folder").mkdir()
    (root / "folder" / "broken.png").write_bytes(b"\x89PNG\r\n")
    fake_run = root / "fakerun"
    (fake_run / "checkpoints").mkdir(parents=True)
    (fake_run / "config.json").write_text(json.dumps({"config": {"preset": "default"}}))
    (fake_run / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    digest = hashlib.sha256(b"not a checkpoint").hexdigest()  # a hash that matches: the content is what is wrong
    (fake_run / "checkpoints" / "last.pt.sha256").write_text(f"{digest}  last.pt\n")
    (fake_run / "generator.safetensors").write_bytes(weights[:100])
    (fake_run / "generator.json").write_text("{}")
    paths = {name: str(root / name) for name in bad}
    paths.update(run=str(run), folder=str(root / "folder"), fakerun=str(fake_run), missing=str(root / "missing"),
                 out=str(root / "out"))
    return paths


BROKEN = ["text.pt", "empty.safetensors", "random.npy", "text.npy", "truncated.safetensors", "random.pt", "z.json",
          "nan.json", "config.json", "image.png", "notes.txt", "folder", "fakerun", "missing"]
NUMBERS = st.sampled_from(["-1", "0", "1", "3", "-7", "10000000000", "1e30", "nan", "inf", "-inf", "abc", "", "2.5",
                           "1e-300"])


def command(draw, files, name_of):
    """One generated command line (a list of strings) for one subcommand."""
    some_file = st.sampled_from(BROKEN).map(name_of)
    source = st.one_of(some_file, st.just(files["run"]))
    which = draw(st.sampled_from(["train", "sample", "explore", "eval", "compare", "report", "app", "tune", "grid",
                                  "evaluator", "presets"]))
    if which == "train":
        argv = ["train", "--dry-run"]
        argv += draw(st.sampled_from([[], ["--resume", draw(some_file)], ["--config", draw(some_file)],
                                      ["--preset", draw(st.sampled_from(["default", "nope", "lab6-wgan"]))]]))
        for flag in draw(st.lists(st.sampled_from(["--steps", "--batch-size", "--g-lr", "--ema", "--minutes", "--z-dim",
                                                   "--eval-n", "--image-size", "--channels", "--clip", "--lr-end",
                                                   "--g-betas", "--data-root", "--precision", "--model"]),
                                  max_size=3)):
            argv += [flag, draw(some_file) if flag == "--data-root" else draw(NUMBERS)]
            if flag == "--g-betas":
                argv.append(draw(NUMBERS))
        return argv
    if which == "sample":
        return ["sample", draw(source), "--n", draw(NUMBERS), "--out", files["out"] + draw(st.sampled_from(["", "/x"]))] \
            + draw(st.sampled_from([[], ["--z", draw(some_file)], ["--seed", draw(NUMBERS)], ["--class", "7"]]))
    if which == "explore":
        study = draw(st.sampled_from(["nudge", "sweep", "interpolate", "arithmetic", "rank"]))
        argv = ["explore", study, draw(source), "--out", files["out"] + "-" + study]
        extra = {"nudge": ["--dims", draw(NUMBERS), "--deltas", draw(NUMBERS), "--n", draw(NUMBERS)],
                 "sweep": ["--dims", draw(NUMBERS), "--range", draw(NUMBERS), draw(NUMBERS), "--frames", draw(NUMBERS)],
                 "interpolate": ["--from", draw(st.one_of(NUMBERS, some_file)), "--to", draw(st.one_of(NUMBERS, some_file)),
                                 "--frames", draw(NUMBERS)],
                 "arithmetic": ["--a", draw(st.one_of(NUMBERS, some_file)), "--b", "1", "--c", draw(NUMBERS)],
                 "rank": ["--n", draw(st.sampled_from(["-1", "0", "nan", "abc", "10000000000"])), "--delta", draw(NUMBERS)]}
        return argv + extra[study]
    if which == "eval":
        return ["eval", draw(source), "--n", draw(st.sampled_from(["-1", "0", "2", "50", "abc", "10000000000", "20000"])),
                "--out", files["out"] + ".json"] + draw(st.sampled_from([[], ["--evaluator", draw(some_file)],
                                                                         ["--dataset", "folder"]]))
    if which == "compare":
        return ["compare", draw(some_file), "--n", draw(NUMBERS), "--out", files["out"] + "-cmp"]
    if which == "report":
        return ["report", draw(some_file), "--out", files["out"] + draw(st.sampled_from([".html", "/r.html"]))]
    if which == "app":
        return ["app", draw(some_file), "--port", draw(NUMBERS), "--sliders", draw(NUMBERS)]
    if which == "tune":
        return ["tune", "--name", "s", "--out-dir", files["out"] + "-tune", "--preset", "lab04-mlp", "--param",
                draw(st.sampled_from(["d_lr=log:1e-4:1e-3", "nope=1,2", "d_lr=abc", "=", "batch_size=int:0:-1"])),
                "--steps", draw(st.sampled_from(["0", "-1", "nan", "abc", "-inf"]))]
    if which == "grid":
        return ["grid", "--presets", draw(st.sampled_from(["lab04-mlp", "nope"])), "--out-dir", files["out"] + "-grid",
                "--vary", draw(st.sampled_from(["batch_size=abc", "d_lr=1e-4,2e-4", "x=1", "d_lr=log:1:2"])),
                "--steps", draw(st.sampled_from(["0", "-1", "nan", "abc"]))]
    if which == "evaluator":
        return ["evaluator", "train", "--data-root", draw(some_file), "--epochs", draw(NUMBERS), "--out",
                files["out"] + "-ev"]
    return ["presets"]


@settings(max_examples=int(os.environ.get("GANKIT_FUZZ_EXAMPLES", "120")), deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_traceback_for_any_input(files, data, capsys):
    argv = command(data.draw, files, lambda name: files[name])
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's refusals
        code = e.code
    out = capsys.readouterr()
    if os.environ.get("GANKIT_FUZZ_VERBOSE"):  # what was tried and how it ended, to see the test's reach
        with capsys.disabled():
            print(code, " ".join(argv)[:150], "|", out.err.strip()[:120])
    assert code in (0, 2), f"gankit {' '.join(argv)} -> exit {code}: {out.err[-600:]}"
    assert "Traceback" not in out.err, f"gankit {' '.join(argv)}:\n{out.err[-1500:]}"
    if code == 2:
        assert 1 <= len(out.err.strip().splitlines()) <= 3, f"gankit {' '.join(argv)}:\n{out.err}"


def test_the_cases_users_met_are_refused_in_one_line(files, tiny_root, tmp_path, capsys):
    bomb = png_bomb(tmp_path / "huge.png")
    (tmp_path / "bombs").mkdir()
    png_bomb(tmp_path / "bombs" / "a.png")
    for argv, says in (
        (["invert", files["run"], str(bomb)], "huge.png: an image of 900,000,000 pixels, over the 89,478,485-pixel limit"),
        (["eval", str(tmp_path / "bombs"), "--n", "200"], "a.png: an image of 900,000,000 pixels"),
        (["train", "--data-root", str(tiny_root), "--subset", "10000000", "--dry-run"],
         "--subset 10000000: the dataset has 256 images"),
        (["train", "--data-root", str(tiny_root), "--batch-size", "512", "--dry-run"], "fewer than one batch of 512"),
        (["train", "--resume", files["run"], "--batch-size", "8", "--dry-run"], "cannot resume with changed batch_size"),
        (["train", "--resume", files["run"], "--dry-run"], "already trained 2 steps"),
        (["report", str(Path(files["run"]) / "config.json")], "config.json: a file, not a run folder; did you mean"),
        (["sample", str(Path(files["run"]) / "config.json")], "not a generator"),
        (["eval", files["text.pt"]], "not a .pt file of images"),
        (["eval", files["run"], "--n", "1000000000"], "real reference images"),
        (["eval", files["run"], "--n", "20000"], "give --n 10000 or less"),
        (["train", "--resume", files["fakerun"]], "not a gankit checkpoint"),
        (["sample", files["notes.txt"]], "not a generator"),
        (["train", "--dataset", "folder", "--data-root", files["missing"], "--dry-run"], "no such folder"),
        (["grid", "--presets", "default", "--vary", "batch_size=abc"], "--vary batch_size=abc"),
    ):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, (argv, err)
        assert "weights_only" not in err and "{" not in capsys.readouterr().out


def test_nothing_saved_is_overwritten_by_a_refusal(files, capsys):
    run = Path(files["run"])
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for argv in (["sample", str(run), "--n", "-1"], ["eval", str(run), "--n", "5"], ["report", str(run), "--out",
                 str(run / "generator.safetensors"), "--md"], ["train", "--resume", str(run), "--steps", "1"]):
        try:
            main(argv)
        except SystemExit:
            pass
    after = {p: p.read_bytes() for p in before}
    assert after == before
