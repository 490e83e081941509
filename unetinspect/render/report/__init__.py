"""The HTML report and the HTML comparison: one self-contained file each (CSS, JS, SVG and data inline).

The page's template, style and script are real files beside this module (page.html, report.css, report.js),
filled in here. Diagrams are Graphviz SVG; where `dot` is missing the report says so and shows the blocks as
plain buttons instead, so the metric colours, the tree and click-to-focus still work.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetinspect.render.export import write_output
from unetinspect.render.formats import FileView
from unetinspect.render.graph import INSTALL_HINT, _svg_id, render
from unetinspect.render.header import setup_line
from unetinspect.render.units import human_count, human_flops, shape_str
from unetinspect.views.graph import Graph

if TYPE_CHECKING:
    from unetinspect.views.compare import Comparison
    from unetinspect.views.report import Report

METRIC_LABELS = {"params": "parameters", "flops": "FLOPs", "activation": "activation size", "latency": "latency"}
NO_DOT = f"Graphviz's dot program was not installed when this report was made, so it has no diagrams: {INSTALL_HINT}."


def report_html(report: Report) -> str:
    """The whole report page for one UNet."""
    summary = report.summary
    metrics = [{"key": key, "label": METRIC_LABELS[key]} for key in report.metrics]
    data = {
        "kind": "report",
        "metrics": metrics,
        "branches": [list(b.runs) for b in report.branches],
        "rows": [{"index": r.index, "name": r.name, "type": r.type, "depth": r.depth, "parent": r.parent,
                  "input": shape_str(r.inputs[0]) if r.inputs else "", "output": shape_str(r.outputs[0]) if r.outputs
                  else "", "params": r.params, "flops": r.flops, "activation": r.activation,
                  "latency": r.latency_ms} for r in report.rows],
        "attention": _attention_data(report),
    }
    options = "".join(f'<option value="{m["key"]}">{escape(m["label"])}</option>' for m in metrics)
    options += '<option value="type">kind of block (the diagram\'s own colours)</option>'
    latency_header = '<th class="num" data-key="latency">latency ms</th>' if "latency" in report.metrics else ""
    layer_templates = "".join(
        f'<template id="layers:{escape(name)}">{_svg(graph)}</template>' for name, graph in report.layers.items()
    ) if _has_dot() else ""
    body = f"""
<section>
  <div class="controls">
    <label>Colour blocks by <select id="metric">{options}</select></label>
    <span class="legend" id="legend">0 <span class="ramp" style="background:linear-gradient(90deg,#fff7ec,#f16913)">
    </span> <span id="legend-max"></span> (square-root scale)</span>
    <span class="note">Click a block to open it in the tree and see its layers.</span>
  </div>
  <div class="views">
    <div class="diagram" id="diagram">{_diagram(report.blocks, [r.name for r in report.rows if r.depth == 1])}</div>
    <div><h2>Layers of the block clicked</h2><div id="layers"><p class="note">Click a block.</p></div></div>
  </div>
</section>
{_branches_section(report)}
{_attention_section(report)}
<section>
  <h2>Modules</h2>
  <p class="note">Blocks → layers → sub-layers. ▸ opens a row; a column header sorts each level (again: reverse,
  a third time: call order).</p>
  <div class="tree-wrap"><table id="tree"><thead><tr>
    <th data-key="name">module</th><th data-key="type">type</th><th>input</th><th>output</th>
    <th class="num" data-key="params">params</th><th class="num" data-key="flops">FLOPs</th>
    <th class="num" data-key="activation">activation</th>{latency_header}
  </tr></thead><tbody></tbody></table></div>
</section>
{layer_templates}"""
    return _page(f"{summary.setup.label} · unetinspect report", _setup(report), body, data)


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
    sides = "".join(
        f'<div><h2>{escape(label)}</h2><p class="heading">{escape(setup_line(summary.setup))}</p>'
        f'<div class="diagram" id="diagram-{side}">{_diagram(graph, [p for p in status[side]])}</div></div>'
        for side, label, summary, graph in (("a", comparison.a_label, comparison.a, graphs[0]),
                                            ("b", comparison.b_label, comparison.b, graphs[1]))
    )
    legend = " ".join(f'<span class="badge {s}">{s}</span>' for s in ("added", "removed", "changed", "same"))
    body = f"""
