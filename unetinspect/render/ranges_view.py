"""The ranges view: the blocks ranked by the largest |x| made inside them, with their headroom under each format.

Works from plain numbers (an ActivationRanges); the columns are declared once below. Each row is one block: its
largest |x| over the timesteps and the timestep it came at, how many times that fits under fp16's, bf16's and fp8
e4m3's largest number (below 1: it overflows, marked), its largest attention logit and its non-finite values; the
table and CSV also give every timestep's largest |x|, the JSON every timestep's figures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.text import Text

from unetinspect.render.formats import Column, View
from unetinspect.render.names import namer, names_data

if TYPE_CHECKING:
    from unetinspect.views.ranges import ActivationRanges

OVERFLOW = "bold red"


class Row(NamedTuple):
    """One block at its rank, with its figures per timestep and the formats' largest numbers."""

    rank: int
    block: str
    max_abs: list[float]
    logit_max: list[float | None]
    nonfinite: list[int]
    timesteps: list[float]
    limits: dict[str, float]

    @property
    def largest(self) -> float:
        return max((math.inf if math.isnan(x) else x for x in self.max_abs), default=0.0)

    @property
    def at(self) -> float | None:
        """The timestep of the largest |x| (the first, on a tie)."""
        values = [math.inf if math.isnan(x) else x for x in self.max_abs]
        return self.timesteps[values.index(max(values))] if values else None

    @property
    def logit(self) -> float | None:
        """The largest over the timesteps; NaN (shown "non-finite") only where no timestep gave a number."""
        values = [v for v in self.logit_max if v is not None]
        numbers = [v for v in values if not math.isnan(v)]
        return max(numbers) if numbers else math.nan if values else None

    def headroom(self, fmt: str) -> float:
        """The format's largest number over the block's largest |x|: below 1 it overflows (NaN: unknown, the
        largest |x| was not finite in the dtype the model ran in)."""
        largest = self.largest
        return math.nan if largest == math.inf else self.limits[fmt] / largest if largest > 0 else math.inf


def _number(value: float | None) -> str:
    return "–" if value is None else "non-finite" if not math.isfinite(value) else f"{value:.4g}"


def _headroom(fmt: str) -> Any:
    def text(row: Row) -> Text:
        value = row.headroom(fmt)
        if math.isnan(value) or (value == math.inf and sum(row.nonfinite)):  # no finite maximum to measure by
            return Text("–")
        if value == math.inf:  # nothing made
            return Text("∞")
        return Text(f"{value:.3g}× overflow", style=OVERFLOW) if value < 1 else Text(f"{value:.3g}×")
    return text


def _logit(row: Row) -> Text:
    value = row.logit
    return Text(_number(value), style=OVERFLOW if value is not None and value > row.limits["fp16"] else "")


def _timestep(t: float | None) -> str:
    return "–" if t is None else f"{t:g}"


COLUMNS = (
    Column("rank", "#", lambda r: str(r.rank), value=lambda r: r.rank, justify="right"),
    Column("block", "block", lambda r: r.block, markdown=lambda r: f"`{r.block}`", style="cyan", fold=True,
           min_width=20),
    Column("max_abs", "max |x|", lambda r: Text(_number(r.largest), style=OVERFLOW if sum(r.nonfinite) else ""),
           value=lambda r: r.largest, justify="right"),
    Column("at_timestep", "at t", lambda r: _timestep(r.at), value=lambda r: r.at, justify="right"),
    # bf16 has float32's range: its headroom (~1e37×) goes first on a narrow terminal, before the block names fold
    *(Column(f"headroom_{fmt}", f"{fmt} ×", _headroom(fmt), value=lambda r, fmt=fmt: r.headroom(fmt),
             justify="right", priority=3 if fmt == "bf16" else 0) for fmt in ("fp16", "bf16", "fp8")),
    Column("logit_max", "max |logit|", _logit, value=lambda r: r.logit, justify="right", priority=1),
    Column("nonfinite", "non-finite", lambda r: f"{sum(r.nonfinite):,}" if sum(r.nonfinite) else "–",
           value=lambda r: sum(r.nonfinite), justify="right"),
    Column("max_abs_per_timestep", "max |x| per timestep",
           lambda r: "  ".join(f"{_timestep(t)}: {_number(x)}" for t, x in zip(r.timesteps, r.max_abs)),
           value=lambda r: ";".join(f"{_timestep(t)}:{x!r}" for t, x in zip(r.timesteps, r.max_abs)),
           fold=True, priority=2),
)


class RangesView(View["ActivationRanges"]):
    """Every watched block ranked: non-finite values first, then the largest |x| made inside it; the first
    non-finite value's block, timestep and layer under the table."""

    kind = "ranges"
    columns = COLUMNS

    def __init__(self, *, names: str = "diffusers") -> None:
        self.names = names

    def rows(self, result: ActivationRanges) -> list[Row]:
        """Every block, ranked; named as `--names` asks (the JSON keeps diffusers' paths)."""
        shown = namer(result.setup, self.names)
        return [Row(rank, shown(block), result.max_abs[block], result.logit_max[block], result.nonfinite[block],
                    result.timesteps, result.limits)
                for rank, block in enumerate(result.ranked(), 1)]

    def heading(self, result: ActivationRanges) -> list[str]:
        what = f"every module down to depth {result.depth}" if result.depth is not None else "the blocks named"
        steps = ", ".join(_timestep(t) for t in result.timesteps)
        return [*super().heading(result), f"largest |x| of any operation inside {what} · timesteps {steps}",
                "fp16 ×, bf16 ×, fp8 ×: the headroom, how many times max |x| fits under the format's largest "
                "number (below 1×: overflow)"]

    def totals(self, result: ActivationRanges) -> list[tuple[str, str]]:
        limits = " · ".join(f"{fmt} {limit:,.0f}" if limit < 1e6 else f"{fmt} {limit:.3g}"
                            for fmt, limit in result.limits.items())
        return [("first non-finite", self._first(result)), ("largest numbers", limits),
                *(("note", note) for note in result.notes)]

    def _first(self, result: ActivationRanges) -> str:
        first = result.first_nonfinite
        if first is None:
            return "none"
        shown = namer(result.setup, self.names)
        block = shown(first.block) if first.block is not None else "outside the blocks shown"
        return (f"{block}, at timestep {_timestep(result.timesteps[first.call])} (call {first.call}), "
                f"layer {shown(first.layer) if first.layer else '(the model itself)'}")

    def data(self, result: ActivationRanges) -> dict[str, Any]:
        """The documented JSON interface (docs/cli.md): the timesteps, the formats' largest numbers, the ranked
        blocks with every timestep's figures (headroom per format; a non-finite figure is null), the first
        non-finite value's place."""
        headroom = {fmt: result.headroom(fmt) for fmt in result.limits}
        first = result.first_nonfinite
        return {
            "depth": result.depth,
            "timesteps": result.timesteps,
            "limits": result.limits,
            "blocks": [{"block": block, **names_data(result.setup, block), "rank": rank,
                        "max_abs": result.max_abs[block],
                        "headroom": {fmt: headroom[fmt][block] for fmt in result.limits},
                        "logit_max": result.logit_max[block], "nonfinite": result.nonfinite[block]}
                       for rank, block in enumerate(result.ranked(), 1)],
            "first_nonfinite": None if first is None else {
                "block": first.block, "call": first.call, "timestep": result.timesteps[first.call],
                "layer": first.layer},
            "notes": result.notes,
        }
