"""tools/get_emoji.py: the emoji package laid out as a class-per-folder tree, RGBA made RGB."""
from __future__ import annotations

import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import get_emoji  # noqa: E402


def package(path: Path) -> Path:
    """A stand-in for the npm tarball: two emoji (one with a skin-tone variant) and a Component."""
    emoji = [{"image": "1f600.png", "category": "Smileys & Emotion"},
             {"image": "1f44b.png", "category": "People & Body", "skin_variations": {"1F3FB": {"image": "1f44b-1f3fb.png"}}},
             {"image": "1f3fb.png", "category": "Component"}]
    with tarfile.open(path, "w:gz") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        add("package/emoji.json", json.dumps(emoji).encode())
        add("package/LICENSE", b"MIT")
        for e in ("1f600", "1f44b", "1f44b-1f3fb", "1f3fb"):
            buf = io.BytesIO()
            im = Image.new("RGBA", (64, 64), (0, 0, 0, 0))  # transparent, a red square in the middle
            im.paste((255, 0, 0, 255), (16, 16, 48, 48))
            im.save(buf, "PNG")
            add(f"package/img/google/64/{e}.png", buf.getvalue())
    return path


def test_emoji_are_laid_out_by_category_on_white(tmp_path, capsys):
    tgz = package(tmp_path / "emoji.tgz")
    assert get_emoji.main([str(tgz), str(tmp_path / "tree")]) == 0
    tree = tmp_path / "tree"
    assert sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*.png")) == [
        "people-body/1f44b-1f3fb.png", "people-body/1f44b.png", "smileys-emotion/1f600.png"]
    im = Image.open(tree / "smileys-emotion" / "1f600.png")
    assert im.mode == "RGB" and im.getpixel((0, 0)) == (255, 255, 255) and im.getpixel((32, 32)) == (255, 0, 0)
    assert "3 images in 2 category folders" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not empty"):  # nothing already there is overwritten
        get_emoji.lay_out(tgz, tree)
