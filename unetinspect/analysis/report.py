"""What the HTML report shows: every call of one traced pass, the diagrams to draw, and optional latencies.

The report is one file a reader opens from disk: the block diagram coloured by a metric they pick, a module
tree (blocks → layers → sub-layers) to sort and open, and each block's own layer diagram. This module gathers
the plain data for it; `render/report` turns it into HTML and never sees torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unetinspect.analysis.branches import CONVENTIONS, Branch, find_branches
from unetinspect.analysis.compare import Comparison
from unetinspect.analysis.graph import Graph, build_graph, trace_for_diagram
from unetinspect.analysis.inputs import InputSpec
from unetinspect.analysis.summary import Summary, summarize
from unetinspect.analysis.trace import CallRecord, Trace
from unetinspect.weights.sources import Source, resolve_source

METRICS = ("params", "flops", "activation", "latency")  # what a reader can colour the diagram by


@dataclass(frozen=True)
class ReportRow:
    """One module call, as the tree shows it; `parent` is the index of the enclosing row (None for blocks)."""

    index: int
    name: str
    type: str
    depth: int
    parent: int | None
    inputs: list[tuple[int, ...]]
    outputs: list[tuple[int, ...]]
    params: int
    flops: int
    activation: int  # bytes of the distinct tensors it returns
    latency_ms: float | None = None
    latency_summed: bool = False  # the sum of its timed layers, not timed itself


@dataclass
class Report:
    """One UNet as the report shows it."""

    summary: Summary
    rows: list[ReportRow]
    blocks: Graph  # the U at block level
    layers: dict[str, Graph]  # block name → that block opened one level (its resnets, transformers, resamplers)
    step_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    branches: list[Branch] = field(default_factory=list)  # the shallow branches caching methods run
    conventions: tuple[str, ...] = CONVENTIONS  # how the branches' figures are counted

    @property
    def metrics(self) -> list[str]:
        timed = any(r.latency_ms is not None for r in self.rows)
        return [m for m in METRICS if m != "latency" or timed]


def build_report(
    source: str | Path | Source | None = None,
    spec: InputSpec = InputSpec(),
    *,
    profile: bool = False,
    device: str | None = None,
    repeat: int = 5,
    **source_options: Any,
) -> Report:
    """Trace a source on the meta device (and, with `profile`, time its layers on `device`) for the report."""
    src = resolve_source(source, **source_options)
    summary = summarize(src, spec)
    trace = trace_for_diagram(src, spec)
    latencies: dict[str, float] = {}
    step_ms = None
    notes = []
    if profile:
        from unetinspect.analysis.profile import profile as profile_step

        timed = profile_step(src, spec, device=device, depth=2, repeat=repeat)
        latencies = {row.name: row.latency.median for row in timed.blocks}
        step_ms = timed.totals.step.median
        notes.append(f"latency: median of {repeat} runs on {timed.device.name}, layers timed with hooks; a block's "
                     "latency is the sum of its layers'")
    return Report(summary=summary, rows=report_rows(trace, latencies), blocks=build_graph(trace, name=src.label),
                  layers=layer_graphs(trace, src.label), step_ms=step_ms, notes=notes,
                  branches=find_branches(trace, latencies or None))


def report_rows(trace: Trace, latencies: dict[str, float] | None = None) -> list[ReportRow]:
    """Every call below the model, parents first; latencies given for some calls are summed up to their parents."""
    latencies = latencies or {}
    summed = _summed_latencies(trace, latencies)
    position = {r.index: i for i, r in enumerate(trace.records[1:])}
    return [
        ReportRow(index=position[r.index], name=r.name, type=r.type, depth=r.depth,
                  parent=position.get(r.parent) if r.parent else None,
                  inputs=[t.shape for t in r.inputs], outputs=[t.shape for t in r.outputs], params=r.params,
                  flops=r.flops, activation=_output_bytes(r), latency_ms=latencies.get(r.name, summed.get(r.index)),
                  latency_summed=r.name not in latencies and r.index in summed)
        for r in trace.records[1:]
    ]


def layer_graphs(trace: Trace, name: str) -> dict[str, Graph]:
    """Each top-level call that has layers, opened one level: what clicking a block shows."""
    return {r.name: build_graph(trace, focus=r.path, name=name, open_depth=1)
            for r in trace.at_depth(1) if r.children and r.call == 0}


def comparison_reports(comparison: Comparison) -> tuple[Graph, Graph]:
    """The block diagrams of both sides of a comparison, traced again with ops for their skip edges."""
    graphs = []
    for summary in (comparison.a, comparison.b):
        trace = trace_for_diagram(summary.source, summary.spec)
        graphs.append(build_graph(trace, name=summary.source.label))
    return graphs[0], graphs[1]


def _summed_latencies(trace: Trace, latencies: dict[str, float]) -> dict[int, float]:
    """Record index → the sum of the latencies of its timed descendants, for calls that were not timed.

    Timed rows (one profile depth) never nest, so each adds to each untimed ancestor once.
    """
    sums: dict[int, float] = {}
    for record in trace.records[1:]:
        if record.name not in latencies:
            continue
        parent = record.parent
        while parent and trace.records[parent].name not in latencies:
            sums[parent] = sums.get(parent, 0.0) + latencies[record.name]
            parent = trace.records[parent].parent
    return sums


def _output_bytes(record: CallRecord) -> int:
    """Bytes of the distinct tensors a call returns (a down block returns its output again as a skip)."""
    distinct = {t.key: t for t in record.outputs}.values()
    return sum(math.prod(t.shape) * getattr(torch, t.dtype).itemsize for t in distinct)
