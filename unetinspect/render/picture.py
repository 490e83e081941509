"""Pictures through Pillow: the picture `--image` names, read within bounds, and the font our PNGs are labelled in.

A picture is a stranger's file, so it is read like every other file the user names (unetinspect/files.py): a
regular file only — a FIFO or a link to /dev/zero is refused before a byte is read — and no larger than
`MAX_PICTURE_BYTES`. Pillow opens a file lazily, reading only its header, so the size the picture DECLARES is
checked against `MAX_PICTURE_PIXELS` before a pixel is decoded (a 2.6 MB PNG can declare 30000×30000 and inflate
to 2.7 GB); Pillow's own decompression-bomb guard, which fires on open, ends in the same line. What is decoded is
then shrunk to `LONGEST` pixels a side (a JPEG already while decoding, through `draft`), since the maps are drawn
over it in cells of about a hundred pixels. Any failure is one `ImageError` line: nothing is written.
"""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageFont, ImageOps

from unetinspect.errors import ImageError
from unetinspect.files import open_regular

FORMATS = ("PNG", "JPEG", "WEBP")
MAX_PICTURE_BYTES = 64 * 2**20
# Width × height decoded at most: a 5000×5000 PNG, about a second on one core; that bounds the time. A PNG or
# WebP can only be decoded whole, so the size its header declares is the one checked; a JPEG is decoded at 1/2,
# 1/4 or 1/8 of its size (`draft`), and that smaller size is the one checked (a 9000×9000 photo passes; past
# Pillow's own guard, 89 MP, none does).
MAX_PICTURE_PIXELS = 25_000_000
LONGEST = 1024  # pixels a side kept after reading: more than any cell of the grid needs
HINT = "give a PNG, JPEG or WebP picture (for instance the image your pipeline made)"
# Everything Pillow's decoders raise on a damaged or hostile file: the file's fault, never ours.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError,
                  Image.DecompressionBombError, Image.DecompressionBombWarning)


def read_picture(path: str | Path) -> Image.Image:
    """The RGB picture in a PNG, JPEG or WebP file, at most `LONGEST` pixels a side; `ImageError` otherwise."""
    fd = open_regular(path, ImageError)
    with os.fdopen(fd, "rb") as file:
        size = os.fstat(fd).st_size
        if size > MAX_PICTURE_BYTES:
            raise ImageError(f"{path} is {size:,} bytes, over the {MAX_PICTURE_BYTES:,} read for a picture", HINT)
        try:
            with warnings.catch_warnings():  # Pillow warns of a likely bomb below its error: refuse it too
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                picture = Image.open(file, formats=FORMATS)  # the header only
                picture.draft("RGB", (LONGEST, LONGEST))  # JPEG: to be decoded at 1/2, 1/4 or 1/8 size
                _check_size(path, picture)
                picture.thumbnail((LONGEST, LONGEST))  # decodes
                return ImageOps.exif_transpose(picture.convert("RGB"))
        except Image.UnidentifiedImageError:
            raise ImageError(f"{path} is not a PNG, JPEG or WebP picture", HINT) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{path} declares more pixels than Pillow's decompression-bomb guard allows "
                             f"(over {MAX_PICTURE_PIXELS:,} are never decoded here)", HINT) from None
        except _DECODE_ERRORS as exc:
            raise ImageError(f"{path} is a damaged picture: {exc}", HINT) from None


def _check_size(path: str | Path, picture: Image.Image) -> None:
    """Refuse, before decoding, a picture that would decode to more than `MAX_PICTURE_PIXELS`."""
    width, height = picture.size
    if width * height > MAX_PICTURE_PIXELS:
        size = "is {}×{} pixels even at 1/8 size" if picture.format == "JPEG" else "declares {}×{} pixels"
        raise ImageError(f"{path} {size.format(width, height)}, over the {MAX_PICTURE_PIXELS:,} decoded for a "
                         "picture; it was not decoded", "shrink it first (the maps are drawn in cells of ~100 px)")
    if width == 0 or height == 0:
        raise ImageError(f"{path} declares {width}×{height} pixels: it has no picture", HINT)


# The typography of our own headers, drawn plainly where the font has no glyph for it.
_PLAIN = str.maketrans({"×": "x", "·": "-", "—": "-", "–": "-", "…": "...", "µ": "u", "→": "->"})


class LabelFont(NamedTuple):
    """The font our PNGs are labelled in, and whether it draws more than Basic Latin."""

    font: ImageFont.FreeTypeFont | ImageFont.ImageFont
    wide: bool

    def drawable(self, text: str) -> str:
        """`text` as the font can draw it: our own × · — … µ → as ASCII in the Basic-Latin fallback."""
        return text if self.wide else text.translate(_PLAIN)


@lru_cache(maxsize=8)
def label_font(size: int) -> LabelFont:
    """DejaVu Sans where the system has it (its glyphs cover ×, µ, →, accents and most scripts), else Pillow's
    own scalable font, which needs no file (Aileron, Basic Latin only; the bitmap font where Pillow lacks FreeType)."""
    try:
        return LabelFont(ImageFont.truetype("DejaVuSans.ttf", size), True)
    except OSError:
        return LabelFont(ImageFont.load_default(size=size), False)
