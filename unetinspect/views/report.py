"""What the HTML report shows: every call of one traced pass, the diagrams to draw, and optional latencies.

The report is one file a reader opens from disk: the block diagram coloured by a metric they pick, a module
tree (blocks → layers → sub-layers) to sort and open, and each block's own layer diagram. This module gathers
the plain data for it; `render/report` turns it into HTML and never sees torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from unetinspect.engine.attention import AttentionGrid
from unetinspect.engine.trace import CallRecord, Trace, call_name
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.open import open_session
from unetinspect.sources.session import SourceOrModel
from unetinspect.views.branches import CONVENTIONS, Branch, find_branches
from unetinspect.views.graph import Graph, build_graph, trace_for_diagram
from unetinspect.views.memory import Memory, Training, memory
from unetinspect.views.summary import Summary, summary_of

METRICS = ("params", "flops", "activation", "saved", "latency")  # what a reader can colour the diagram by


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
    latency_ms: float | None = None  # median, for the calls a profile timed (blocks and their layers)
    saved: int | None = None  # with --train: bytes autograd keeps for backward in this call (its children's too)


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
    attention: AttentionGrid | None = None  # maps per token and block (`unetinspect attention -o FILE.html`)
    memory: Memory | None = None  # with --train: a training step's memory (`unetinspect memory --train`)

    @property
    def metrics(self) -> list[str]:
        timed = any(r.latency_ms is not None for r in self.rows)
        return [m for m in METRICS if (m != "latency" or timed) and (m != "saved" or self.memory is not None)]


def build_report(
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    profile: bool = False,
    device: str | None = None,
    dtype: str | None = None,
    repeat: int = 5,
    train: bool = False,
    training: Training = Training(),
    attention: str | None = None,
    warmup: int | None = None,
    max_seconds: float | None = None,
    **source_options: Any,
) -> Report:
    """Open a source on the meta device (and, with `profile`, time its layers on `device` in `dtype`, with
    `profile`'s warmup and max_seconds where given) for the report; with `train`, measure a training step's memory
    as `views.memory.memory` does (on meta, with the same choices)."""
    trained = memory(source, spec, train=True, training=training, attention=attention, **source_options) \
        if train else None
    session = open_session(source, spec, device="meta", **source_options)
    summary = summary_of(session)
    trace = trace_for_diagram(session)  # the same pass with its ops, for the diagrams' edges and the branches
    latencies: dict[str, float] = {}
    step_ms = None
    notes = []
    if profile:
        from unetinspect.views.profile import profile as profile_source

        timing: dict[str, Any] = {k: v for k, v in (("warmup", warmup), ("max_seconds", max_seconds)) if v is not None}
        timed = profile_source(source, spec, device=device, dtype=dtype, depth=2, repeat=repeat, **timing,
                               **source_options)
        latencies = {row.name: row.latency.median for row in timed.blocks}
        step_ms = timed.totals.step.median
        notes.append(f"latency: median of {repeat} runs on {timed.device.name}, blocks and layers timed with hooks")
    label = session.setup.label
    saved: dict[str, int] = {}  # by call name, as the trace names repeated calls (`nonlinearity#2`)
    seen: dict[str, int] = {}
    for call in trained.calls[1:] if trained else ():
        seen[call.path] = seen.get(call.path, -1) + 1
        saved[call_name(call.path, seen[call.path])] = call.saved_bytes
    return Report(summary=summary, rows=report_rows(trace, latencies, saved), blocks=build_graph(trace, name=label),
                  layers=layer_graphs(trace, label), step_ms=step_ms, notes=notes,
                  branches=find_branches(trace, latencies or None), memory=trained)


def report_rows(trace: Trace, latencies: dict[str, float] | None = None,
                saved: dict[str, int] | None = None) -> list[ReportRow]:
    """Every call below the model, parents first, with the latency of the calls that were timed and, from a
    training step's measurement, the bytes each path saved for backward."""
    latencies = latencies or {}
    position = {r.index: i for i, r in enumerate(trace.records[1:])}
    return [
        ReportRow(index=position[r.index], name=r.name, type=r.type, depth=r.depth,
                  parent=position.get(r.parent) if r.parent else None,
                  inputs=[t.shape for t in r.inputs], outputs=[t.shape for t in r.outputs], params=r.params,
                  flops=r.flops, activation=_output_bytes(r), latency_ms=latencies.get(r.name),
                  saved=saved.get(r.name, 0) if saved else None)
        for r in trace.records[1:]
    ]


def layer_graphs(trace: Trace, name: str) -> dict[str, Graph]:
    """Each top-level call that has layers, opened one level: what clicking a block shows."""
    return {r.name: build_graph(trace, focus=r.path, name=name, open_depth=1)
            for r in trace.at_depth(1) if r.children and r.call == 0}


def comparison_graphs(a: SourceOrModel, b: SourceOrModel,
                      spec: InputSpec = InputSpec(), **source_options: Any) -> tuple[Graph, Graph]:
    """The block diagrams of two sides; `compare` hands its own two sessions, so no source is opened twice."""
    sides = [open_session(side, spec, device="meta", **source_options) for side in (a, b)]
    graphs = [build_graph(trace_for_diagram(side), name=side.setup.label) for side in sides]
    return graphs[0], graphs[1]


def _output_bytes(record: CallRecord) -> int:
    """Bytes of the distinct tensors a call returns (a down block returns its output again as a skip)."""
    distinct = {t.key: t for t in record.outputs}.values()
    return sum(math.prod(t.shape) * getattr(torch, t.dtype).itemsize for t in distinct)
