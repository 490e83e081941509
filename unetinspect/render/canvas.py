"""A small RGB canvas for pictures written as PNG: filled boxes, heat maps, and labels in a built-in 3x5 font.

No imaging package and no font file: the glyphs below are the digits, the capital letters (lowercase is drawn
as capitals) and the punctuation a module path or a token carries (× and · drawn as x and -); anything else is
drawn as "?".
"""

from __future__ import annotations

from collections.abc import Sequence

from unetinspect.render.png import Picture

RGB = tuple[int, int, int]

# Each glyph: 5 rows of 3 pixels, "1" set.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001010010",
    "8": "111101111101111", "9": "111101111001111",
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111",
    " ": "000000000000000", ".": "000000000000010", ",": "000000000010100", ":": "000010000010000", ";": "000010000010100",
    "-": "000000111000000", "_": "000000000000111", "/": "001001010100100", "<": "001010100010001",
    ">": "100010001010100", "|": "010010010010010", "(": "001010010010001", ")": "100010010010100",
    "!": "010010010000010", "?": "111001010000010", "+": "000010111010000", "=": "000111000111000",
    "#": "101111101111101", "'": "010010000000000", "%": "101001010100101", "*": "000101010101000",
}
GLYPH_W, GLYPH_H = 3, 5
_ALIASES = str.maketrans({"×": "x", "·": "-", "—": "-", "…": "."})  # the headers' own typography, drawn plainly

# viridis at five stops, interpolated between: dark blue (0) to yellow (1), readable in grey too
_STOPS: tuple[RGB, ...] = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def colour(value: float) -> RGB:
    """The colour of `value` in 0..1 (clamped) on the viridis scale."""
    value = min(max(value, 0.0), 1.0) * (len(_STOPS) - 1)
    i = min(int(value), len(_STOPS) - 2)
    t = value - i
    a, b = _STOPS[i], _STOPS[i + 1]
    r, g, b = (round(x + (y - x) * t) for x, y in zip(a, b))
    return r, g, b


def text_width(text: str, scale: int) -> int:
    """How many pixels wide `text` is drawn at `scale` (a pixel of space after each glyph)."""
    return len(text) * (GLYPH_W + 1) * scale


class Canvas:
    """An RGB image being drawn, filled with `background`."""

    def __init__(self, width: int, height: int, background: RGB = (255, 255, 255)) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def put(self, x: int, y: int, rgb: RGB) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            start = 3 * (y * self.width + x)
            self.pixels[start:start + 3] = bytes(rgb)

    def box(self, x: int, y: int, w: int, h: int, rgb: RGB) -> None:
        row = bytes(rgb) * max(0, min(w, self.width - x))
        for yy in range(max(0, y), min(self.height, y + h)):
            start = 3 * (yy * self.width + max(0, x))
            self.pixels[start:start + len(row)] = row

    def text(self, x: int, y: int, text: str, scale: int = 2, rgb: RGB = (0, 0, 0)) -> None:
        for char in text.translate(_ALIASES).upper():
            glyph = _GLYPHS.get(char, _GLYPHS["?"])
            for i, bit in enumerate(glyph):
                if bit == "1":
                    self.box(x + (i % GLYPH_W) * scale, y + (i // GLYPH_W) * scale, scale, scale, rgb)
            x += (GLYPH_W + 1) * scale

    def heat_map(self, x: int, y: int, w: int, h: int, values: Sequence[Sequence[float]], top: float,
                 under: Picture | None = None, opacity: float = 0.6) -> None:
        """`values` (rows of a map, 0..top) scaled to w x h (nearest), over `under` scaled the same way."""
        rows, cols = len(values), len(values[0])
        for yy in range(h):
            line = values[yy * rows // h]
            for xx in range(w):
                rgb = colour(line[xx * cols // w] / top if top > 0 else 0.0)
                if under is not None:
                    below = under.pixel(xx * under.width // w, yy * under.height // h)
                    r, g, b = (round(opacity * c + (1 - opacity) * b) for c, b in zip(rgb, below))
                    rgb = (r, g, b)
                self.put(x + xx, y + yy, rgb)

    def picture(self) -> Picture:
        return Picture(self.width, self.height, bytes(self.pixels))
