"""Attention maps as a table (one row per layer: size, the token it attends most), a PNG grid, or the HTML report
with the maps (hover a token).

The grid: one row per token (the prompt's words when labelled), one column per block and a last one for all
layers aggregated, every cell the map at the latent size; each column is scaled to its own maximum, written
under its name, because deep blocks and the aggregate live on different scales. A colour bar runs from 0 to
that maximum. With a picture, the maps are drawn over it, scaled to the cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetinspect.errors import OptionsError, OutputError
from unetinspect.render.canvas import GLYPH_H, Canvas, colour, text_width
from unetinspect.render.export import write_output
from unetinspect.render.formats import Column, View
from unetinspect.render.header import setup_line
from unetinspect.render.png import Picture, encode_png, read_png

if TYPE_CHECKING:
    from unetinspect.views.attention import AttentionResult, LayerRow

COLUMNS = (
    Column("layer", "layer", lambda r: r.path, style="cyan", fold=True, min_width=20),
    Column("size", "size", lambda r: f"{r.size[0]}x{r.size[1]}", justify="right"),
    Column("heads", "heads", lambda r: "mean" if r.heads is None else str(r.heads), justify="right",
           value=lambda r: r.heads, priority=1),
    Column("peak", "attends most to", lambda r: r.peak),
    Column("share", "mean weight", lambda r: f"{r.share:.3f}", value=lambda r: r.share, justify="right"),
)


class AttentionView(View["AttentionResult"]):
    """The maps per layer as a table; as png the grid (over `picture` if given, all layers aggregated by `method`),
    as html the report page that `attention_maps(..., page=True)` builds."""

    kind = "attention"
    columns = COLUMNS
    file_formats = ("png", "html")

    def __init__(self, method: str = "mean", picture: Picture | None = None) -> None:
        self.method, self.picture = method, picture

    def write(self, result: AttentionResult, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        if fmt == "png":
            return write_attention_png(result, path, self.method, self.picture, inputs)
        if result.page is None:
            raise OutputError("the maps were computed without their report page", "call attention_maps(page=True)")
        from unetinspect.render.report import ReportView

        return ReportView().write(result.page, fmt, path, inputs)

    def rows(self, result: AttentionResult) -> list[LayerRow]:
        return result.summary_rows()

    def heading(self, result: AttentionResult) -> list[str]:
        what = "Cross-attention" if result.kind == "cross" else f"Self-attention of pixel {result.query}"
        return [*super().heading(result), f"{what} maps of {len(result.layers)} layers, {result.batch_note}"]

    def data(self, result: AttentionResult) -> dict[str, Any]:
        return {
            "kind": result.kind, "latent": list(result.latent), "batch": result.batch_note, "steps": result.steps,
            "query": list(result.query) if result.query else None,
            "tokens": list(result.tokens.labels) if result.tokens else None,
            "layers": [{"path": r.path, "size": list(r.size), "heads": r.heads, "peak": r.peak, "share": r.share}
                       for r in result.summary_rows()],
        }


def attention_view(fmt: str, method: str = "mean", image: Path | None = None) -> AttentionView:
    """The view `attention` writes `fmt` through; `image` is read now, so that a bad picture fails before the run
    (and only the PNG grid draws on one)."""
    if image is not None and fmt != "png":
        raise OptionsError("--image: a picture is drawn on in the PNG grid", "give -o FILE.png")
    return AttentionView(method, read_png(image) if image is not None else None)


SCALE, LINE, MARGIN, GAP, CELL = 2, 14, 8, 4, 96


def write_attention_png(result: AttentionResult, path: Path, method: str = "mean", picture: Picture | None = None,
                        inputs: Sequence[str | Path] = ()) -> Path:
    """Draw the grid of `result` (an `AttentionResult`) and write it as a PNG, whole or not at all."""
    return write_output(path, encode_png(draw_grid(result, method, picture)), inputs)


def draw_grid(result: AttentionResult, method: str = "mean", picture: Picture | None = None) -> Picture:
    grid = result.grid(method)
    height, width = len(grid.cells[0][0]), len(grid.cells[0][0][0])
    cell_w, cell_h = CELL, max(1, round(CELL * height / width))
    label_w = max(text_width(label, SCALE) for label in grid.rows) + 2 * GAP
    titles = [setup_line(result.setup) if result.setup else "", grid.title,
              f"columns scaled to their own max; all layers: {method}"]
    top = MARGIN + LINE * (len(titles) + 2)
    bar_x = MARGIN + label_w + len(grid.columns) * (cell_w + GAP) + GAP
    rows_h = len(grid.rows) * (cell_h + GAP) - GAP
    canvas = Canvas(max(bar_x + 16 + text_width("max", SCALE), *(text_width(t, SCALE) for t in titles))
                    + MARGIN, top + rows_h + MARGIN)
    for i, line in enumerate(titles):
        canvas.text(MARGIN, MARGIN + i * LINE, line)
    for c, (name, peak) in enumerate(zip(grid.columns, grid.column_max)):
        x = MARGIN + label_w + c * (cell_w + GAP)
        canvas.text(x, top - 2 * LINE, _short(name))
        canvas.text(x, top - LINE, f"max {peak:.3g}", rgb=(90, 90, 90))
        for r, row in enumerate(grid.cells):
            canvas.heat_map(x, top + r * (cell_h + GAP), cell_w, cell_h, row[c], peak, under=picture)
    for r, label in enumerate(grid.rows):
        canvas.text(MARGIN, top + r * (cell_h + GAP) + (cell_h - GLYPH_H * SCALE) // 2, label)
    for y in range(rows_h):  # the colour bar: the maximum at the top
        canvas.box(bar_x, top + y, 12, 1, colour(1 - y / max(1, rows_h - 1)))
    canvas.text(bar_x + 16, top, "max")
    canvas.text(bar_x + 16, top + rows_h - GLYPH_H * SCALE, "0")
    return canvas.picture()


def _short(block: str) -> str:
    """`down_blocks.1` → `down 1`, `mid_block` → `mid`: a column header fits its cell."""
    return block.replace("down_blocks.", "down ").replace("up_blocks.", "up ").replace("mid_block", "mid")