<section>
  <p>Blocks paired by {escape(comparison.aligned_by)}. {legend} — changed: another type, parameter count, FLOPs,
  output shape or (with --weights) weights. Click a row of the table to find its blocks.</p>
  <div class="sides">{sides}</div>
</section>
<section>
  <h2>Block against block</h2>
  <table id="comparison"><thead><tr><th>stage</th><th>status</th><th>{escape(comparison.a_label)}</th>
  <th class="num">params</th><th class="num">FLOPs</th><th>output</th><th>{escape(comparison.b_label)}</th>
  <th class="num">params</th><th class="num">FLOPs</th><th>output</th><th class="num">Δ params</th>
  <th class="num">Δ FLOPs</th></tr></thead><tbody>{"".join(rows)}</tbody></table>
</section>"""
    header = (f"<h1>{escape(comparison.a_label)} vs {escape(comparison.b_label)}</h1>"
              f"<p class=\"heading\">parameters {comparison.a.trace.total_params:,} vs "
              f"{comparison.b.trace.total_params:,} · FLOPs {human_count(comparison.a.trace.flops, 'FLOPs')} vs "
              f"{human_count(comparison.b.trace.flops, 'FLOPs')}</p>")
    return _page(f"{comparison.a_label} vs {comparison.b_label} · unetinspect", header, body,
                 {"kind": "compare", "status": status})


# ---- pieces -------------------------------------------------------------------------------------------------------


def _setup(report: Report) -> str:
    """The setup header: what was opened, at what sizes, and the totals."""
    from unetinspect.render.summary_view import SummaryView

    summary = report.summary
    facts = SummaryView().totals(summary)
    if report.step_ms is not None:
        facts.append(("step", f"{report.step_ms:.2f} ms (median, no hooks)"))
    facts += [("note", note) for note in report.notes]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return (f"<h1>{escape(summary.setup.label)}</h1><p class=\"heading\">{escape(setup_line(summary.setup))}</p>"
            f"<dl>{items}</dl>")


def _branches_section(report: Report) -> str:
    """The partial-UNet costs (see views/branches.py); a click on a row shows the branch on the diagram."""
    if not report.branches:
        return ""
    flops = report.summary.trace.flops
    timed = report.branches[0].latency_ms is not None
    rows = "".join(
        f'<tr data-branch="{b.index}"><td class="num">{b.index}</td><td>{escape(b.producer)}</td>'
        f"<td>{escape(b.consumer)}</td><td class=\"num\">{human_flops(b.flops)}</td>"
        f'<td class="num">{100 * b.flops / flops:.1f}%</td><td class="num">{human_flops(b.macs_without_attention)}</td>'
        f'<td class="num">{human_count(b.params)}</td>'
        + (f'<td class="num">{b.latency_ms:.3f}</td>' if timed else "") + "</tr>"
        for b in report.branches
    )
    notes = "".join(f"<li>{escape(c)}</li>" for c in report.conventions)
    return f"""
<section>
  <h2>Partial UNet: the shallow branch of each skip</h2>
  <p class="note">What a DeepCache-style step runs when everything deeper than skip k comes from the previous
  step's cache. Click a branch to see it on the diagram: blocks it skips fade, blocks it runs in part are dashed.
  Click again to clear.</p>
  <table id="branches"><thead><tr><th class="num">branch</th><th>skip from</th><th>read by</th>
  <th class="num">FLOPs</th><th class="num">% step</th><th class="num">MACs w/o attn</th><th class="num">params</th>
  {'<th class="num">latency ms</th>' if timed else ""}</tr></thead><tbody>{rows}</tbody></table>
  <ul class="note">{notes}</ul>
</section>"""


def _attention_section(report: Report) -> str:
    """Token buttons over one canvas per block: hovering a token draws its map in each (report.js)."""
    grid = report.attention
    if grid is None:
        return ""
    tokens = "".join(f'<button type="button" class="token" data-token="{i}">{escape(label)}</button>'
                     for i, label in enumerate(grid.rows))
    height, width = len(grid.cells[0][0]), len(grid.cells[0][0][0])
    figures = "".join(
        f'<figure><canvas width="{width}" height="{height}" data-column="{c}"></canvas><figcaption>'
        f'{escape(name)}<br><span class="note">max {peak:.3g}</span></figcaption></figure>'
        for c, (name, peak) in enumerate(zip(grid.columns, grid.column_max)))
    return f"""
