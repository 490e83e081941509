"""Rich tables and trees for the terminal. Knows shapes, numbers and names; nothing of torch."""

from __future__ import annotations

from rich.table import Table

from unetinspect.render.units import human_count


def presets_table(rows: list[tuple[str, int, str]]) -> Table:
    table = Table(title="Built-in presets", title_justify="left")
    table.add_column("preset", style="bold cyan")
    table.add_column("parameters", justify="right")
    table.add_column("", justify="right", style="dim")
    table.add_column("what it is")
    for name, params, description in rows:
        table.add_row(name, f"{params:,}", human_count(params), description)
    return table
