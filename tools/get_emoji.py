"""Lay out the npm package emoji-datasource-google as a class-per-folder image tree: a small RGB
dataset of 3,781 emoji at 64x64 in 9 categories, drawn by Google (Noto Emoji), for training gankit
on images nobody here made (`make emoji`, or by hand):

    npm pack emoji-datasource-google          # emoji-datasource-google-<version>.tgz, 74 MB
    python tools/get_emoji.py emoji-datasource-google-*.tgz data/emoji
    gankit train --preset faces64 --data-root data/emoji --subset 1000 --augment ada

Every image of img/google/64/ (the 1,911 emoji and their 1,870 skin-tone variants) goes to
<out>/<category>/<name>.png, its category read from the package's emoji.json ("Smileys & Emotion"
becomes smileys-emotion); the transparent RGBA pictures are composited on white and saved as RGB.
The 5 "Component" swatches (skin tones, hair) are left out. The package's LICENSE (MIT) is copied beside them.
"""
from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
from pathlib import Path

from PIL import Image

SKIP = {"Component"}


def slug(category: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-")


def categories(emoji: list[dict]) -> dict[str, str]:
    """image file name -> category, for every emoji and each of its skin-tone variants."""
    out = {}
    for e in emoji:
        out[e["image"]] = e["category"]
        for variant in (e.get("skin_variations") or {}).values():
            out[variant["image"]] = e["category"]
    return out


def lay_out(tarball: Path, out: Path, background=(255, 255, 255)) -> dict[str, int]:
    """Write the tree; returns images per category folder. Refuses a non-empty `out`."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: not empty; give a new folder (nothing was written)")
    with tarfile.open(tarball) as tar:
        names = {m.name: m for m in tar.getmembers()}
        if "package/emoji.json" not in names:
            raise SystemExit(f"{tarball}: no package/emoji.json in it; is this the emoji-datasource-google package?")
        of = categories(json.load(tar.extractfile(names["package/emoji.json"])))
        counts: dict[str, int] = {}
        for name, member in sorted(names.items()):
            m = re.fullmatch(r"package/img/google/64/([^/]+\.png)", name)
            if not m or of.get(m.group(1)) in SKIP or m.group(1) not in of:
                continue
            folder = out / slug(of[m.group(1)])
            folder.mkdir(parents=True, exist_ok=True)
            rgba = Image.open(io.BytesIO(tar.extractfile(member).read())).convert("RGBA")
            picture = Image.new("RGB", rgba.size, background)
            picture.paste(rgba, mask=rgba.getchannel("A"))
            picture.save(folder / m.group(1))
            counts[folder.name] = counts.get(folder.name, 0) + 1
        if "package/LICENSE" in names:
            (out / "LICENSE").write_bytes(tar.extractfile(names["package/LICENSE"]).read())
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tarball", type=Path, help="emoji-datasource-google-<version>.tgz (npm pack emoji-datasource-google)")
    ap.add_argument("out", type=Path, help="the folder to make (new or empty)")
    args = ap.parse_args(argv)
    counts = lay_out(args.tarball, args.out)
    print(f"{sum(counts.values())} images in {len(counts)} category folders under {args.out}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
