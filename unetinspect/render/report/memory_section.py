"""The report's training-memory section (`report --train`): the totals of a step, where its peak falls, and the
bytes each block saves for backward as bars — filled into its own partial, memory.html, beside page.html."""

from __future__ import annotations

from html import escape
from importlib.resources import files
from typing import TYPE_CHECKING

from unetinspect.render.memory_view import PARTS, _totals_lines
from unetinspect.render.units import human_bytes

if TYPE_CHECKING:
    from unetinspect.views.memory import Memory


def memory_section(memory: Memory | None) -> str:
    """The section, or nothing for a report without --train."""
    if memory is None or memory.training is None:
        return ""
    totals = memory.totals
    peak = totals.peak_bytes or 1
    labels = dict(_totals_lines(totals, True, memory.peak_at))
    parts = "".join(
        f'<tr><th>{escape(label)}</th><td class="num">{human_bytes(getattr(totals, key))}</td>'
        f'<td class="bar"><span style="width:{100 * getattr(totals, key) / peak:.1f}%"></span></td>'
        f'<td class="note">{escape(labels[label].split(", ", 1)[1]) if ", " in labels[label] else ""}</td></tr>'
        for label, key in PARTS if label in labels)
    blocks = memory.rows(1)
    whole = totals.activation_bytes or 1
    most = max((call.saved_bytes for call in blocks), default=0) or 1
    rows = "".join(
        f'<tr data-block="{escape(call.path)}"><td>{escape(call.path)}</td>'
        f'<td class="num">{human_bytes(call.saved_bytes)}</td><td class="num">{100 * call.saved_bytes / whole:.1f}%'
        f'</td><td class="bar"><span style="width:{100 * call.saved_bytes / most:.1f}%"></span></td></tr>'
        for call in blocks)
    slots = {
        "choices": escape("; ".join(memory.training.describe())),
        "totals": parts,
        "peak_at": escape(memory.peak_at),
        "blocks": rows,
        "notes": "".join(f"<li>{escape(note)}</li>" for note in memory.notes),
    }
    section = files("unetinspect.render.report").joinpath("memory.html").read_text(encoding="utf-8")
    for name, value in slots.items():
        section = section.replace(f"<!--slot:{name}-->", value)
    return section
