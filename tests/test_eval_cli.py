"""`gankit eval`, `gankit compare` and the shipped evaluator, on short real Fashion-MNIST runs."""
import json

import pytest

from gankit.cli import main
from gankit.config import preset_config
from gankit.data import load_split
from gankit.metrics.evaluator import accuracy, load_evaluator
from gankit.training import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short runs on 2,000 of the training images: memorisation compares their samples with those
    images alone (the full training split's 60,000, which the tour's `gankit eval` embeds, takes ~50 s)."""
    out = tmp_path_factory.mktemp("eval-runs")
    a = train(preset_config("lab04-mlp", out_dir=str(out), steps=60, log_every=20, eval_n=500, eval_every=30,
                            subset=2000))
    b = train(preset_config("lab6-gan", out_dir=str(out), steps=60, log_every=20, eval_every=0, subset=2000))
    return a, b


def test_eval_prints_the_table_with_the_floor_and_writes_metrics_json(runs, capsys):
    run = runs[0]
    assert main(["eval", str(run), "--n", "500"]) == 0
    out = capsys.readouterr().out
    assert "metric (fmnist500)" in out and "real data (train vs test)" in out and "FID" in out
    data = json.loads((run / "metrics.json").read_text())["fmnist500"]
    assert data["fid_fmnist500"] > data["real_floor"]["fid_fmnist500"] > 0
    for key in ("kid_fmnist500", "is_fmnist500", "precision_fmnist500", "recall_fmnist500", "coverage_fmnist500",
                "class_entropy_fmnist500", "rarest_class_share_fmnist500"):
        assert key in data
    # a second protocol is added beside the first, not over it
    assert main(["eval", str(run), "--n", "300", "--metrics", "fid", "is"]) == 0
    assert set(json.loads((run / "metrics.json").read_text())) == {"fmnist500", "fmnist300"}


def test_quality_was_tracked_during_training(runs):
    run = runs[0]
    rows = [json.loads(x) for x in (run / "quality.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [30, 60]
    assert (run / "best.safetensors").exists() and (run / "fid_curve.png").exists()
    best = json.loads((run / "best.json").read_text())
    assert best["fid_fmnist500"] == min(r["fid_fmnist500"] for r in rows)


def test_compare_writes_table_and_figure(runs, tmp_path, capsys):
    assert main(["compare", str(runs[0]), str(runs[1]), "--n", "300", "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "comparison.png").exists()
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(data) == {runs[0].name, runs[1].name, "real_floor"}
    assert data[runs[0].name]["_info"]["model"] == "mlp"
    assert "real data" in capsys.readouterr().out
    assert main(["compare", str(runs[0]), "--n", "300", "--out", str(tmp_path / "cmp")]) == 2  # never overwrites


def test_eval_errors(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing")]) == 2
    assert "no such run" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", str(tmp_path / "empty"), "--n", "10"]) == 2
    assert "no images" in capsys.readouterr().err


@pytest.mark.slow
def test_shipped_evaluator_accuracy_matches_its_card():
    model, card = load_evaluator("fashion-mnist")
    x, y = load_split("fashion-mnist", "test")
    acc = accuracy(model, x, y)
    assert acc == pytest.approx(card["test_accuracy"], abs=1e-4)
    assert acc >= 0.93


def test_evaluator_training_stays_out_of_the_package_and_is_named_apart(runs, tiny_root, tmp_path, capsys):
    from gankit.metrics import evaluator as E
    shipped = {p.name: p.read_bytes() for p in E.WEIGHTS_DIR.iterdir()}
    # By default into the user's cache (the tests' own), never into the package.
    card = E.train_evaluator("fashion-mnist", epochs=1, data_root=str(tiny_root), log=lambda m: None)
    assert (E.user_dir() / "fashion-mnist.safetensors").is_file() and card["test_accuracy"] >= 0
    assert {p.name: p.read_bytes() for p in E.WEIGHTS_DIR.iterdir()} == shipped
    # An evaluator already there is kept: a second training is refused before any work.
    assert main(["evaluator", "train", "--data-root", str(tiny_root), "--epochs", "1"]) == 2
    assert "exists" in capsys.readouterr().err
    # The shipped one still judges by default; another one is used when named, under its own metric names.
    assert load_evaluator("fashion-mnist")[1]["shipped"]
    mine = E.user_dir() / "fashion-mnist.safetensors"
    assert main(["eval", str(runs[0]), "--n", "300", "--metrics", "fid", "--evaluator", str(mine),
                 "--out", str(tmp_path / "m.json")]) == 0
    key = next(iter(json.loads((tmp_path / "m.json").read_text())))
    assert key.startswith("fmnist-") and key.endswith("300") and key != "fmnist300"
    mine.unlink()
    mine.with_suffix(".json").unlink()
