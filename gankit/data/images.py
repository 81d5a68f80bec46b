"""Opening an image file a user gave: one place that turns Pillow's refusals into one-line errors.

Pillow guards against decompression bombs: an image of more than `Image.MAX_IMAGE_PIXELS` pixels
(~89 million, e.g. 9,500 x 9,500) only warns, and one of more than twice that raises
DecompressionBombError, an Exception that is neither OSError nor anything a caller of Image.open
expects. gankit never needs such an image (it trains and inverts at 28-128 px), so both are
refused here, before any pixel is decoded, with the size and the limit named.
"""
from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

from ..errors import DataError


class ImageTooLarge(DataError):
    """An image over Pillow's decompression-bomb limit: refused unread."""


def too_large(path: str | Path, message: str) -> ImageTooLarge:
    """The one-line refusal of an image over the limit, from Pillow's message (which holds its size)."""
    numbers = [int(n) for n in re.findall(r"\d+", message)]
    pixels = f"{numbers[0]:,} pixels" if numbers else "too many pixels"
    return ImageTooLarge(f"{path}: an image of {pixels}, over the {Image.MAX_IMAGE_PIXELS:,}-pixel limit that "
                         f"Pillow sets against decompression bombs; refused without decoding it (gankit works at "
                         f"28-128 px: shrink it first)")


@contextlib.contextmanager
def open_image(path: str | Path) -> Iterator[Image.Image]:
    """`Image.open(path)` as a context manager, with an image over Pillow's pixel limit refused
    (ImageTooLarge, a DataError). Other errors pass through as Pillow raises them
    (UnidentifiedImageError and OSError for files that are not images or are damaged)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise too_large(path, str(e)) from None
    with im:
        yield im


UNREADABLE = (UnidentifiedImageError, OSError, ValueError, SyntaxError)  # what Pillow raises for a bad file
