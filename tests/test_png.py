"""render/png.py: the PNG files written decode back, and what --image is given is read or refused in one line."""

from __future__ import annotations

import io
import random
import struct
import zlib

import pytest

from unetinspect.errors import ImageError
from unetinspect.render.png import Picture, decode_png, encode_png


def noise(width: int, height: int, seed: int = 0) -> Picture:
    rng = random.Random(seed)
    return Picture(width, height, bytes(rng.randrange(256) for _ in range(3 * width * height)))


def test_encoded_png_decodes_to_the_same_pixels():
    picture = noise(7, 5)
    data = encode_png(picture)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert decode_png(data) == picture


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_decodes_what_pillow_writes_with_every_filter(mode):
    image_module = pytest.importorskip("PIL.Image")
    rng = random.Random(1)
    # smooth gradients with noise: Pillow's adaptive filtering then picks sub, up, average and Paeth lines
    width, height = 33, 21
    pixels = [tuple((x * 7 + y * 3 + rng.randrange(4)) % 256 for _ in mode) for y in range(height)
              for x in range(width)]
    image = image_module.new(mode, (width, height))
    image.putdata(pixels)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    picture = decode_png(buffer.getvalue())
    assert (picture.width, picture.height) == (width, height)
    assert picture.rgb == bytes(c for p in pixels for c in p[:3])


def png_with(depth: int, colour: int, interlace: int = 0) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 2, 2, depth, colour, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")


@pytest.mark.parametrize("data,words", [
    (b"GIF89a....", "is not a PNG file"),
    (png_with(16, 2), "is a 16-bit RGB PNG"),
    (png_with(8, 3), "is a 8-bit palette PNG"),
    (png_with(8, 0), "is a 8-bit greyscale PNG"),
    (png_with(8, 2, interlace=1), "interlaced"),
    (png_with(8, 2)[:40], "damaged"),
    (b"\x89PNG\r\n\x1a\n" + b"\0\0\0\x0dIHDR" + b"\0" * 4, "damaged"),
])
def test_other_pictures_are_refused_in_one_line(data, words):
    with pytest.raises(ImageError) as error:
        decode_png(data, "cat.png")
    line = error.value.one_line()
    assert words in line and "cat.png" in line and "8-bit RGB or RGBA" in line and "\n" not in line
