"""`gankit app`: the explorer's pictures (no web code), its input checks, and the page in a real
browser (Playwright driving Debian's Chromium): sliders, classes, saving z, a bad upload."""
import base64
import io
import re
import shutil
import time
import urllib.request

import numpy as np
import pytest
import torch

from gankit import latent as L
from gankit import sample as S
from gankit.cli import main
from gankit.config import preset_config
from gankit.errors import GankitError
from gankit.app.explorer import N_BASE, Explorer, mark, to_hwc
from gankit.training import train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_root):
    out = tmp_path_factory.mktemp("app-runs")
    common = dict(data_root=str(tiny_root), out_dir=str(out), batch_size=16, steps=12, log_every=4, eval_every=0)
    plain = train(preset_config("default", **common))
    cond = train(preset_config("cdcgan", **common))
    # The conditional run's explorers read a saved ranking instead of ranking on every start (RANK_N
    # vectors through G per class, the slowest part of these tests). The plain run's rank on start is tested.
    assert main(["explore", "rank", str(cond), "--n", "4", "--class", "0"]) == 0
    return plain, cond


def _sample(run, z_file, out, *extra):
    assert main(["sample", str(run), "--z", str(z_file), "--out", str(out), *extra]) == 0
    return np.load(out / "samples.npy")[0]  # (C, H, W) uint8


# ---- the explorer, without a browser -----------------------------------------------------------
def test_sliders_at_their_marks_give_the_seeds_exact_images(runs):
    e = Explorer(runs[0], sliders=4)
    dims, source = e.ranked_dims()
    assert len(dims) == 4 and "ranked on start" in source
    base = e.seed_vectors(3)
    marks = [mark(base[0][d]) for d in dims]
    v = e.views("EMA", base, 0, marks, None, dims[0], 1, 0.5)
    assert np.array_equal(v.base, to_hwc(S.generate(e.G["EMA"], torch.from_numpy(base))))  # the images `gankit sample RUN --seed 3` makes
    moved = e.views("EMA", base, 0, [3.0] + marks[1:], None, dims[0], 1, 0.5)
    assert not np.array_equal(moved.main, v.main)
    assert np.allclose(moved.z[0, dims[0]], 3.0) and np.array_equal(np.delete(moved.z[0], dims[0]),
                                                                     np.delete(base[0], dims[0]))
    assert all(np.allclose(z_row, 3.0) for z_row in e.edited(base, 0, [3.0] + marks[1:])[:, dims[0]])
    back = e.views("EMA", base, 0, marks, None, dims[0], 1, 0.5)
    assert np.array_equal(back.main, v.main) and np.array_equal(back.z, base[:1])
    # lab 4's sheet: 15 rows (-d, 0, +d for d = 2..10) of the 8 vectors, z[dims[0]] moved by d
    assert [label for label, _ in v.nudge] == [x for d in (2, 4, 6, 8, 10) for x in (f"-{d}", "0", f"+{d}")]
    assert all(tiles.shape == (8, 28, 28, 1) for _, tiles in v.nudge)
    z_up = torch.from_numpy(base.copy())
    z_up[:, dims[0]] += 10
    assert np.abs(v.nudge[-1][1].astype(int) - to_hwc(S.generate(e.G["EMA"], z_up))).max() <= 1
    assert v.strip.shape == (9, 28, 28, 1)  # slerp starts at the main z:
    assert np.abs(v.strip[0].astype(int) - v.main).max() <= 1  # (another batch: equal to a rounding step)


