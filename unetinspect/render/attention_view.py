"""Attention maps as a table (one row per layer: size, the token it attends most), a PNG grid, or the HTML report
with the maps (hover a token).

The grid: one row per token (the prompt's words when labelled), one column per block and a last one for all
layers aggregated, every cell the map at the latent size; each column is scaled to its own maximum, written
under its name, because deep blocks and the aggregate live on different scales. A colour bar runs from 0 to
that maximum. With a picture, the maps are drawn over it, scaled to the cell.
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from unetinspect.errors import OptionsError, OutputError
from unetinspect.render.colormap import LEVELS, PALETTE, level
from unetinspect.render.export import write_output
from unetinspect.render.formats import Column, View
from unetinspect.render.header import setup_line
from unetinspect.render.names import namer, names_data
from unetinspect.render.picture import label_font, read_picture

if TYPE_CHECKING:
    from unetinspect.views.attention import AttentionResult, LayerRow  # noqa: F401  (View["AttentionResult"])

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

    def __init__(self, method: str = "mean", picture: Image.Image | None = None, *, names: str = "diffusers") -> None:
        self.method, self.picture, self.names = method, picture, names

    def write(self, result: Any, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        if fmt == "png":
            return write_attention_png(result, path, self.method, self.picture, inputs)
        result = _as_result(result)
        if result.page is None:
            raise OutputError("the maps were computed without their report page", "call attention_maps(page=True)")
        from unetinspect.render.report import ReportView

        return ReportView().write(result.page, fmt, path, inputs)

    def rows(self, result: Any) -> list[LayerRow]:
        """A row per layer, named as `--names` asks (the JSON keeps diffusers' paths and adds the others)."""
        result = _as_result(result)
        shown = namer(result.setup, self.names)
        return [dataclasses.replace(row, path=shown(row.path)) for row in result.summary_rows()]

    def heading(self, result: Any) -> list[str]:
        result = _as_result(result)
        what = "Cross-attention" if result.kind == "cross" else f"Self-attention of pixel {result.query}"
        return [*super().heading(result),
                f"{what} maps of {len(result.layers)} layers, {result.text}, {result.batch_note}"]

    def totals(self, result: Any) -> list[tuple[str, str]]:
        return [("note", note) for note in _as_result(result).notes]

    def data(self, result: Any) -> dict[str, Any]:
        result = _as_result(result)
        return {
            "kind": result.kind, "latent": list(result.latent), "batch": result.batch_note, "steps": result.steps,
            "text": result.text, "notes": list(result.notes),
            "query": list(result.query) if result.query else None,
            "tokens": list(result.tokens.labels) if result.tokens else None,
            "layers": [{"path": r.path, **names_data(result.setup, r.path), "size": list(r.size), "heads": r.heads,
                        "peak": r.peak, "share": r.share} for r in result.summary_rows()],
        }


def attention_view(fmt: str, method: str = "mean", image: Path | None = None, *,
                   names: str = "diffusers") -> AttentionView:
    """The view `attention` writes `fmt` through; `image` is read now, so that a bad picture fails before the run
    (and only the PNG grid draws on one)."""
    if image is not None and fmt != "png":
        raise OptionsError("--image: a picture is drawn on in the PNG grid", "give -o FILE.png")
    return AttentionView(method, read_picture(image) if image is not None else None, names=names)


FONT_SIZE, LINE, MARGIN, GAP, CELL, BAR = 13, 18, 8, 4, 96, 12
OPACITY = 0.6  # of the map over a picture
BLACK, GREY, WHITE = (0, 0, 0), (90, 90, 90), (255, 255, 255)


def write_attention_png(result: Any, path: Path, method: str = "mean", picture: Image.Image | None = None,
                        inputs: Sequence[str | Path] = ()) -> Path:
    """Draw the grid of `result` (an `AttentionResult`) and write it as a PNG, whole or not at all."""
    buffer = io.BytesIO()
    draw_grid(result, method, picture).save(buffer, format="PNG")
    return write_output(path, buffer.getvalue(), inputs)


def draw_grid(result: Any, method: str = "mean", picture: Image.Image | None = None) -> Image.Image:
    """The grid of an `AttentionResult`, or of a watch's `AttentionMaps` (`w.attention.mean()`)."""
    result = _as_result(result)
    grid = result.grid(method)
    height, width = len(grid.cells[0][0]), len(grid.cells[0][0][0])
    cell_w, cell_h = CELL, max(1, round(CELL * height / width))
    label = label_font(FONT_SIZE)

    def text_width(text: str) -> int:
        return math.ceil(label.font.getlength(label.drawable(text)))

    label_w = max(text_width(row) for row in grid.rows) + 2 * GAP
    titles = [setup_line(result.setup) if result.setup else "", grid.title,
              f"columns scaled to their own max; all layers: {method}"]
    top = MARGIN + LINE * (len(titles) + 2)
    bar_x = MARGIN + label_w + len(grid.columns) * (cell_w + GAP) + GAP
    rows_h = len(grid.rows) * (cell_h + GAP) - GAP
    image = Image.new("RGB", (max(bar_x + BAR + 4 + text_width("max"), *(text_width(t) for t in titles)) + MARGIN,
                              top + rows_h + MARGIN), WHITE)
    draw = ImageDraw.Draw(image)

    def write(x: int, y: int, text: str, fill: tuple[int, int, int] = BLACK) -> None:
        draw.text((x, y), label.drawable(text), font=label.font, fill=fill)

    under = picture.convert("RGB").resize((cell_w, cell_h), Image.Resampling.LANCZOS) if picture else None
    for i, line in enumerate(titles):
        write(MARGIN, MARGIN + i * LINE, line)
    for c, (name, peak) in enumerate(zip(grid.columns, grid.column_max)):
        x = MARGIN + label_w + c * (cell_w + GAP)
        write(x, top - 2 * LINE, _short(name))
        write(x, top - LINE, f"max {peak:.3g}", GREY)
        for r, row in enumerate(grid.cells):
            image.paste(_heat_map(row[c], peak, (cell_w, cell_h), under), (x, top + r * (cell_h + GAP)))
    for r, row_label in enumerate(grid.rows):
        write(MARGIN, top + r * (cell_h + GAP) + (cell_h - FONT_SIZE) // 2, row_label)
    bar = _paint([[level] for level in range(LEVELS - 1, -1, -1)])  # the colour bar: the maximum at the top
    image.paste(bar.resize((BAR, rows_h), Image.Resampling.BILINEAR), (bar_x, top))
    write(bar_x + BAR + 4, top, "max")
    write(bar_x + BAR + 4, top + rows_h - FONT_SIZE, "0")
    return image


def _heat_map(values: Sequence[Sequence[float]], top: float, size: tuple[int, int],
              under: Image.Image | None) -> Image.Image:
    """One map (rows of 0..top) as a cell of `size`, each value a block of pixels, over `under` if given."""
    cell = _paint([[level(v, top) for v in line] for line in values]).resize(size, Image.Resampling.NEAREST)
    return Image.blend(under, cell, OPACITY) if under is not None else cell


def _paint(levels: Sequence[Sequence[int]]) -> Image.Image:
    """Rows of colour-map levels (0..255) as an RGB image, one pixel each."""
    image = Image.frombytes("P", (len(levels[0]), len(levels)), bytes(v for line in levels for v in line))
    image.putpalette(PALETTE)
    return image.convert("RGB")


def _short(block: str) -> str:
    """`down_blocks.1` → `down 1`, `mid_block` → `mid`: a column header fits its cell."""
    return block.replace("down_blocks.", "down ").replace("up_blocks.", "up ").replace("mid_block", "mid")


def _as_result(maps: Any) -> Any:
    """An `AttentionResult`, or a watch's `AttentionMaps` made one (imported here: the command line reads this
    view's formats before torch is imported)."""
    from unetinspect.views.attention import AttentionResult

    return AttentionResult.of(maps)
