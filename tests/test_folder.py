"""Image folders: decoding once into a cache, bad files, geometry, and training at 64 and 128."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.data import folder
from gankit.cli import main
from gankit.config import preset_config
from gankit.data import resize_uint8, training_images
from gankit.errors import ConfigError, DataError
from gankit.data.folder import decode, load_folder
from gankit.nets import MODELS, build_models

BAD = ["sub/truncated.jpg", "noise.png", "empty.jpg"]


def make_folder(root: Path, n: int = 120, seed: int = 0) -> Path:
    """n coloured shapes on coloured backgrounds in varied sizes, modes and formats, in nested
    folders, plus three corrupt image files and a text file."""
    rng = np.random.default_rng(seed)
    (root / "sub" / "deeper").mkdir(parents=True, exist_ok=True)
    formats = [("png", "RGB"), ("jpg", "RGB"), ("webp", "RGB"), ("bmp", "RGB"), ("png", "RGBA"),
               ("png", "P"), ("png", "L"), ("jpg", "L")]
    for i in range(n):
        w, h = int(rng.integers(40, 160)), int(rng.integers(40, 160))
        a = np.empty((h, w, 3), np.uint8)
        a[:] = rng.integers(0, 256, 3)
        r = int(rng.integers(5, min(w, h) // 2))
        cy, cx = h // 2, w // 2
        a[cy - r:cy + r, cx - r:cx + r] = rng.integers(0, 256, 3)
        ext, mode = formats[i % len(formats)]
        im = Image.fromarray(a)
        if mode == "RGBA":
            im = im.convert("RGBA")
            im.putalpha(200)
        elif mode in ("P", "L"):
            im = im.convert(mode)
        sub = ["", "sub", "sub/deeper"][i % 3]
        im.save(root / sub / f"img{i:04d}.{ext}")
    good = root / "img0009.jpg"
    (root / "sub" / "truncated.jpg").write_bytes(good.read_bytes()[: len(good.read_bytes()) // 3])
    (root / "noise.png").write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
    (root / "empty.jpg").write_bytes(b"")
    (root / "readme.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("faces"))


def test_cache_is_built_once_and_reused(faces, tmp_path, monkeypatch):
    said = []
    x = load_folder(faces, 64, 3, cache_dir=tmp_path, progress=False, say=said.append, workers=2)
    assert x.shape == (120, 3, 64, 64) and x.dtype == np.uint8
    assert "decoded 120 images" in said[-1] and all(b in said[-1] for b in BAD)  # bad files named
    assert "smaller than 64x64" in said[0]  # (33 of them: upscaled, said once)
    cache = list(tmp_path.glob("folder-*.npy"))
    assert len(cache) == 1
    assert not list(faces.rglob("*.npy")) and not list(faces.rglob("*.json"))  # the folder is only read
    record = json.loads(cache[0].with_suffix(".json").read_text())
    assert sorted(b["file"] for b in record["bad"]) == sorted(BAD)

    def no_decoding(*a, **k):
        raise AssertionError("decoded again")
    monkeypatch.setattr(folder, "_decode_chunk", no_decoding)
    y = load_folder(faces, 64, 3, cache_dir=tmp_path, progress=False, say=said.append)
    assert "from the cache" in said[-1] and np.array_equal(x, y)
    # another size or channel count is another cache entry
    monkeypatch.undo()
    g = load_folder(faces, 32, 1, cache_dir=tmp_path, progress=False, say=said.append, workers=1)
    assert g.shape == (120, 1, 32, 32) and len(list(tmp_path.glob("folder-*.npy"))) == 2


def test_bad_files_fail_names_them(faces, tmp_path):
    with pytest.raises(DataError, match=r"3 unreadable image file\(s\) and --bad-files fail:.*(truncated|noise|empty)"):
        load_folder(faces, 32, 3, bad_files="fail", cache_dir=tmp_path, progress=False, say=lambda m: None)


def test_empty_missing_and_imageless_folders_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("x")
    with pytest.raises(DataError, match="no images found.*0 other file"):
        load_folder(tmp_path / "empty", 64, 3, progress=False)
    with pytest.raises(DataError, match="no images found.*1 other file"):
        load_folder(tmp_path / "text", 64, 3, progress=False)
    with pytest.raises(DataError, match="no such folder"):
        load_folder(tmp_path / "missing", 64, 3, progress=False)
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="none of the 1 image files could be read"):
        load_folder(tmp_path / "allbad", 64, 3, cache_dir=tmp_path, progress=False, say=lambda m: None)


def test_a_folder_too_large_for_memory_is_refused_with_its_size(faces, monkeypatch):
    monkeypatch.setattr(folder, "available_memory", lambda: 10 * 2**20)
    with pytest.raises(DataError, match=r"123 image files at 3x128x128 need 5\.8 MiB in memory, more than half of the 10\.0 MiB free.*streaming loader is not built yet"):
        load_folder(faces, 128, 3, progress=False)


def test_resize_and_centre_crop_geometry(tmp_path):
    # 300x100: left third red, middle green, right blue. The centre crop keeps the green middle.
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, :100, 0] = 255
    a[:, 100:200, 1] = 255
    a[:, 200:, 2] = 255
    Image.fromarray(a).save(tmp_path / "wide.png")
    x = decode(tmp_path / "wide.png", 32, 3)
    assert x.shape == (3, 32, 32)
    assert x[1, :, 2:-2].min() > 200 and x[0, :, 2:-2].max() < 50 and x[2, :, 2:-2].max() < 50
    # RGBA: a fully transparent image becomes black; grayscale of an RGB image has one channel
    Image.new("RGBA", (50, 70), (255, 255, 255, 0)).save(tmp_path / "clear.png")
    assert decode(tmp_path / "clear.png", 32, 3).max() == 0
    assert decode(tmp_path / "wide.png", 32, 1).shape == (1, 32, 32)


def test_fashion_mnist_resized_to_32_and_64(tiny_root):
    cfg = preset_config("default", model="dcgan32", data_root=str(tiny_root)).validate()
    assert cfg.image_size == 32
    x = training_images(cfg, progress=False)
    assert x.shape == (256, 1, 32, 32) and x.dtype == torch.uint8
    assert resize_uint8(x[:2], 64).shape == (2, 1, 64, 64)


def test_model_size_and_config_checks(tmp_path):
    with pytest.raises(ConfigError, match="model dcgan makes 28x28 images, not 64x64; models at 64: dcgan64, dcgan64-paper"):
        preset_config("default", image_size=64).validate()
    with pytest.raises(ConfigError, match="dataset folder needs --data-root"):
        preset_config("faces64").validate()
    with pytest.raises(ConfigError, match="--eval-every 100: gankit's evaluators judge 28x28"):
        preset_config("default", model="dcgan64", eval_every=100).validate()
    with pytest.raises(ConfigError, match="channels must be 1 .* or 3"):
        preset_config("faces64", data_root=str(tmp_path), channels=4).validate()


@pytest.mark.parametrize("model", ["dcgan32", "dcgan64", "dcgan128", "dcgan64-paper"])
@pytest.mark.parametrize("channels", [1, 3])
def test_output_shapes_per_model(model, channels, tmp_path):
    size = MODELS[model].size
    cfg = preset_config("faces64", model=model, image_size=size, channels=channels, data_root=str(tmp_path),
                        g_width=16, d_width=16).validate()
    G, D = build_models(cfg)
    x = G(torch.randn(3, cfg.z_dim))
    assert x.shape == (3, channels, size, size) and x.abs().max() <= 1
    assert D(x).shape == (3,)


@pytest.mark.parametrize("preset, size", [("faces64", 64), ("faces128", 128)])
def test_short_face_training_writes_every_artifact_and_tools_work(faces, tmp_path, preset, size, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--preset", preset, "--data-root", str(faces), "--out-dir", str(out), "--steps", "4",
                 "--batch-size", "8", "--g-width", "8", "--d-width", "8", "--log-every", "2"]) == 0
    run = next(p for p in out.iterdir() if not p.name.startswith("."))
    for name in ["config.json", "models.txt", "stats.jsonl", "loss_curve.png", "d_outputs.png", "milestones.png",
                 "generator.safetensors", "checkpoints/last.pt", "images/step_00000004.png"]:
        assert (run / name).is_file(), name
    with Image.open(run / "images" / "step_00000004.png") as im:
        assert im.mode == "RGB" and im.size == (8 * (size + 2) + 2, 8 * (size + 2) + 2)
    log = (run / "log.txt").read_text()
    assert f"120 images, 3x{size}x{size}" in log and "quality is not tracked" in log
    assert "skipped 3 unreadable file(s)" in log or "3 unreadable file(s) skipped" in log
    assert len(list((out / ".cache").glob("folder-*.npy"))) == 1
    # the latent tools and the report take RGB runs; the Fashion-MNIST evaluator refuses them clearly
    assert main(["sample", str(run), "--n", "8", "--out", str(tmp_path / "s")]) == 0
    assert main(["explore", "sweep", str(run), "--dims", "0", "1", "--out", str(tmp_path / "w")]) == 0
    assert main(["report", str(run)]) == 0 and (run / "report.html").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "200"]) == 2
    assert "3-channel images; this evaluator takes grayscale only" in capsys.readouterr().err
    assert main(["eval", str(run), "--n", "20", "--dataset", "folder", "--data-root", str(faces)]) == 2
    assert "no evaluator of its own" in capsys.readouterr().err


@pytest.mark.slow
def test_inception_metrics_of_a_face_run_against_its_folder(faces, tmp_path, stand_in_inception, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--preset", "faces64", "--data-root", str(faces), "--out-dir", str(out), "--steps", "2",
                 "--batch-size", "8", "--g-width", "8", "--d-width", "8"]) == 0
    run = next(p for p in out.iterdir() if not p.name.startswith("."))
    assert main(["eval", str(run), "--n", "40", "--metrics", "kid", "is", "precision", "--dataset", "folder",
                 "--data-root", str(faces), "--inception-weights", str(stand_in_inception)]) == 0
    saved = json.loads((run / "metrics.json").read_text())["inception40"]
    assert {"kid_inception40", "is_inception40", "precision_inception40"} <= set(saved)
    assert "kid_inception40" in saved["real_floor"]  # two disjoint halves of the folder


def class_folder(root: Path, per_class: int = 48) -> Path:
    """Two classes of 40x40 RGB pictures, root/blue and root/red: a noisy square of the class's
    colour, at a random place, on white."""
    rng = np.random.default_rng(0)
    for name, colour in (("blue", (40, 60, 200)), ("red", (200, 50, 40))):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = np.full((40, 40, 3), 255, np.int64)
            y, x = rng.integers(0, 20, 2)
            a[y:y + 20, x:x + 20] = np.array(colour) + rng.integers(-30, 30, (20, 20, 3))
            Image.fromarray(a.clip(0, 255).astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def test_a_folder_evaluator_scores_runs_on_its_folder_and_catches_copies(tmp_path, capsys):
    from gankit.data import to_float
    from gankit.metrics import compute_metrics, training_set
    from gankit.metrics.evaluator import available, user_dir
    root = class_folder(tmp_path / "shapes")
    assert main(["evaluator", "train", "--dataset", "folder", "--data-root", str(root), "--epochs", "2"]) == 0
    card = json.loads((user_dir() / "shapes.json").read_text())  # named after the folder
    assert card["classes"] == ["blue", "red"] and card["source"] == "folder" and card["num_classes"] == 2
    assert card["input"] == "(N, 3, 64, 64) float in [-1, 1]" and card["test_images"] == 14  # 15 % of each class
    assert "shapes" in available(folders=True) and "shapes" not in available()  # not an IDX --dataset
    out = tmp_path / "runs"
    assert main(["train", "--preset", "faces64", "--data-root", str(root), "--subset", "60", "--out-dir", str(out),
                 "--steps", "2", "--batch-size", "8", "--g-width", "8", "--d-width", "8"]) == 0
    run = next(p for p in out.iterdir() if not p.name.startswith("."))
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "30", "--dataset", "folder", "--data-root", str(root), "--evaluator",
                 "shapes"]) == 0  # every metric but FID, which 30 samples of 128 features leave undefined
    assert "--n 30: no FID" in capsys.readouterr().out
    key, saved = next(iter(json.loads((run / "metrics.json").read_text()).items()))
    assert key == f"shapes-{card['sha256'][:6]}-30"  # an evaluator gankit does not ship is named apart
    assert 0 <= saved[f"memorised_{key}"] <= 1 and f"kid_{key}" in saved["real_floor"] and f"fid_{key}" not in saved
    assert main(["eval", str(run), "--n", "30", "--metrics", "fid", "--dataset", "folder", "--data-root", str(root),
                 "--evaluator", "shapes"]) == 2  # asked for by name: refused, with the way out
    assert "or leave fid out of --metrics" in capsys.readouterr().err
    # Against the 36 images the subset left out: copies of the run's training images are caught,
    # the images it never saw are not.
    trained = training_set(run)
    x = to_float(torch.from_numpy(load_folder(root, 64, 3, progress=False, say=lambda m: None)))
    held = torch.ones(len(x), dtype=torch.bool)
    held[trained.indices] = False
    score = lambda images: compute_metrics(images, "folder", ["memorisation"], len(images), data_root=str(root),
                                           evaluator="shapes", trained_on=trained)[f"memorised_{key}"]
    assert score(x[trained.indices[:30]]) == 1.0 and score(x[held][:30]) <= 0.2
    # Bad input: no folder, loose images instead of class folders, a name that exists, an unknown evaluator.
    assert main(["evaluator", "train", "--dataset", "folder"]) == 2
    assert "needs --data-root" in capsys.readouterr().err
    assert main(["evaluator", "train", "--dataset", "folder", "--data-root", str(root / "red")]) == 2
    assert "lie directly in it" in capsys.readouterr().err
    assert main(["evaluator", "train", "--dataset", "folder", "--data-root", str(root), "--epochs", "1"]) == 2
    assert "shapes.safetensors exists" in capsys.readouterr().err
    assert main(["eval", str(run), "--n", "30", "--metrics", "kid", "--dataset", "folder", "--data-root", str(root),
                 "--evaluator", "nosuch"]) == 2
    assert "no evaluator named 'nosuch'" in capsys.readouterr().err
    # An evaluator whose units all died (here: every weight zero) gives the same features for every
    # image: refused, not a KID or FID of 0.
    from safetensors.torch import load_file, save_file
    from gankit.files import sha256_file
    dead = tmp_path / "dead.safetensors"
    save_file({k: torch.zeros_like(v) for k, v in load_file(str(user_dir() / "shapes.safetensors")).items()}, str(dead))
    dead.with_suffix(".json").write_text(json.dumps({**card, "sha256": sha256_file(dead)}))
    assert main(["eval", str(run), "--n", "30", "--metrics", "kid", "--dataset", "folder", "--data-root", str(root),
                 "--evaluator", str(dead)]) == 2
    assert f"{dead}: its features are the same for every image of {root}" in capsys.readouterr().err
    # The folder changed under the run (one of its training images edited): memorisation refuses to
    # compare with other images than the ones it trained on, and the saved metrics stay as they were.
    from gankit.data.folder import find_images
    before = (run / "metrics.json").read_text()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(find_images(root)[int(trained.indices[0])])
    capsys.readouterr()
    assert main(["eval", str(run), "--n", "30", "--metrics", "memorisation", "--dataset", "folder",
                 "--data-root", str(root), "--evaluator", "shapes"]) == 2
    assert "the folder changed since the run trained on it" in capsys.readouterr().err
    assert (run / "metrics.json").read_text() == before

# ---- the preset a folder gets, and what its images need -------------------------------------------
def plain_folder(root: Path, n: int, side: int, mode: str = "RGB") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).convert(mode).save(root / f"{i}.png")
    return root


@pytest.mark.parametrize("side, mode, preset, channels", [(64, "RGB", "folder64", 3), (30, "L", "folder32", 1),
                                                          (200, "RGB", "fastgan128", 3), (48, "RGB", "folder64", 3)])
def test_a_folder_without_a_preset_gets_the_folder_preset_of_its_size(tmp_path, capsys, side, mode, preset, channels):
    root = plain_folder(tmp_path / "imgs", 12, side, mode)
    assert main(["train", "--data-root", str(root), "--batch-size", "4", "--dry-run"]) == 0
    out = capsys.readouterr()
    cfg = json.loads(out.out)
    assert (cfg["preset"], cfg["channels"], cfg["dataset"], cfg["augment"]) == (preset, channels, "folder", "diffaug")
    assert cfg["minutes"] == 30 and cfg["epochs"] == 0  # a time budget, not epochs
    line = [x for x in out.err.splitlines() if "a folder of images" in x]
    assert len(line) == 1 and f"preset {preset}" in line[0] and ("grayscale" in line[0]) == (mode == "L")
    # what the user names wins: a preset, a dataset, a channel count
    assert main(["train", "--data-root", str(root), "--preset", "faces64", "--batch-size", "4", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["preset"] == "faces64"
    assert main(["train", "--data-root", str(root), "--channels", "3", "--batch-size", "4", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["channels"] == 3


def test_an_idx_folder_keeps_the_default_preset_and_the_api_picks_as_the_cli(tiny_root, tmp_path, capsys):
    assert main(["train", "--data-root", str(tiny_root), "--dry-run"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["preset"] == "default" and "a folder of images" not in out.err
    import gankit
    root = plain_folder(tmp_path / "imgs", 8, 32)
    run = gankit.train(data_root=str(root), out_dir=str(tmp_path / "runs"), steps=2, batch_size=4, progress=False)
    assert run.config.preset == "folder32" and run.config.image_size == 32


def test_smaller_and_grayscale_images_are_said_once_when_decoded(tmp_path):
    root = plain_folder(tmp_path / "small", 6, 20, "L")
    said = []
    load_folder(root, 32, 3, cache_dir=tmp_path / "cache", progress=False, say=said.append)
    notes = " ".join(said)
    assert "all images are smaller than 32x32 (the smallest 20 px): upscaled" in notes
    assert "grayscale: converted to 3 equal channels" in notes
    said.clear()
    load_folder(root, 32, 3, cache_dir=tmp_path / "cache", progress=False, say=said.append)  # from the cache
    assert len(said) == 1 and "from the cache" in said[0]
    assert folder.survey(root).notes(16, 1) == []  # larger and grayscale: nothing to say


def test_the_closing_line_names_the_bound_that_ended_the_run(tmp_path):
    from gankit.training.output import record_budget
    (tmp_path / "config.json").write_text("{}")
    assert record_budget(tmp_path, 20, 375, 15, 510.0, 375, 0).startswith(
        "the 25 epochs ended the run before the 20-minute budget: 375 steps (25.00 epochs)")
    assert json.loads((tmp_path / "config.json").read_text())["budget"]["ended_by"] == "steps"
    assert "--steps 100 ended the run" in record_budget(tmp_path, 20, 100, 15, 30.0, 100, 100)
    assert record_budget(tmp_path, 20, 1094, 15, 1200.4, 10**15, 0).startswith("the 20-minute budget bought 1094 steps")


def test_epochs_zero_needs_a_time_budget(tmp_path):
    with pytest.raises(ConfigError, match="epochs 0"):
        preset_config("folder64", data_root=str(tmp_path), minutes=None).validate()
    assert preset_config("folder64", data_root=str(tmp_path)).validate().epochs == 0