def test_direction_sliders_move_every_vector_along_a_sefa_direction(runs):
    e = Explorer(runs[0], sliders=2, directions=2)
    labels = [label for label, _ in e.slider_axes()]
    assert len(labels) == 4 and labels[2:] == ["SeFa direction 1", "SeFa direction 2"]
    base = e.seed_vectors(5)
    marks = e.marks(base, 0)
    still = e.views("EMA", base, 0, marks, None, 0, 1, 0.5, parts=("main",))
    assert np.array_equal(still.base, to_hwc(S.generate(e.G["EMA"], torch.from_numpy(base))))  # at the marks: the seed
    d = e.slider_axes()[2][1]
    z = e.edited(base, 0, marks[:2] + [2.5, marks[3]])
    assert torch.allclose(z @ d, torch.full((N_BASE,), 2.5), atol=1e-5)  # every vector's coordinate along it
    rest = lambda t: t - (t @ d)[:, None] * d
    assert torch.allclose(rest(z), rest(torch.from_numpy(base)), atol=1e-5)  # and nothing else moved
    moved = e.views("EMA", base, 0, marks[:2] + [2.5, marks[3]], None, 0, 1, 0.5, parts=("main",))
    assert not np.array_equal(moved.main, still.main)


def test_an_uploaded_picture_becomes_the_base_vector(runs, tmp_path):
    from PIL import Image
    e = Explorer(runs[0], sliders=2, directions=1)
    target = to_hwc(S.generate(e.G["EMA"], S.z_from_seed(11, 1, e.z_dim)))[0, :, :, 0]
    Image.fromarray(target).resize((56, 56)).save(tmp_path / "shirt.png")  # another size: converted
    z, note = e.invert_picture(tmp_path / "shirt.png")
    assert z.shape == (1, e.z_dim) and "inverted shirt.png" in note and "pixel MSE" in note
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(GankitError, match="notes.png: not an image"):
        e.invert_picture(tmp_path / "notes.png")


def test_saved_z_remakes_the_image_bit_for_bit(runs, tmp_path):
    for run, cls, extra in ((runs[0], None, []), (runs[1], 7, ["--class", "7"])):
        e = Explorer(run)
        dims, _ = e.ranked_dims()
        base = e.seed_vectors(11)
        v = e.views(e.weights[0], base, 2, [2.5] + [None] * (len(dims) - 1), cls, dims[1], 4, 0.3)
        np.save(tmp_path / "z.npy", v.z)
        made = _sample(run, tmp_path / "z.npy", tmp_path / f"s{cls}", *extra)
        assert np.array_equal(made.transpose(1, 2, 0), v.main)


def test_a_class_change_changes_the_image_and_every_class_is_shown(runs):
    e = Explorer(runs[1])
    assert len(e.class_names) == 10
    base = e.seed_vectors(0)
    a = e.views(e.weights[0], base, 0, [], 0, 0, 1, 0.5)
    b = e.views(e.weights[0], base, 0, [], 1, 0, 1, 0.5)
    assert not np.array_equal(a.main, b.main)
    assert a.classes is not None and np.array_equal(a.classes, b.classes)  # the same z in every class
    # A class-fixed view of G keeps G in eval mode (a new Module starts in training mode, and
    # gankit.latent used to put G back in it after a pass, so BatchNorm then used batch statistics).
    assert not L.ForClass(e.G[e.weights[0]], 3).training and not e.G[e.weights[0]].training


def test_a_saved_rank_gives_the_sliders(runs):
    run = runs[0]
    assert main(["explore", "rank", str(run), "--n", "4"]) == 0
    e = Explorer(run, sliders=5)
    dims, source = e.ranked_dims()
    record = sorted(run.glob("latent/rank-*/rank.json"))[-1]
    import json
    saved = [m["dim"] for m in json.loads(record.read_text())["measurements"]][:5]
    assert dims == saved and "gankit explore rank" in source and record.parent.name in source


@pytest.mark.parametrize("content, message", [
    (np.zeros((3, 7), np.float32), "shape (3, 7)"),
    (np.full(100, np.nan, np.float32), "non-finite"),
    (np.zeros((N_BASE + 1, 100), np.float32), "at most 8"),
    (np.zeros(300_000, np.float32), "too large"),
    (b"not an array", "cannot read latent vectors"),
])
def test_bad_uploads_are_refused_with_the_reason(runs, tmp_path, content, message):
    e = Explorer(runs[0])
    path = tmp_path / "bad.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(GankitError, match=re.escape(message)) as info:
        e.read_upload(path)
    assert "bad.npy" in str(info.value) and str(tmp_path) not in str(info.value)


