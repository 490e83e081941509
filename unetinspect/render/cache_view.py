"""What a cache did, as a table (one row per planned block), JSON and CSV: the calls it ran and reused, and the
speedup measured in the loop beside the two predictions. Imports nothing of torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unetinspect.render.formats import Column, View
from unetinspect.render.units import human_bytes, human_flops

if TYPE_CHECKING:
    from unetinspect.views.cache import CacheResult


def _times(value: float | None) -> str:
    return "–" if value is None else f"×{value:.2f}"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


COLUMNS = (
    Column("block", "block", lambda b: b.block, markdown=lambda b: f"`{b.block}`", style="cyan", fold=True,
           min_width=16),
    Column("ran", "ran", lambda b: str(b.ran), value=lambda b: b.ran, justify="right"),
    Column("reused", "reused", lambda b: str(b.reused), value=lambda b: b.reused, justify="right"),
    Column("ms", "ms when run", lambda b: _ms(b.ms), value=lambda b: b.ms, justify="right", priority=1),
    Column("flops", "FLOPs per call", lambda b: "–" if b.flops is None else human_flops(b.flops),
           value=lambda b: b.flops, justify="right", priority=1),
)


class CacheView(View):
    """One row per block the schedule may reuse."""

    kind = "cache"
    columns = COLUMNS

    def rows(self, result: CacheResult) -> list[Any]:
        return result.blocks

    def heading(self, result: CacheResult) -> list[str]:
        return [f"{result.label} · {result.schedule} · {result.calls} calls"]

    def totals(self, result: CacheResult) -> list[tuple[str, str]]:
        lines = [
            ("calls", f"full {_ms(result.full_call_ms)} ms, cached {_ms(result.cached_call_ms)} ms (medians)"),
            ("speedup", f"measured {_times(result.measured_speedup)} over the model's calls; predicted "
                        f"{_times(result.predicted_speedup_time)} from block times, "
                        f"{_times(result.predicted_speedup_flops)} from FLOPs"),
            ("memory", f"{human_bytes(result.held_bytes)} of stored outputs held"),
        ]
        return [*lines, *(("measured", convention) for convention in result.conventions)]

    def data(self, result: CacheResult) -> dict[str, Any]:
        return {
            "schedule": result.schedule, "calls": result.calls, "full_call_ms": result.full_call_ms,
            "cached_call_ms": result.cached_call_ms, "measured_speedup": result.measured_speedup,
            "predicted_speedup_time": result.predicted_speedup_time,
            "predicted_speedup_flops": result.predicted_speedup_flops, "skipped_flops": result.skipped_flops,
            "held_bytes": result.held_bytes, "conventions": list(result.conventions),
            "blocks": [{"block": b.block, "ran": b.ran, "reused": b.reused, "ms": b.ms, "flops": b.flops}
                       for b in result.blocks],
        }
