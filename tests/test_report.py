"""The report: self-contained, renders in a real browser, leaves out what a run lacks."""
import re
import shutil
from pathlib import Path

import pytest

from gankit.cli import main
from gankit.config import preset_config
from gankit.training import train

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_root):
    out = tmp_path_factory.mktemp("report-runs")
    a = train(preset_config("dcgan-report", data_root=str(tiny_root), out_dir=str(out), batch_size=16, steps=20,
                            log_every=4, eval_every=0))
    b = train(preset_config("lab6-wgan", data_root=str(tiny_root), out_dir=str(out), batch_size=16, steps=20,
                            log_every=4, eval_every=0))
    assert main(["explore", "nudge", str(a), "--dims", "1", "2", "--deltas", "3", "--n", "4"]) == 0
    assert main(["explore", "rank", str(a), "--n", "8"]) == 0
    return a, b


def test_report_of_one_run_has_every_section(runs):
    run = runs[0]
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    for heading in ("What was trained", "The networks", "Losses", "D(x) and D(G(z))", "Samples through training",
                    "Generated and real images", "Latent-space studies", "nudge:", "rank:", "In short:"):
        assert heading in text, heading
    # Captions say what they show: the milestones' actual steps, the grid's step, epochs to two decimals.
    assert "step 0 (0 %), step 5 (25 %)" in text and "step 20 (100 %) of the 20 steps" in text
    assert "at step 20 (epoch 1.25): the end of training" in text and "1.25 epochs, 20 steps" in text
    assert re.search(r"for comparison: the first \d+ images of fashion-mnist&#x27;s test split", text)
    # study pictures say what they show, not their file names
    assert "Every axis moved by -3, 0 and +3" in text and "Mean pixel change per dimension" in text
    assert not re.search(r"<figcaption>(nudge|rank): ", text)
    assert "ConvTranspose2d(100, 512" in text  # print(G)
    assert text.count(run.name + "<") == 2  # one title (<title> and <h1>), no second heading naming the run
    assert "<h2>What was trained</h2>" in text
    summary = re.search(r"In short:.*?</p>", text, re.S).group(0)  # when, on what, which version, which weights
    assert re.search(r"Trained \d{4}-\d\d-\d\d on .+ in (fp32|bf16), gankit \d", summary)
    assert "come from G itself (no EMA)" in summary
    assert "http://" not in text and "https://" not in text  # nothing to fetch


def test_report_leaves_out_what_a_run_lacks(runs):
    run = runs[1]  # no latent study, no metrics, no quality tracking
    assert main(["report", str(run)]) == 0
    text = (run / "report.html").read_text()
    assert "What was trained" in text and "Losses" in text
    for absent in ("Latent-space studies", "Sample quality"):
        assert absent not in text


def test_a_second_report_is_written_beside_the_first(runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    out.write_text("mine")
    assert main(["report", str(runs[1]), "--out", str(out), "--md"]) == 0
    assert main(["report", str(runs[1]), "--out", str(out), "--md"]) == 0
    assert main(["report", str(runs[1]), "--out", str(out)]) == 0
    assert out.read_text() == "mine"  # nothing replaced
    assert (tmp_path / "r.md").exists() and (tmp_path / "r_files").is_dir()
    assert (tmp_path / "r-2.md").exists() and (tmp_path / "r-2_files").is_dir()
    assert "report: " + str(tmp_path / "r-2.html") in capsys.readouterr().out


def test_markdown_with_images_beside(runs, tmp_path):
    assert main(["report", str(runs[0]), "--md", "--out", str(tmp_path / "lab.md")]) == 0
    text = (tmp_path / "lab.md").read_text()
    images = re.findall(r"^!\[.*\]\(([^()]+)\)$", text, flags=re.M)
    assert len(images) >= 5 and all((tmp_path / name).exists() for name in images)


@pytest.mark.e2e
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test-e2e installs it)")
def test_report_renders_in_a_real_browser(runs, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    out = tmp_path / "compare.html"
    assert main(["report", str(runs[0]), str(runs[1]), "-o", str(out)]) == 0
    errors, requests = [], []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(out.as_uri())
        page.wait_for_load_state("load")
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        phone = browser.new_page(viewport={"width": 390, "height": 844})
        phone.goto(out.as_uri())
        overflow = phone.evaluate("document.documentElement.scrollWidth > window.innerWidth + 1")
        browser.close()
    assert widths and all(w > 0 for w in widths), widths
    assert not errors, errors
    assert all(u.startswith(("file:", "data:")) for u in requests), [u for u in requests if not u.startswith(("file:", "data:"))]
    assert not overflow, "the page scrolls sideways on a phone"
    assert (tmp_path / "report.png").stat().st_size > 10_000
    # Keep the screenshot where a person can look at it after the test run.
    keep = Path(__file__).resolve().parents[1] / "runs" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copy(tmp_path / "report.png", keep)


def test_the_headline_is_the_evaluation_with_the_most_samples(runs, tmp_path):
    """A smaller `gankit eval` after training is never presented as "final" over the larger in-training one."""
    import json
    run = Path(shutil.copytree(runs[1], tmp_path / runs[1].name))
    for old in run.glob("report*.html"):  # (the other tests' reports of the same run)
        old.unlink()
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["eval_n"] = 5000
    (run / "config.json").write_text(json.dumps(meta))
    (run / "quality.jsonl").write_text(json.dumps({"step": 20, "epoch": 1.25, "fid_fmnist5k": 15.72}) + "\n")
    (run / "metrics.json").write_text(json.dumps({"fmnist1k": {"fid_fmnist1k": 16.89, "n": 1000,
                                                               "created": "2026-12-05T10:00:00+0000"}}))
    assert main(["report", str(run)]) == 0
    summary = re.search(r"In short:.*?</p>", (run / "report.html").read_text(), re.S).group(0)
    assert "fid_fmnist5k 15.72" in summary and "fid_fmnist1k" not in summary and "Final" not in summary
    # every evaluation in the table beside it, the headline marked; sentences only for the columns shown
    html = (run / "report.html").read_text()
    table = re.search(r"<h2>Sample quality</h2>.*?</table>", html, re.S).group(0)
    assert re.search(r"<td>training, step 20 \(the headline\)</td><td>fmnist5k</td><td>5,000</td><td>15.720</td>", table)
    assert re.search(r"<td>gankit eval</td><td>fmnist1k</td><td>1,000</td><td>16.890</td>", table)
    assert "Memorised" not in table and "KID" not in table
    assert "memorised" not in html.lower()
    (run / "metrics.json").write_text(json.dumps({"fmnist1k": {"fid_fmnist1k": 16.89, "memorised_fmnist1k": 0.04,
                                                               "n": 1000, "created": "2026-12-05T10:00:00+0000"}}))
    assert main(["report", str(run), "--out", str(tmp_path / "memo.html")]) == 0
    memo = (tmp_path / "memo.html").read_text()
    assert "Memorised is the share" in memo and "<td>0.040</td>" in memo
    # a larger `gankit eval` takes the headline
    (run / "metrics.json").write_text(json.dumps({"fmnist10k": {"fid_fmnist10k": 14.1, "n": 10000, "created": "x"}}))
    assert main(["report", str(run), "--out", str(tmp_path / "again.html")]) == 0
    assert "fid_fmnist10k 14.10" in re.search(r"In short:.*?</p>", (tmp_path / "again.html").read_text(), re.S).group(0)
