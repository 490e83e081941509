"""The HTML report and the HTML comparison: one self-contained file each (CSS, JS, SVG and data inline).

The pages are Jinja templates beside this module (templates/: the page, the report, the comparison, precision's
and run's pages, the diagram and attention macros), with autoescape on: every name and label from a model or a
config is escaped by the template, never by hand. Only three things are marked `|safe` there: Graphviz's SVG
(which escapes its own text), and our own report.css and report.js. The data for the script goes in as JSON that
cannot close its <script> tag. Where `dot` is missing the report says so and shows the blocks as plain buttons
instead, so the metric colours, the tree and click-to-focus still work.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape

from unetinspect.render.colormap import COLOURS, level
from unetinspect.render.diagram_view import named
from unetinspect.render.export import write_output
from unetinspect.render.formats import FileView
from unetinspect.render.graph import INSTALL_HINT, render, svg_id
from unetinspect.render.header import setup_line
from unetinspect.render.names import namer
from unetinspect.render.report.memory_section import memory_section
from unetinspect.render.units import human_count, human_flops, shape_str
from unetinspect.views.graph import Graph

if TYPE_CHECKING:
    from unetinspect.views.attention import AttentionGrid
    from unetinspect.views.compare import Comparison
    from unetinspect.views.precision import Precision
    from unetinspect.views.report import Report

METRIC_LABELS = {"params": "parameters", "flops": "FLOPs", "activation": "activation size",
                 "saved": "saved for backward (training)", "latency": "latency"}
NO_DOT = f"Graphviz's dot program was not installed when this report was made, so it has no diagrams: {INSTALL_HINT}."


def report_html(report: Report, names: str = "diffusers") -> str:
    """The whole report page for one UNet; with `names`, its tree and diagrams name modules that way (ldm, lbw)."""
    shown = namer(report.summary.setup, names)
    summary = report.summary
    data = {
        "kind": "report",
        "metrics": [{"key": key, "label": METRIC_LABELS[key]} for key in report.metrics],
        "branches": [list(b.runs) for b in report.branches],
        "rows": [{"index": r.index, "name": r.name, "type": r.type, "depth": r.depth, "parent": r.parent,
                  "input": shape_str(r.inputs[0]) if r.inputs else "", "output": shape_str(r.outputs[0]) if r.outputs
                  else "", "params": r.params, "flops": r.flops, "activation": r.activation,
                  "latency": r.latency_ms, "saved": r.saved, **({"shown": shown(r.name)} if names != "diffusers" else {})}
                 for r in report.rows],
        "attention": attention_data(report.attention),
    }
    facts = _facts(report)
    return _render("report.html", f"{summary.setup.label} · unetinspect report", data,
                   label=summary.setup.label, setup=setup_line(summary.setup), facts=facts,
                   metrics=data["metrics"], timed="latency" in report.metrics, saved="saved" in report.metrics,
                   blocks=_diagram(named(report.blocks, names, summary.setup),
                                   [r.name for r in report.rows if r.depth == 1]),
                   branches=_branches(report, shown), attention=_attention(report.attention),
                   memory=memory_section(report.memory),
                   layers=[(name, _svg(named(graph, names, summary.setup))) for name, graph in report.layers.items()]
                   if _has_dot() else [])


def comparison_html(comparison: Comparison, graphs: tuple[Graph, Graph]) -> str:
    """Both UNets' block diagrams side by side, blocks marked added / removed / changed, the table below."""
    status: dict[str, dict[str, str]] = {"a": {}, "b": {}}
    rows = []
    for pair in comparison.pairs:
        mark = _status(pair)
        if pair.a is not None:
            status["a"][pair.a.path] = "removed" if pair.b is None else mark
        if pair.b is not None:
            status["b"][pair.b.path] = "added" if pair.a is None else mark
        rows.append(_comparison_row(pair, mark))
    sides = [{"key": key, "label": label, "setup": setup_line(summary.setup),
              "params": f"{summary.trace.total_params:,}", "flops": human_count(summary.trace.flops, "FLOPs"),
              "diagram": _diagram(graph, list(status[key]))}
             for key, label, summary, graph in (("a", comparison.a_label, comparison.a, graphs[0]),
                                                ("b", comparison.b_label, comparison.b, graphs[1]))]
    return _render("comparison.html", f"{comparison.a_label} vs {comparison.b_label} · unetinspect",
                   {"kind": "compare", "status": status}, a=sides[0], b=sides[1],
                   aligned_by=comparison.aligned_by, rows=rows)