def test_a_picture_over_the_pixel_limit_is_refused_unread(runs, tmp_path):
    from conftest import png_bomb
    with pytest.raises(GankitError, match=r"huge\.png: an image of 900,000,000 pixels, over the .*-pixel limit") as info:
        Explorer(runs[0]).invert_picture(png_bomb(tmp_path / "huge.png"))
    assert str(tmp_path) not in str(info.value)  # the page names the upload, not the server's folders


def test_the_explorer_resolves_the_default_device(runs):
    """`gankit app RUN` passes its --device default, auto, which must become a real device."""
    assert Explorer(runs[0], device="auto").device.type == "cpu"  # (the tests hide any GPU)


def test_the_app_serves_only_its_runs_and_the_cli_refuses_bad_input(runs, tmp_path, capsys):
    pytest.importorskip("gradio")
    from gankit.app import App
    app = App([str(runs[0]), str(runs[1])])
    with pytest.raises(GankitError, match="unknown run"):
        app.explorer(str(tmp_path))
    assert main(["app", str(tmp_path / "nothing")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["app", str(runs[0]), "--sliders", "0"]) == 2
    assert main(["app", str(runs[0]), "--port", "70000"]) == 2


def _pixels(url: str) -> np.ndarray:
    from PIL import Image
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_the_slider_fast_path_draws_what_gradio_draws_and_refuses_bad_requests(runs):
    pytest.importorskip("gradio")
    from gankit.app.web import App, add_hot_route
    app = App([str(runs[0]), str(runs[1])])
    label = list(app.explorers)[1]  # the conditional run: the class row comes too
    e = app.explorer(label)
    dims, _ = e.ranked_dims()
    base = e.seed_vectors(5)
    state = (label, e.weights[0], base, 1, 3, dims[2], 2, 0.25)
    moved = [None, -3.0] + [None] * (len(dims) - 2)
    page = app.render(("main", "nudge", "path"), *state, *moved)
    token = re.search(r'data-state="(\w+)"', page["main"]).group(1)
    assert all(f'data-state="{token}"' in page[k] for k in ("eight", "classes", "nudge", "strip", "at_t"))
    for part, ids in (("main", ("main", "eight", "classes")), ("nudge", ("nudge",)), ("path", ("strip", "at-t"))):
        fast = app.slide({"state": token, "part": part, "values": moved})["pictures"]
        assert sorted(fast) == sorted(ids)
        for i in ids:  # the same pixels as the Gradio update's pictures
            drawn = re.findall(r'src="(data:image/png;base64,[^"]+)"', page[i.replace("-", "_")])
            assert len(drawn) == len(fast[i]) and all(np.array_equal(_pixels(a), _pixels(b))
                                                      for a, b in zip(drawn, fast[i]))
    # the position slider: t from the request; a value past the limit is clamped to it (-40 -> -4)
    at_1 = app.slide({"state": token, "part": "path", "values": moved, "t": 1.0})["pictures"]["at-t"][0]
    strip = app.slide({"state": token, "part": "path", "values": moved})["pictures"]["strip"]
    assert np.array_equal(_pixels(at_1), _pixels(strip[-1]))
    far = app.slide({"state": token, "part": "main", "values": [None, -40.0]})["pictures"]["main"][0]
    edge = app.slide({"state": token, "part": "main", "values": [None, -4.0]})["pictures"]["main"][0]
    assert np.array_equal(_pixels(far), _pixels(edge))
    with pytest.raises(KeyError):
        app.slide({"state": "0" * 20, "part": "main", "values": []})
    for bad in ({"state": token, "part": "all", "values": []}, [], {"state": token, "part": "main", "values": "1"},
                {"state": token, "part": "main", "values": [float("nan")]},
                {"state": token, "part": "main", "values": [0.0] * (app.k + 1)},
                {"state": token, "part": "path", "values": [], "t": "x"}):
        with pytest.raises(GankitError):
            app.slide(bad)
    # over HTTP: JSON answers, the reason in a refusal, never a traceback
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    server = FastAPI()
    add_hot_route(server, app)
    client = TestClient(server)
    ok = client.post("/gankit/slide", json={"state": token, "part": "main", "values": moved})
    assert ok.status_code == 200 and len(ok.json()["pictures"]["eight"]) == N_BASE
    assert client.post("/gankit/slide", json={"state": "x", "part": "main", "values": []}).status_code == 404
    refused = client.post("/gankit/slide", content=b"{not json")
    assert refused.status_code == 400 and "error" in refused.json()
    assert client.post("/gankit/slide", content=b"[" + b"0," * 40000 + b"0]").status_code == 413


# ---- the page in a real browser ---------------------------------------------------------------
def _png(page, selector) -> np.ndarray:
    """The pixels of the image an element shows (its PNG data URL, decoded; not a screenshot)."""
    from PIL import Image
    src = page.locator(f"{selector} img").first.get_attribute("src")
    assert src.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))


