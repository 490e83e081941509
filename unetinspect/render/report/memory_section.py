"""The report's training-memory section (`report --train`): the totals of a step, where its peak falls, and the
bytes each block saves for backward as bars — the figures for its template, templates/memory.html."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unetinspect.render.memory_view import PARTS, _totals_lines
from unetinspect.render.units import human_bytes

if TYPE_CHECKING:
    from unetinspect.views.memory import Memory


def memory_section(memory: Memory | None) -> dict[str, Any] | None:
    """The section's figures, or None for a report without --train."""
    if memory is None or memory.training is None:
        return None
    totals = memory.totals
    peak = totals.peak_bytes or 1
    labels = dict(_totals_lines(totals, True, memory.peak_at))
    parts = [{"label": label, "size": human_bytes(getattr(totals, key)),
              "width": f"{100 * getattr(totals, key) / peak:.1f}",
              "note": labels[label].split(", ", 1)[1] if ", " in labels[label] else ""}
             for label, key in PARTS if label in labels]
    blocks = memory.rows(1)
    whole = totals.activation_bytes or 1
    most = max((call.saved_bytes for call in blocks), default=0) or 1
    rows = [{"path": call.path, "size": human_bytes(call.saved_bytes),
             "share": f"{100 * call.saved_bytes / whole:.1f}%", "width": f"{100 * call.saved_bytes / most:.1f}"}
            for call in blocks]
    return {"choices": "; ".join(memory.training.describe()), "totals": parts, "peak_at": memory.peak_at,
            "blocks": rows, "notes": list(memory.notes)}
