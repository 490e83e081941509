"""The built-in presets as a view: name, parameters, what each one is."""

from __future__ import annotations

from typing import Any

from unetinspect.render.formats import TABLE, Column, View
from unetinspect.render.units import human_count
from unetinspect.views.presets import PresetRow

COLUMNS = (
    Column("name", "preset", lambda p: p.name, style="bold cyan"),
    Column("params", "parameters", lambda p: f"{p.params:,}", value=lambda p: p.params, justify="right"),
    Column("size", "", lambda p: human_count(p.params), justify="right", style="dim", priority=1,
           formats=frozenset({TABLE})),
    Column("description", "what it is", lambda p: p.description, fold=True, min_width=24),
)


class PresetsView(View[list[PresetRow]]):
    kind = "presets"
    columns = COLUMNS

    def rows(self, presets: list[PresetRow]) -> list[PresetRow]:
        return presets

    def heading(self, presets: list[PresetRow]) -> list[str]:
        return ["Built-in presets"]

    def data(self, presets: list[PresetRow]) -> dict[str, Any]:
        return {"presets": [row._asdict() for row in presets]}