<section id="attention">
  <h2>Attention maps</h2>
  <p class="note">{escape(grid.title)}. Hover a token to see its map in every block (each block's layers averaged
  at the latent size, each scaled to its own maximum; the last: all layers).</p>
  <div class="tokens">{tokens}</div>
  <div class="maps">{figures}</div>
</section>"""


def _attention_data(report: Report) -> dict[str, Any] | None:
    """The maps for the script: [token][block] → the H*W values row by row, 0..255 of the block's maximum."""
    grid = report.attention
    if grid is None:
        return None
    maps = [[[round(255 * v / peak) if peak > 0 else 0 for line in cell for v in line]
             for cell, peak in zip(row, grid.column_max)] for row in grid.cells]
    return {"tokens": grid.rows, "columns": grid.columns, "maps": maps}


def _status(pair: Any) -> str:
    """changed: another structure, count or shape; or, with --weights, other weights in the same structure."""
    weights_moved = pair.weight_change is not None and pair.weight_change.differs
    return "changed" if pair.differs or weights_moved else "same"


def _comparison_row(pair: Any, mark: str) -> str:
    def side(s: Any) -> str:
        if s is None:
            return '<td>–</td><td class="num">–</td><td class="num">–</td><td>–</td>'
        return (f"<td>{escape(s.path)} <span class=\"type\">{escape(s.type)}</span></td>"
                f"<td class=\"num\">{human_count(s.params)}</td><td class=\"num\">{human_flops(s.flops)}</td>"
                f"<td>{shape_str(s.output)}</td>")

    def delta(key: str) -> str:
        value = (getattr(pair.b, key) if pair.b else 0) - (getattr(pair.a, key) if pair.a else 0)
        return ("+" if value > 0 else "") + human_count(value) if value else "0"

    status = "added" if pair.a is None else "removed" if pair.b is None else mark
    return (f'<tr data-a="{escape(pair.a.path) if pair.a else ""}" data-b="{escape(pair.b.path) if pair.b else ""}">'
            f'<td>{escape(pair.stage)}</td><td><span class="badge {status}">{status}</span></td>{side(pair.a)}'
            f'{side(pair.b)}<td class="num">{delta("params")}</td><td class="num">{delta("flops")}</td></tr>')


def _has_dot() -> bool:
    return shutil.which("dot") is not None


def _diagram(graph: Graph, blocks: list[str]) -> str:
    """The block diagram as inline SVG; without `dot`, a clear note and one button per block."""
    if _has_dot():
        return _svg(graph)
    buttons = "".join(f'<button type="button" class="node" id="{escape(_svg_id(name))}">{escape(name)}</button>'
                      for name in blocks)
    return f'<p class="note">{escape(NO_DOT)}</p><div class="fallback">{buttons}</div>'


def _svg(graph: Graph) -> str:
    """Graphviz's SVG without its XML prolog and doctype, ready to sit inside HTML."""
    text = render(graph, "svg").decode("utf-8")
    return text[text.index("<svg"):]


def _page(title: str, header: str, body: str, data: dict[str, Any]) -> str:
    """The template with its slots filled; `</` in the data is escaped so it cannot close the script tag."""
    package = files("unetinspect.render.report")
    slots = {
        "title": escape(title),
        "style": package.joinpath("report.css").read_text(encoding="utf-8"),
        "header": header,
        "body": body,
        "data": json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/"),
        "script": package.joinpath("report.js").read_text(encoding="utf-8"),
    }
    page = package.joinpath("page.html").read_text(encoding="utf-8")
    for name, value in slots.items():
        page = page.replace(f"<!--slot:{name}-->", value)
    return page


class ReportView(FileView["Report"]):
    """The report as a view of the one output layer: one self-contained HTML file."""

    kind = "report"
    file_formats = ("html",)

    def write(self, report: Report, fmt: str, path: Path, inputs: Sequence[str | Path]) -> Path:
        return write_output(path, report_html(report), inputs)


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
