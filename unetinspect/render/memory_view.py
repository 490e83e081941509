"""The memory view: per block what training keeps for backward, and the totals of a step; over sizes, where the
peak crosses a budget.

Works from plain numbers (a Memory's calls and totals); the columns are declared once below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from rich.text import Text

from unetinspect.render.formats import TABLE, Column, Line, View
from unetinspect.render.names import namer, names_data
from unetinspect.render.units import human_bytes, human_count, share

if TYPE_CHECKING:
    from unetinspect.engine.memory import SavedCall
    from unetinspect.views.memory import Memory, MemorySweep, MemoryTotals


def _name(line: Line[SavedCall, int]) -> Text:
    """Blocks in bold; their layers indented under them (named as `--names` asks)."""
    call = line.row
    return Text(("  " * (call.depth - 1)) + line.shown(call.path), style="bold cyan" if call.depth == 1 else "")


COLUMNS = (
    Column("path", "module", _name, value=lambda l: l.shown(l.row.path),
           markdown=lambda l: f"`{l.shown(l.row.path)}`",
           style="cyan", fold=True, min_width=24),
    Column("type", "type", lambda l: l.row.type, style="magenta", priority=2),
    Column("params", "params", lambda l: human_count(l.row.params) if l.row.params else "–",
           value=lambda l: l.row.params, justify="right", priority=1),
    Column("saved_bytes", "saved for backward", lambda l: human_bytes(l.row.saved_bytes),
           value=lambda l: l.row.saved_bytes, justify="right"),
    Column("saved_share", "%", lambda l: share(l.row.saved_bytes, l.whole), justify="right", style="dim",
           priority=3, formats=frozenset({TABLE})),
)

PARTS = (  # (label, MemoryTotals field) in the order a step holds them
    ("weights", "weight_bytes"),
    ("master weights", "master_weight_bytes"),
    ("gradients", "gradient_bytes"),
    ("optimizer", "optimizer_bytes"),
    ("optimizer step", "step_bytes"),
    ("activations", "activation_bytes"),
    ("recompute", "recompute_bytes"),
    ("peak", "peak_bytes"),
)


def _totals_lines(totals: MemoryTotals, training: bool, peak_at: str = "") -> list[tuple[str, str]]:
    lines = []
    for label, key in PARTS:
        value = getattr(totals, key)
        if not training and key not in ("weight_bytes", "activation_bytes", "peak_bytes"):
            continue
        if key in ("master_weight_bytes", "recompute_bytes", "step_bytes") and not value:
            continue
        text = f"{human_bytes(value)} ({value:,} B)"
        if key == "activation_bytes":
            text += ", saved for backward" if training else ", the most alive at once in one step"
        if key == "step_bytes":
            text += ", temporaries of the step beside every gradient"
        if key == "peak_bytes":
            text += (f", the most alive at once in a training step: {peak_at or 'backward or optimizer step'}"
                     if training else ", weights + activations")
        lines.append((label, text))
    return lines


class MemoryView(View["Memory"]):
    """Per block (down to `depth`) the bytes saved for backward; the step's totals under the table."""

    kind = "memory"
    columns = COLUMNS

    def __init__(self, depth: int = 1, *, names: str = "diffusers") -> None:
        self.depth, self.names = depth, names

    def rows(self, result: Memory) -> list[Line[SavedCall, int]]:
        shown = namer(result.setup, self.names)
        return [Line(call, result.totals.activation_bytes, shown) for call in result.rows(self.depth)]

    def heading(self, result: Memory) -> list[str]:
        mode = "training step" if result.training else "inference step"
        return [*super().heading(result), mode]

    def totals(self, result: Memory) -> list[tuple[str, str]]:
        lines = _totals_lines(result.totals, result.training is not None, result.peak_at)
        if result.training is not None:
            lines.insert(0, ("trainable", f"{result.totals.trainable_params:,} parameters"))
            lines += [("training", sentence) for sentence in result.training.describe()]
        return lines + [("note", note) for note in result.notes]

    def data(self, result: Memory) -> dict[str, Any]:
        """The documented JSON interface (docs/cli.md): the training choices, the totals, the modules."""
        return {
            "train": result.training is not None,
            "training": _training_dict(result.training),
            "totals": result.totals.as_dict(),
            "attention": result.attention,
            "peak_at": result.peak_at,
            "depth": self.depth,
            "modules": [{"path": call.path, **names_data(result.setup, call.path), "type": call.type,
                         "depth": call.depth, "params": call.params, "saved_bytes": call.saved_bytes,
                         "checkpointed": call.checkpointed}
                        for call in result.rows(self.depth)],
            "notes": result.notes,
        }


def _training_dict(training: Any) -> dict[str, Any] | None:
    if training is None:
        return None
    return {"optimizer": training.optimizer, "checkpointing": training.checkpointing, "mixed": training.mixed,
            "lora_rank": training.lora_rank, "lora_targets": list(training.lora_targets) if training.lora_rank
            else None, "lora_conv_rank": training.lora_conv_rank, "frozen": list(training.frozen),
            "foreach": training.foreach, "fused": training.fused}


class Point(NamedTuple):
    label: str
    totals: MemoryTotals
    budget: int | None


SWEEP_COLUMNS = (
    Column("size", "size", lambda p: p.label, style="cyan"),
    Column("activation_bytes", "activations", lambda p: human_bytes(p.totals.activation_bytes),
           value=lambda p: p.totals.activation_bytes, justify="right"),
    Column("peak_bytes", "peak", lambda p: human_bytes(p.totals.peak_bytes), value=lambda p: p.totals.peak_bytes,
           justify="right"),
    Column("fits", "fits", lambda p: "–" if p.budget is None else ("yes" if p.totals.peak_bytes <= p.budget
                                                                     else Text("no", style="bold red")),
           value=lambda p: None if p.budget is None else p.totals.peak_bytes <= p.budget),
)


class MemorySweepView(View["MemorySweep"]):
    """The peak over sizes, and the first size over the budget."""

    kind = "memory-sweep"
    columns = SWEEP_COLUMNS

    def rows(self, result: MemorySweep) -> list[Point]:
        return [Point(label, totals, result.budget) for label, totals in result.points]

    def totals(self, result: MemorySweep) -> list[tuple[str, str]]:
        if result.budget is None:
            return []
        over = result.first_over
        text = (f"crosses {human_bytes(result.budget)} at {over}" if over
                else f"every size fits in {human_bytes(result.budget)}")
        return [("budget", text)]

    def data(self, result: MemorySweep) -> dict[str, Any]:
        return {"train": result.training is not None, "training": _training_dict(result.training),
                "budget_bytes": result.budget, "first_over_budget": result.first_over,
                "points": [{"label": label, "totals": totals.as_dict()} for label, totals in result.points]}