# ---- pieces -------------------------------------------------------------------------------------------------------


def _facts(report: Report) -> list[tuple[str, str]]:
    """The setup header's facts: the totals, the step time, the notes."""
    from unetinspect.render.summary_view import SummaryView

    facts = SummaryView().totals(report.summary)
    if report.step_ms is not None:
        facts.append(("step", f"{report.step_ms:.2f} ms (median, no hooks)"))
    return facts + [("note", note) for note in report.notes]


def _branches(report: Report, shown: Callable[[str], str]) -> dict[str, Any] | None:
    """The partial-UNet costs (see views/branches.py), named as the page names modules; a click on a row shows
    the branch on the diagram."""
    if not report.branches:
        return None
    flops = report.summary.trace.flops
    timed = report.branches[0].latency_ms is not None
    rows = [{"index": b.index, "producer": shown(b.producer), "consumer": shown(b.consumer),
             "flops": human_flops(b.flops),
             "share": f"{100 * b.flops / flops:.1f}%", "macs": human_flops(b.macs_without_attention),
             "params": human_count(b.params), "latency": f"{b.latency_ms:.3f}" if timed else ""}
            for b in report.branches]
    return {"timed": timed, "rows": rows, "conventions": report.conventions}


def _attention(grid: AttentionGrid | None) -> dict[str, Any] | None:
    """Token buttons over one canvas per block: hovering a token draws its map in each (report.js)."""
    if grid is None:
        return None
    return {"title": grid.title, "tokens": grid.rows, "height": len(grid.cells[0][0]),
            "width": len(grid.cells[0][0][0]),
            "columns": [{"name": name, "peak": f"{peak:.3g}"} for name, peak in zip(grid.columns, grid.column_max)]}


def attention_data(grid: AttentionGrid | None) -> dict[str, Any] | None:
    """The maps for the script: [token][block] → the H*W values row by row, 0..255 of the block's maximum, and
    the colour of each of those levels: the PNG grid's own colour map, so a map looks the same in both."""
    if grid is None:
        return None
    maps = [[[level(v, peak) for line in cell for v in line]
             for cell, peak in zip(row, grid.column_max)] for row in grid.cells]
    return {"tokens": grid.rows, "columns": grid.columns, "maps": maps, "colours": COLOURS}


def _status(pair: Any) -> str:
    """changed: another structure, count or shape; or, with --weights, other weights in the same structure."""
    weights_moved = pair.weight_change is not None and pair.weight_change.differs
    return "changed" if pair.differs or weights_moved else "same"


def _comparison_row(pair: Any, mark: str) -> dict[str, Any]:
    def side(s: Any) -> dict[str, str] | None:
        if s is None:
            return None
        return {"path": s.path, "type": s.type, "params": human_count(s.params), "flops": human_flops(s.flops),
                "output": shape_str(s.output)}

    def delta(key: str) -> str:
        value = (getattr(pair.b, key) if pair.b else 0) - (getattr(pair.a, key) if pair.a else 0)
        return ("+" if value > 0 else "") + human_count(value) if value else "0"

    status = "added" if pair.a is None else "removed" if pair.b is None else mark
    return {"stage": pair.stage, "status": status, "a": side(pair.a), "b": side(pair.b),
            "d_params": delta("params"), "d_flops": delta("flops")}


def _has_dot() -> bool:
    return shutil.which("dot") is not None


def _diagram(graph: Graph, blocks: list[str]) -> dict[str, Any]:
    """The block diagram as inline SVG; without `dot`, the note and the blocks the page shows as buttons."""
    return {"svg": _svg(graph) if _has_dot() else None, "note": NO_DOT, "blocks": blocks}