def _wait_new(page, selector, old_src, timeout=30_000):
    page.wait_for_function(
        "([sel, old]) => { const i = document.querySelector(sel + ' img'); return i && i.src && i.src !== old; }",
        arg=[selector, old_src], timeout=timeout)


def _drawn(page) -> list[str]:
    """The draw counters (data-n) of the main image's and the strip's HTML: each Gradio redraw of a part
    gives it a new one."""
    return [page.locator(f"{sel} [data-n]").first.get_attribute("data-n") for sel in ("#main", "#strip")]


def _wait_drawn(page, drawn: list[str]) -> None:
    """Until Gradio has redrawn the main image and the strip since `drawn` (their _drawn counters)."""
    page.wait_for_function("(old) => { const n = ['#main', '#strip'].map(s => "
                           "document.querySelector(s + ' [data-n]')?.dataset.n); "
                           "return n.every((v, i) => v && v !== old[i]); }", arg=drawn, timeout=30_000)


def _src(page, selector):
    return page.locator(f"{selector} img").first.get_attribute("src")


def app_k(run) -> int:
    """Sliders on the page of this run alone: its dimensions, then its directions (the last ones)."""
    return Explorer(run).n_sliders


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test-e2e installs it)")
def test_the_explorer_in_a_real_browser(runs, tmp_path):
    pytest.importorskip("gradio")
    playwright = pytest.importorskip("playwright.sync_api")
    from gankit.app import launch
    demo, url = launch([str(runs[0]), str(runs[1])], port=None, block=False)
    errors, foreign = [], []
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None)
            page.goto(url)
            page.wait_for_selector("#main img", timeout=60_000)
            assert page.locator("#eight img").count() == N_BASE
            first = _png(page, "#main")

            # a slider moved changes the image; moved back to its mark, the image returns
            slider = page.locator("#slider0 input[type=range]")
            start = slider.input_value()
            old = {sel: _src(page, sel) for sel in ("#main", "#nudge", "#at-t")}
            slider.fill("3.5")
            for sel in old:  # lab 4's sheet and the slerp strip follow the slider too
                _wait_new(page, sel, old[sel])
            moved = _png(page, "#main")
            assert not np.array_equal(moved, first)
            old = _src(page, "#main")
            slider.fill(start)
            _wait_new(page, "#main", old)
            assert np.array_equal(_png(page, "#main"), first)
            # the position slider moves the image at t
            old = _src(page, "#at-t")
            page.locator("#t input[type=range]").fill("0.9")
            _wait_new(page, "#at-t", old)

            # save z and the image: `gankit sample --z` remakes the image bit for bit
            old = _src(page, "#main")  # read before the move: the new picture can arrive before a read after it
            slider.fill("-2.5")
            _wait_new(page, "#main", old)
            shown = _png(page, "#main")
            page.click("#save")
            for name in ("z.npy", "image.png"):
                link = page.locator(f"#saved tr:has(td[aria-label='{name}']) a")
                link.wait_for(timeout=30_000)
                with page.expect_download() as d:
                    link.click()
                d.value.save_as(tmp_path / name)
            from PIL import Image
            image = np.asarray(Image.open(tmp_path / "image.png"))
            made = _sample(runs[0], tmp_path / "z.npy", tmp_path / "remade")[0]
            assert np.array_equal(made, image)
            assert np.array_equal(image, shown)  # what the page showed
            assert "gankit sample" in page.locator("#saved-cmd").inner_text()

            # a bad upload shows its message and the app keeps serving
            bad = tmp_path / "bad.npy"
            np.save(bad, np.zeros((2, 5), np.float32))
            drawn = _drawn(page)
            page.set_input_files("#upload input[type=file]", str(bad))
            page.wait_for_function("() => document.querySelector('#status').innerText.includes('upload refused')",
                                   timeout=30_000)
            assert "shape (2, 5)" in page.locator("#status").inner_text()
            _wait_drawn(page, drawn)  # the redraw every upload is followed by (main image, sheet, strip)

            # a part that Gradio redraws with older slider values than the sliders show (a slider moved
            # while another control's redraw was on its way) is drawn again with the values shown
            weights = page.locator("#weights input[type=radio]")
            assert weights.count() >= 2  # (the EMA's weights and G's)

            def pick(i):  # another weights: Gradio redraws every part with the sliders' values it holds
                drawn = _drawn(page)
                weights.nth(i).check()
                _wait_drawn(page, drawn)
            pick(1)
            old = _src(page, "#main")
            slider.fill("1.5")
            _wait_new(page, "#main", old)
            wanted = _png(page, "#main")  # weights 1, slider 0 at 1.5
            pick(0)
            old = _src(page, "#main")
            slider.fill(start)
            _wait_new(page, "#main", old)
            # The slider shows 1.5 but no input event tells Gradio: its redraw uses `start`, as a redraw
            # under way when a slider moves uses the value before the move
            page.evaluate("() => { document.querySelector('#slider0 input[type=range]').value = '1.5'; }")
            pick(1)
            deadline = time.time() + 30
            while not np.array_equal(_png(page, "#main"), wanted) and time.time() < deadline:
                time.sleep(0.1)
            assert np.array_equal(_png(page, "#main"), wanted), "the redrawn main image kept the older slider value"

            # a picture: projected into z, shown with its figures, then edited along a SeFa direction
            from PIL import Image
            Image.fromarray(_png(page, "#main")).save(tmp_path / "picture.png")
            old = _src(page, "#main")
            page.set_input_files("#picture input[type=file]", str(tmp_path / "picture.png"))
            page.wait_for_function("() => document.querySelector('#status').innerText.includes('inverted picture.png')",
                                   timeout=60_000)
            assert "pixel MSE" in page.locator("#status").inner_text()
            _wait_new(page, "#main", old)
            direction = page.locator(f"#slider{app_k(runs[0]) - 1} input[type=range]")
            old = _src(page, "#main")
            direction.fill("3")
            _wait_new(page, "#main", old)

            # the conditional run: a class change changes the image
            page.locator("#run input").click()
            page.get_by_role("option", name=runs[1].name).click()
            page.wait_for_selector("#classes img", timeout=60_000)
            page.wait_for_function("() => document.querySelector('#info').innerText.includes('10 classes')")
            before = _png(page, "#main")
            old = _src(page, "#main")
            page.locator("#class input").click()
            page.get_by_role("option", name="Sneaker").click()
            _wait_new(page, "#main", old)
            assert not np.array_equal(_png(page, "#main"), before)

            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            browser.close()
        # the runs' own files are not served
        for f in ("generator.safetensors", "config.json"):
            try:
                status = urllib.request.urlopen(f"{url}gradio_api/file={runs[0].resolve() / f}").status
            except urllib.error.HTTPError as e:
                status = e.code
            assert status in (403, 404), (f, status)
    finally:
        demo.close()
    assert not errors, errors
    assert not foreign, foreign
