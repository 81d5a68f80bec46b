"""The README and the user guide stay true: every `gankit` command they show parses (each flag
exists, each value is valid), every Python block runs, the README stays a front page, and user
docs speak of the course labs, never of internal issues."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
import re
import shlex
import sys
from pathlib import Path

import pytest

from gankit.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", path.read_text(), re.S)


def commands(block: str) -> list[list[str]]:
    """The `gankit ...` command lines of a shell block (continuations joined, comments dropped)."""
    text = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip().startswith("gankit ")]


SHOWN = [(p.relative_to(ROOT), cmd) for p in PAGES for b in blocks(p, "bash") for cmd in commands(b)]


def test_the_docs_show_commands():
    assert len(SHOWN) > 40 and {c[1] for _, c in SHOWN} >= {"train", "sample", "eval", "report", "app", "explore",
                                                            "tune", "grid", "compare"}


@pytest.mark.parametrize("page, argv", SHOWN, ids=[f"{p}:{' '.join(c[:3])}" for p, c in SHOWN])
def test_every_command_shown_parses(page, argv, capsys):
    try:
        build_parser().parse_args(argv[1:])
    except SystemExit as e:
        pytest.fail(f"{page}: `{' '.join(argv)}` does not parse: {capsys.readouterr().err.strip()} (exit {e.code})")


PYTHON: dict[str, list[str]] = {}  # each distinct block -> where it is shown ("page#i"): run once
for _page in PAGES:
    for _i, _code in enumerate(blocks(_page, "python")):
        PYTHON.setdefault(_code, []).append(f"{_page.relative_to(ROOT)}#{_i}")


@pytest.mark.parametrize("code", list(PYTHON), ids=[" ".join(w) for w in PYTHON.values()])
def test_every_python_block_runs(code, tmp_path, monkeypatch):
    """Each block as a script's body, in an empty folder (its runs land there), on real Fashion-MNIST;
    a block shown on several pages (the README's and the guide's first steps) runs once. In this
    process: a fresh one would add only torch's start-up (~3 s) to each."""
    monkeypatch.chdir(tmp_path)
    exec(compile(code, " and ".join(PYTHON[code]), "exec"), {"__name__": "__main__"})


def test_readme_is_a_front_page():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    first_install = text.index("pip install")
    assert first_install < text.index("make demo")  # pip first, make as the shortcut


def test_user_docs_speak_of_the_course_labs():
    for page in PAGES:
        text = page.read_text()
        for pattern in (r"\bissues? \d+", r"\bissue\b", r"(?:^|[\s(])#\d{1,3}\b(?!-)", r"the seeds'", r"the seeds\b"):
            assert not re.search(pattern, text), f"{page.relative_to(ROOT)}: matches {pattern!r}"


def test_every_page_is_in_the_guide():
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").rglob("*.md"):
        assert str(page.relative_to(ROOT / "docs")) in nav, f"{page} is not in mkdocs.yml's nav"


def figures_registry() -> dict:
    """bench/figures.py's FIGURES: picture -> (maker, the file its caption's numbers are in)."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import figures
    finally:
        sys.path.pop(0)
    return figures.FIGURES


def pictures() -> list[tuple[Path, str, str]]:
    """Every picture a page shows: (page, picture from the repository root, its caption: the alt
    text, and the italic paragraph right after the picture or else the paragraph right before)."""
    found = []
    for page in PAGES:
        paragraphs = re.split(r"\n\s*\n", page.read_text())
        for i, para in enumerate(paragraphs):
            for alt, src in re.findall(r"!\[([^\]]*)\]\(([^)\s]+)\)", para):
                after = paragraphs[i + 1].strip() if i + 1 < len(paragraphs) else ""
                near = after if re.match(r"\*[^*]", after) else paragraphs[i - 1] if i else ""
                rel = (page.parent / src).resolve().relative_to(ROOT).as_posix()
                rest = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", para)
                found.append((page, rel, "\n".join((alt, rest, near))))
    return found


def test_every_picture_shown_exists_and_has_a_maker():
    made = figures_registry()
    shown = pictures()
    assert len(shown) >= 20
    for page, picture, _ in shown:
        assert (ROOT / picture).is_file(), f"{page.name} shows {picture}, which is missing"
        assert picture in made, f"{page.name} shows {picture}: bench/figures.py's FIGURES does not say who makes it"
        assert (ROOT / made[picture][1]).is_file(), made[picture]


NUMBER = r"(?<![\w.])\d{1,3}(?:,\d{3})+(?![\d.])|(?<![\w.])\d+\.\d+(?![\d.]|e-)"


def quotes(number: str, source: str) -> bool:
    """Whether `source` holds `number` (thousands separators aside), or a number that rounds to it."""
    number = Decimal(number.replace(",", ""))
    return any(Decimal(x).quantize(number, ROUND_HALF_UP) == number
               for x in re.findall(r"\d+(?:\.\d+)?", source.replace(",", "")))


def test_every_number_a_caption_quotes_is_in_its_results_file():
    """A caption's figures (decimals, thousands) come from the file its maker wrote, not from memory."""
    made = figures_registry()
    for page, picture, caption in pictures():
        source = (ROOT / made[picture][1]).read_text()
        for number in re.findall(NUMBER, caption):
            assert quotes(number, source), (
                f"{page.name}: the caption of {picture} quotes {number}, not in {made[picture][1]}")