def _svg(graph: Graph) -> str:
    """Graphviz's SVG without its XML prolog and doctype, ready to sit inside HTML (Graphviz escaped its text)."""
    text = render(graph, "svg").decode("utf-8")
    return text[text.index("<svg"):]


@lru_cache(maxsize=1)
def _environment() -> Environment:
    """The templates, autoescaped; `tojson` compact and UTF-8 (and, as always, safe inside <script>)."""
    environment = Environment(loader=PackageLoader("unetinspect.render.report", "templates"),
                              autoescape=select_autoescape(["html"]), keep_trailing_newline=True)
    environment.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "ensure_ascii": False}
    environment.filters["svg_id"] = svg_id
    return environment


def precision_html(result: Precision, rows: Sequence[Any], heading: str) -> str:
    """`precision -o precision.html`: per format the ranked blocks (`rows`, as the table shows them), each
    timestep's error a bar on a log scale from 1e-6 to the page's largest finite error; non-finite outputs marked."""
    finite = [e for row in rows for e in row.error if math.isfinite(e) and e > 0]
    top = math.log10(max(finite, default=1.0) / 1e-6) or 1.0

    def width(error: float) -> str:  # of the cell, leaving room for the number beside the bar
        share = 1.0 if not math.isfinite(error) else min(max(math.log10(max(error, 1e-6) / 1e-6) / top, 0.0), 1.0)
        return f"{70 * share:.1f}"

    def sqnr(values: Sequence[float]) -> str:
        worst = min(values, default=math.nan)
        return "∞" if worst == math.inf else f"{worst:.1f}" if math.isfinite(worst) else "–"

    def text(error: float) -> str:
        return "non-finite" if not math.isfinite(error) else f"{error:.3g}"

    formats = [{"name": fmt, "convention": result.conventions[fmt],
                "rows": [{"rank": row.rank, "block": row.block, "nonfinite": sum(row.nonfinite),
                          "sqnr": sqnr(row.sqnr_db),
                          "cells": [{"width": width(e), "text": text(e)} for e in row.error]}
                         for row in rows if row.fmt == fmt]}
               for fmt in result.formats]
    return _render("precision.html", f"{result.setup.label} · unetinspect precision", {"kind": "precision"},
                   label=result.setup.label, setup=setup_line(result.setup), heading=heading, formats=formats,
                   timesteps=[f"{t:g}" for t in result.timesteps], notes=result.notes)


def run_page(title: str, data: dict[str, Any], attention: AttentionGrid | None, **values: Any) -> str:
    """`run -o run.html` (templates/run.html) from the values render/run_view.py computes; its attention section is
    the report's, drawn over the generated image."""
    return _render("run.html", title, data, attention=_attention(attention), **values)


def _render(template: str, title: str, data: dict[str, Any], **context: Any) -> str:
    """A page: the template filled in, with our own style and script inline."""
    package = files("unetinspect.render.report")
    return _environment().get_template(template).render(
        title=title, data=data, style=package.joinpath("report.css").read_text(encoding="utf-8"),
        script=package.joinpath("report.js").read_text(encoding="utf-8"), **context)


class ReportView(FileView["Report"]):
    """The report as a view of the one output layer: one self-contained HTML file."""

    kind = "report"
    file_formats = ("html",)

    def __init__(self, *, names: str = "diffusers") -> None:
        self.names = names

    def write(self, report: Report, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        return write_output(path, report_html(report, self.names), inputs)


@dataclass(frozen=True)
class ComparisonPage:
    """Two UNets compared, with the block diagrams the page draws side by side."""

    comparison: Comparison
    graphs: tuple[Graph, Graph]


class ComparisonPageView(FileView[ComparisonPage]):
    """`compare -o diff.html`: both diagrams side by side, as one HTML file."""

    kind = "comparison page"
    file_formats = ("html",)

    def write(self, page: ComparisonPage, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        return write_output(path, comparison_html(page.comparison, page.graphs), inputs)
