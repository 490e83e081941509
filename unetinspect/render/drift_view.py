"""Drift across steps as a table (one row per block), JSON (every series), CSV, and a blocks × steps heatmap PNG.

The heatmap is Block Caching's Fig. 2b (Wimbauer et al. 2024) for the user's own model: one row per block in call
order, one column per call of the model, each cell the block's relative L1 change against the call before, on
one viridis scale from 0 to the largest change (written on the colour bar); the first call, which has nothing to
compare with, is grey. The colours run on a log scale between the smallest and the largest change (both written on the colour
bar): the time embedding changes by ~100 % a call while the blocks change by a few, and on a linear scale the
blocks — what a cache reuses — would be one colour. Drawn with Pillow. Imports nothing of torch.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from unetinspect.render.colormap import colour
from unetinspect.render.export import write_output
from unetinspect.render.formats import CSV, TABLE, Column, View
from unetinspect.render.units import human_bytes

if TYPE_CHECKING:
    from unetinspect.views.drift import Drift

_SPARKS = "▁▂▃▄▅▆▇█"


class Line(NamedTuple):
    """One block's series, summarised."""

    block: str
    rel_l1: list[float | None]
    cosine: list[float | None]

    def changes(self) -> list[float]:
        return [v for v in self.rel_l1 if v is not None]

    def mean(self) -> float | None:
        values = self.changes()
        return sum(values) / len(values) if values else None

    def max(self) -> float | None:
        return max(self.changes(), default=None)

    def last(self) -> float | None:
        values = self.changes()
        return values[-1] if values else None

    def min_cosine(self) -> float | None:
        return min((v for v in self.cosine if v is not None), default=None)

    def spark(self) -> str:
        """The change over the calls as one line of bars, scaled to this block's own largest change."""
        top = self.max()
        if not top or not math.isfinite(top):
            return ""
        return "".join(_SPARKS[min(int(v / top * (len(_SPARKS) - 1) + 0.5), len(_SPARKS) - 1)]
                       for v in self.changes())


def _number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


COLUMNS = (
    Column("block", "block", lambda l: l.block, markdown=lambda l: f"`{l.block}`", style="cyan", fold=True,
           min_width=16),
    Column("mean_rel_l1", "mean rel L1", lambda l: _number(l.mean()), value=lambda l: l.mean(), justify="right"),
    Column("max_rel_l1", "max rel L1", lambda l: _number(l.max()), value=lambda l: l.max(), justify="right"),
    Column("last_rel_l1", "last rel L1", lambda l: _number(l.last()), value=lambda l: l.last(), justify="right",
           priority=1),
    Column("min_cosine", "min cosine", lambda l: _number(l.min_cosine(), 5), value=lambda l: l.min_cosine(),
           justify="right", priority=1),
    Column("rel_l1_per_call", "rel L1 per call", lambda l: l.spark(),
           value=lambda l: " ".join("" if v is None else f"{v:.6g}" for v in l.rel_l1), priority=2,
           formats=frozenset({TABLE, CSV})),
)


class DriftView(View):
    """One row per watched block: how much its output changed between consecutive calls of the model."""

    kind = "drift"
    columns = COLUMNS
    file_formats = ("png",)

    def rows(self, result: Drift) -> list[Line]:
        return [Line(block, result.rel_l1[block], result.cosine[block]) for block in result.blocks]

    def heading(self, result: Drift) -> list[str]:
        return [*super().heading(result),
                f"drift over {result.calls} calls: each block's output against its previous call"]

    def totals(self, result: Drift) -> list[tuple[str, str]]:
        return [("memory", f"{human_bytes(result.held_bytes)} held during the loop (one output per block)"),
                *(("measured", convention) for convention in result.conventions)]

    def data(self, result: Drift) -> dict[str, Any]:
        return {
            "calls": result.calls, "timesteps": result.timesteps, "held_bytes": result.held_bytes,
            "conventions": list(result.conventions),
            "blocks": [{"block": line.block, "rel_l1": line.rel_l1, "cosine": line.cosine,
                        "mean_rel_l1": line.mean(), "max_rel_l1": line.max()} for line in self.rows(result)],
        }

    def write(self, result: Drift, fmt: str, path: Path, inputs: Any) -> Path:
        return write_output(path, heatmap_png(result), inputs)


MARGIN, CELL_H, BAR_W = 10, 18, 12
_GREY = (200, 200, 200)


def heatmap_png(result: Drift) -> bytes:
    """Blocks × calls, each cell the relative L1 change (Block Caching's Fig. 2b), as PNG bytes."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str) -> int:
        return int(probe.textlength(text, font=font))

    lines = DriftView().rows(result)
    positive = [v for line in lines for v in line.changes() if 0 < v < math.inf]
    low, top = min(positive, default=1.0), max(positive, default=1.0)
    span = math.log(top / low) or 1.0

    def shade(value: float | None) -> tuple[int, int, int]:
        if value is None:
            return _GREY
        return colour(math.log(value / low) / span if value > 0 else 0.0)
    calls = max(result.calls, 1)
    cell_w = max(4, min(24, 720 // calls))
    label_w = max((width(line.block) for line in lines), default=0) + MARGIN
    title = f"relative L1 change of each block's output against the previous call ({calls} calls, log colours)"
    grid_x, grid_y = MARGIN + label_w, MARGIN + 2 * CELL_H
    grid_w, grid_h = cell_w * calls, CELL_H * len(lines)
    bar_x = grid_x + grid_w + 2 * MARGIN
    image_w = max(bar_x + BAR_W + MARGIN + max(width(f"{top:.3g}"), width(f"{low:.3g}")) + MARGIN, MARGIN + width(title) + MARGIN)
    image_h = grid_y + max(grid_h, 4 * CELL_H) + 2 * CELL_H + MARGIN
    image = Image.new("RGB", (image_w, image_h), "white")
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN, MARGIN), title, fill="black", font=font)
    for row, line in enumerate(lines):
        y = grid_y + row * CELL_H
        draw.text((MARGIN, y + 3), line.block, fill="black", font=font)
        for call, value in enumerate(line.rel_l1):
            x = grid_x + call * cell_w
            draw.rectangle((x, y, x + cell_w - 1, y + CELL_H - 2), fill=shade(value))
    every = max(1, math.ceil(calls / max(1, grid_w // 40)))  # call numbers at most every 40 pixels
    for call in range(0, calls, every):
        draw.text((grid_x + call * cell_w, grid_y + grid_h + 3), str(call), fill="black", font=font)
    draw.text((grid_x, grid_y + grid_h + 3 + CELL_H), "call of the model", fill="black", font=font)
    bar_h = max(grid_h, 4 * CELL_H)
    for y in range(bar_h):
        draw.line((bar_x, grid_y + y, bar_x + BAR_W, grid_y + y), fill=colour(1 - y / max(bar_h - 1, 1)))
    draw.text((bar_x + BAR_W + 4, grid_y), f"{top:.3g}", fill="black", font=font)
    draw.text((bar_x + BAR_W + 4, grid_y + bar_h - CELL_H), f"{low:.3g}", fill="black", font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()

