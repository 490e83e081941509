"""The shallow branches of a UNet (`summary --branches`, `profile --branches`): a table, JSON, CSV or Markdown.

Every format carries the conventions the figures follow, so that a paper's number can be checked against them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from unetinspect.render.export import csv_text, json_text, markdown_table
from unetinspect.render.header import setup_dict, setup_line
from unetinspect.render.units import human_count, human_flops, shape_str

if TYPE_CHECKING:
    from unetinspect.analysis.branches import Branch, Branches

JSON_SCHEMA_VERSION = 1
HEADER = ["branch", "skip from", "read by", "skip shape", "FLOPs", "MACs", "MACs w/o attn", "% step", "params",
          "rows", "latency ms", "% step time"]


def heading(result: Branches) -> str:
    return f"{setup_line(result.setup)} · shallow branches (everything deeper than the skip reused from a cache)"


def _share(part: float | None, whole: float | None) -> str:
    return f"{100 * part / whole:.1f}%" if part is not None and whole else "–"


def _cells(result: Branches, branch: Branch) -> list[str]:
    timed = branch.latency_ms is not None
    return [str(branch.index), branch.producer, branch.consumer, shape_str(branch.shape), human_flops(branch.flops),
            human_flops(branch.macs), human_flops(branch.macs_without_attention), _share(branch.flops, result.flops),
            human_count(branch.params), str(len(branch.runs)), f"{branch.latency_ms:.2f}" if timed else "–",
            _share(branch.latency_ms, result.step_ms) if timed else "–"]


def _columns(result: Branches, terminal: bool = False) -> list[int]:
    """Indices of HEADER to show: latency columns only with a profile; on a terminal not the skip's shape and row
    count (in the files), so that the layer names fit."""
    timed = any(b.latency_ms is not None for b in result.branches)
    hidden = {"skip shape", "rows"} if terminal else set()
    return [i for i, name in enumerate(HEADER)
            if name not in hidden and (timed or not name.startswith(("latency", "% step time")))]


def _footer(result: Branches) -> list[str]:
    lines = [f"full step: {human_count(result.flops, 'FLOPs')} = {human_count(result.macs, 'MACs')} "
             f"({human_count((result.flops - result.attention_flops) // 2, 'MACs')} without attention), "
             f"{human_count(result.params)} parameters"
             + (f", {result.step_ms:.2f} ms unhooked" if result.step_ms is not None else "")]
    return lines + [f"· {c}" for c in result.conventions]


def branches_table(result: Branches) -> Group:
    columns = _columns(result, terminal=True)
    table = Table(title=heading(result), title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
                  pad_edge=False, collapse_padding=True)
    for i in columns:
        if i in (1, 2):  # the layer names fold onto a second line before any number is cut
            table.add_column(HEADER[i], style="cyan", overflow="fold")
        else:
            table.add_column(HEADER[i], justify="left" if i == 3 else "right", no_wrap=True, min_width=len(HEADER[i]))
    for branch in result.branches:
        cells = _cells(result, branch)
        table.add_row(*[cells[i] for i in columns])
    return Group(table, Text("\n".join(_footer(result)) + "\n", style="dim"))


def branches_dict(result: Branches) -> dict[str, Any]:
    return {
        "schema": JSON_SCHEMA_VERSION, "setup": setup_dict(result.setup), "conventions": list(result.conventions),
        "full_step": {"flops": result.flops, "macs": result.macs, "attention_flops": result.attention_flops,
                      "params": result.params, "latency_ms": result.step_ms},
        "branches": [
            {"index": b.index, "skip_from": b.producer, "read_by": b.consumer, "skip_shape": list(b.shape),
             "flops": b.flops, "macs": b.macs, "attention_flops": b.attention_flops,
             "macs_without_attention": b.macs_without_attention, "share_of_step": b.flops / result.flops,
             "params": b.params, "latency_ms": b.latency_ms, "runs": list(b.runs)}
            for b in result.branches
        ],
    }


def branches_json(result: Branches) -> str:
    return json_text(branches_dict(result))


def branches_csv(result: Branches) -> str:
    return csv_text(["branch", "skip_from", "read_by", "skip_shape", "flops", "macs", "macs_without_attention",
                     "share_of_step", "params", "rows", "latency_ms"],
                    [[b.index, b.producer, b.consumer, shape_str(b.shape), b.flops, b.macs, b.macs_without_attention,
                      f"{b.flops / result.flops:.6f}", b.params, len(b.runs), b.latency_ms]
                     for b in result.branches])


def branches_markdown(result: Branches) -> str:
    columns = _columns(result)
    rows = [[f"`{c}`" if i in (1, 2) else c for i, c in enumerate(_cells(result, b))] for b in result.branches]
    table = markdown_table([HEADER[i] for i in columns], [[r[i] for i in columns] for r in rows],
                           right=[j for j, i in enumerate(columns) if i >= 4 or i == 0])
    return f"**{heading(result)}**\n\n{table}\n" + "\n".join(f"- {line.lstrip('· ')}" for line in _footer(result)) + "\n"
