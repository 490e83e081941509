"""The precision view: per format, the blocks ranked by what running them alone in it costs the UNet's output.

Works from plain numbers (a Precision's errors); the columns are declared once below. Each row is one block in one
format; its errors over the timesteps are one cell (the table) or one `t:error` list (CSV), the JSON keeps them
as lists beside the timesteps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.text import Text

from unetinspect.render.export import write_output
from unetinspect.render.formats import Column, View
from unetinspect.render.names import namer, names_data

if TYPE_CHECKING:
    from unetinspect.views.precision import Precision


class Row(NamedTuple):
    """One block in one format, at its rank there."""

    fmt: str
    rank: int
    block: str
    error: list[float]
    sqnr_db: list[float]
    nonfinite: list[int]
    timesteps: list[float]

    @property
    def worst(self) -> float:
        return max((math.inf if math.isnan(e) else e for e in self.error), default=0.0)

    @property
    def least_sqnr(self) -> float:
        return min(self.sqnr_db, default=math.inf)


def _error(value: float) -> str:
    return "non-finite" if not math.isfinite(value) else f"{value:.3g}"


def _sqnr(value: float) -> str:
    return "–" if math.isnan(value) or value == -math.inf else "∞" if value == math.inf else f"{value:.1f}"


def _worst_text(row: Row) -> Text:
    return Text(_error(row.worst), style="bold red" if sum(row.nonfinite) else "")


def _timestep(t: float) -> str:
    return f"{t:g}"


COLUMNS = (
    Column("format", "format", lambda r: r.fmt, style="magenta"),
    Column("rank", "#", lambda r: str(r.rank), value=lambda r: r.rank, justify="right"),
    Column("block", "block", lambda r: r.block, markdown=lambda r: f"`{r.block}`", style="cyan", fold=True,
           min_width=20),
    Column("worst_error", "worst rel. error", _worst_text, value=lambda r: r.worst, justify="right"),
    Column("least_sqnr_db", "SQNR dB", lambda r: _sqnr(r.least_sqnr), value=lambda r: r.least_sqnr,
           justify="right"),
    Column("errors", "error per timestep", lambda r: "  ".join(f"{_timestep(t)}: {_error(e)}"
                                                               for t, e in zip(r.timesteps, r.error)),
           value=lambda r: ";".join(f"{_timestep(t)}:{e!r}" for t, e in zip(r.timesteps, r.error)),
           fold=True, priority=1),
    Column("nonfinite", "non-finite", lambda r: f"{sum(r.nonfinite):,}" if sum(r.nonfinite) else "–",
           value=lambda r: sum(r.nonfinite), justify="right", priority=2),
)


class PrecisionView(View["Precision"]):
    """Per format, every block ranked: non-finite outputs first, then the largest relative error; as html
    (`-o precision.html`) the same as a page, each block's error per timestep drawn as a bar."""

    kind = "precision"
    columns = COLUMNS
    file_formats = ("html",)

    def write(self, result: Precision, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        from unetinspect.render.report import precision_html

        return write_output(path, precision_html(result, self.rows(result), self.heading(result)[-1]), inputs)

    def __init__(self, *, names: str = "diffusers") -> None:
        self.names = names

    def rows(self, result: Precision) -> list[Row]:
        """Every block in every format, ranked; named as `--names` asks (the JSON keeps diffusers' paths)."""
        shown = namer(result.setup, self.names)
        return [Row(fmt, rank, shown(block), result.error[fmt][block], result.sqnr_db[fmt][block],
                    result.nonfinite[fmt][block], result.timesteps)
                for fmt in result.formats for rank, block in enumerate(result.ranked(fmt), 1)]

    def heading(self, result: Precision) -> list[str]:
        what = f"depth {result.depth}" if result.depth is not None else "the blocks named"
        steps = ", ".join(_timestep(t) for t in result.timesteps)
        return [*super().heading(result), f"each block ({what}) alone in {', '.join(result.formats)}, "
                f"the rest float32 · timesteps {steps}"]

    def totals(self, result: Precision) -> list[tuple[str, str]]:
        return ([(fmt, result.conventions[fmt]) for fmt in result.formats]
                + [("note", note) for note in result.notes])

    def data(self, result: Precision) -> dict[str, Any]:
        """The documented JSON interface (docs/cli.md): formats with their conventions, timesteps, the ranked
        blocks with their figures per timestep (a non-finite error is null, with its non-finite count)."""
        return {
            "depth": result.depth,
            "timesteps": result.timesteps,
            "formats": [{"name": fmt, "convention": result.conventions[fmt],
                         "blocks": [{"block": block, **names_data(result.setup, block), "rank": rank,
                                     "error": result.error[fmt][block], "sqnr_db": result.sqnr_db[fmt][block],
                                     "nonfinite": result.nonfinite[fmt][block]}
                                    for rank, block in enumerate(result.ranked(fmt), 1)]}
                        for fmt in result.formats],
            "notes": result.notes,
        }
