"""Hostile pictures given to `attention --image`: each refused at once in one line, before the run, nothing written.

A link to /dev/zero (made in tmp_path; only its kind is looked at, never a byte read) and a FIFO are refused by
their kind; a file over the byte cap by its size; a PNG that declares more pixels than are decoded by its header,
before a pixel is inflated; Pillow's decompression-bomb guard ends in the same one line; and what is damaged or
no picture at all says so.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from bad_input import refused, untouched
from PIL import Image

from unetinspect.errors import ImageError
from unetinspect.render import picture as picture_module
from unetinspect.render.picture import MAX_PICTURE_BYTES, MAX_PICTURE_PIXELS, read_picture

FAST = ["--latent", "8", "--text-len", "4", "--device", "cpu"]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_declaring(width: int, height: int, rows: int = 1) -> bytes:
    """A small PNG whose header declares width×height (8-bit RGB), holding only `rows` rows of zeros."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\0" * (rows * (3 * width + 1)), 9)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _zero_link(tmp_path):
    link = tmp_path / "cat.png"
    link.symlink_to("/dev/zero")  # never opened for reading: refused by the kind stat gives
    return link


def _fifo(tmp_path):
    path = tmp_path / "cat.png"
    os.mkfifo(path)
    return path


def _over_the_byte_cap(tmp_path):
    path = tmp_path / "cat.png"
    with open(path, "wb") as f:  # sparse: no disk used, its size is all that is looked at
        f.truncate(MAX_PICTURE_BYTES + 1)
    return path


def _written(data: bytes):
    def make(tmp_path):
        path = tmp_path / "cat.png"
        path.write_bytes(data)
        return path
    return make


def _saved(size: tuple[int, int], fmt: str, cut: int | None = None):
    def make(tmp_path):
        buffer = io.BytesIO()
        Image.new("RGB", size, (200, 30, 30)).save(buffer, format=fmt)
        return _written(buffer.getvalue()[:cut])(tmp_path)
    return make


CASES = {
    "link-to-dev-zero": (_zero_link, "is a character device, not a regular file"),
    "fifo": (_fifo, "is a FIFO (named pipe), not a regular file"),
    "over-the-byte-cap": (_over_the_byte_cap, f"over the {MAX_PICTURE_BYTES:,} read for a picture"),
    "declares-6000x6000": (_written(png_declaring(6000, 6000)), "declares 6000×6000 pixels, over the"),
    "declares-30000x30000": (_written(png_declaring(30000, 30000)), "decompression-bomb guard"),
    "declares-0-wide": (_written(png_declaring(0, 10)), "cat.png"),
    "truncated-png": (_saved((64, 64), "PNG", cut=80), "damaged picture"),
    "truncated-jpeg": (_saved((64, 64), "JPEG", cut=300), "damaged picture"),
    "a-gif": (_saved((8, 8), "GIF"), "is not a PNG, JPEG or WebP picture"),
    "text": (_written(b"not a picture"), "is not a PNG, JPEG or WebP picture"),
    "empty": (_written(b""), "is not a PNG, JPEG or WebP picture"),
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_pictures_are_refused_in_one_line_before_the_run(case, tmp_path, invoke):
    make, words = CASES[case]
    path = make(tmp_path)
    message = refused(invoke, tmp_path, "attention", "tiny", *FAST, "--image", path, "-o", tmp_path / "maps.png",
                      words=words)
    assert str(path) in message


def test_the_library_refuses_them_too(tmp_path):
    path = _zero_link(tmp_path)
    with untouched(tmp_path, "library: picture linked to /dev/zero"), pytest.raises(ImageError, match="not a regular"):
        read_picture(path)


def test_pillows_bomb_warning_is_our_error_too(tmp_path, monkeypatch):
    """Between Pillow's warning and its error (by default 89M to 179M pixels) it only warns: refused as well."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    monkeypatch.setattr(picture_module, "MAX_PICTURE_PIXELS", 10**6)
    path = _written(png_declaring(40, 40))(tmp_path)
    with pytest.raises(ImageError, match="decompression-bomb guard"):
        read_picture(path)


def test_a_huge_jpeg_is_decoded_at_an_eighth_of_its_size(tmp_path):
    """Over the pixel cap at full size, under it at 1/8: a JPEG is decoded small (draft), so it is read."""
    side = int((4 * MAX_PICTURE_PIXELS) ** 0.5)
    path = _saved((side, side // 2), "JPEG")(tmp_path)
    assert max(read_picture(path).size) == picture_module.LONGEST
