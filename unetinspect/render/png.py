"""PNG files with the standard library alone (zlib + struct): pictures need no imaging package.

`encode_png` writes 8-bit RGB; `decode_png` reads what `--image` is given in practice — 8-bit RGB or RGBA,
not interlaced, any of the five scanline filters — and refuses every other kind with one line that says what the
file is and what to give instead. Alpha is dropped: the maps are drawn over the picture's colours.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from unetinspect.errors import ImageError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {0: "greyscale", 2: "RGB", 3: "palette", 4: "greyscale+alpha", 6: "RGBA"}
_CHANNELS = {2: 3, 6: 4}
_HINT = "give an 8-bit RGB or RGBA PNG that is not interlaced (e.g. re-save it as a plain PNG)"


@dataclass(frozen=True)
class Picture:
    """An image as rows of RGB bytes: `rgb[3 * (y * width + x) + c]`."""

    width: int
    height: int
    rgb: bytes

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        start = 3 * (y * self.width + x)
        return self.rgb[start], self.rgb[start + 1], self.rgb[start + 2]


def encode_png(picture: Picture) -> bytes:
    """The picture as a PNG file: one IDAT of unfiltered scanlines, compressed."""
    stride = 3 * picture.width
    raw = b"".join(b"\x00" + picture.rgb[y * stride:(y + 1) * stride] for y in range(picture.height))
    header = struct.pack(">IIBBBBB", picture.width, picture.height, 8, 2, 0, 0, 0)
    return SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b"")


def read_png(path: str | Path) -> Picture:
    """The picture in a PNG file (see `decode_png`); an unreadable file is an `ImageError` too."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image {path}: {exc.strerror or exc}", _HINT) from None
    return decode_png(data, str(path))


def decode_png(data: bytes, name: str = "image") -> Picture:
    """An 8-bit RGB or RGBA, non-interlaced PNG as a `Picture` (alpha dropped)."""
    if not data.startswith(SIGNATURE):
        raise ImageError(f"{name} is not a PNG file (it does not start with the PNG signature)", _HINT)
    chunks = _chunks(data, name)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise ImageError(f"{name} is not a valid PNG: it has no IHDR header first", _HINT)
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if colour not in _CHANNELS or depth != 8 or interlace:
        kind = f"{depth}-bit {_COLOUR_TYPES.get(colour, f'colour type {colour}')}" + (", interlaced" * interlace)
        raise ImageError(f"{name} is a {kind} PNG, which is not read here", _HINT)
    channels = _CHANNELS[colour]
    try:
        raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    except zlib.error as exc:
        raise ImageError(f"{name} is a damaged PNG: its image data does not decompress ({exc})", _HINT) from None
    stride = channels * width
    if width == 0 or height == 0 or len(raw) < (stride + 1) * height:
        raise ImageError(f"{name} is a damaged PNG: {len(raw)} bytes of image data for {width}x{height}", _HINT)
    pixels = _unfilter(raw, stride, height, channels, name)
    if channels == 4:
        pixels = bytes(b for i, b in enumerate(pixels) if i % 4 != 3)
    return Picture(width, height, bytes(pixels))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _chunks(data: bytes, name: str) -> list[tuple[bytes, bytes]]:
    """(type, body) of every chunk up to IEND; a chunk running past the end of the file is damage."""
    chunks, at = [], len(SIGNATURE)
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        body = data[at + 8:at + 8 + length]
        if len(body) < length:
            raise ImageError(f"{name} is a damaged PNG: chunk {kind!r} runs past the end of the file", _HINT)
        chunks.append((kind, body))
        at += 12 + length
        if kind == b"IEND":
            break
    return chunks


def _unfilter(raw: bytes, stride: int, height: int, bpp: int, name: str) -> bytearray:
    """Undo the per-scanline filters (none, sub, up, average, Paeth) of the PNG specification."""
    out = bytearray(stride * height)
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        if kind == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 0xFF
        elif kind == 2:
            for i in range(stride):
                line[i] = (line[i] + previous[i]) & 0xFF
        elif kind == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + previous[i]) >> 1)) & 0xFF
        elif kind == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = previous[i], previous[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        elif kind != 0:
            raise ImageError(f"{name} is a damaged PNG: scanline {y} has filter type {kind}", _HINT)
        out[y * stride:(y + 1) * stride] = line
        previous = line
    return out
