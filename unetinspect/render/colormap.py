"""The one colour map of every picture we draw: viridis, dark blue (0) to yellow (1), readable in grey too.

The PNG grid paints with `PALETTE` (256 levels, a Pillow palette) and the HTML report's script paints its
canvases with the same 256 colours, handed to it in the page's data, so a map looks the same in both.
"""

from __future__ import annotations

RGB = tuple[int, int, int]
LEVELS = 256

# viridis at five stops, interpolated between
_STOPS: tuple[RGB, ...] = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def colour(value: float) -> RGB:
    """The colour of `value` in 0..1 (clamped) on the viridis scale."""
    value = min(max(value, 0.0), 1.0) * (len(_STOPS) - 1)
    i = min(int(value), len(_STOPS) - 2)
    t = value - i
    a, b = _STOPS[i], _STOPS[i + 1]
    r, g, bl = (round(x + (y - x) * t) for x, y in zip(a, b))
    return r, g, bl


# Level k (0..255) of a map: the colour of k / 255. The report's script reads this very table.
COLOURS: tuple[RGB, ...] = tuple(colour(k / (LEVELS - 1)) for k in range(LEVELS))
PALETTE: list[int] = [channel for rgb in COLOURS for channel in rgb]


def level(value: float, top: float) -> int:
    """`value` of 0..top as a level 0..255 of the map (0 where the top is 0)."""
    return min(LEVELS - 1, max(0, round((LEVELS - 1) * value / top))) if top > 0 else 0
