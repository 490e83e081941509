"""The summary view: one traced forward pass of a source, with what a reader needs around it.

On the meta device (the default) nothing is allocated or computed: shapes, parameters and FLOPs come from the
structure alone, so even SDXL is summarised in about a second. A source with weights has its safetensors
headers checked against the model (names, shapes) without reading tensor data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from unetinspect.engine.trace import CallRecord, TensorMeta, Trace, trace_model
from unetinspect.errors import OptionsError
from unetinspect.families import FamilyConfig
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.open import open_session
from unetinspect.sources.session import Session, Setup, SourceOrModel


@dataclass(frozen=True)
class Row:
    """One module call as a summary line: shapes, parameters, FLOPs, and the skip tensors it consumes."""

    path: str
    type: str
    depth: int
    inputs: list[tuple[int, ...]]
    outputs: list[tuple[int, ...]]
    params: int
    flops: int
    skips: list[tuple[str, tuple[int, ...]]]  # (producing call, shape) of feature maps from earlier blocks


@dataclass
class Summary:
    """A traced forward pass of one source, and the facts to print beside it."""

    setup: Setup
    config: FamilyConfig | None
    inputs: dict[str, tuple[int, ...]]  # the forward pass's inputs by name ("added_cond_kwargs.time_ids")
    trace: Trace

    def rows(self, depth: int = 1) -> list[Row]:
        """Every call down to `depth` (1 = blocks), parents before children, with the skips it consumes.

        A skip is a feature map (4-D input) produced by an earlier sibling call other than the one just before:
        for an up block, the residuals of the down blocks. It is found from the trace, not from the config; with
        a ControlNet's residuals added to it (a new tensor, made by an `add` the trace recorded), from the add's
        input that is the skip.
        """
        rows = []
        last_child: dict[int | None, int] = {}
        for record in self.trace.records[1:]:
            if record.depth > depth:
                continue
            previous = last_child.get(record.parent)
            last_child[record.parent] = record.index
            skips = []
            for tensor in record.inputs:
                producer = self._producer_through_adds(tensor, record)
                if (len(tensor.shape) == 4 and producer is not None and producer.parent == record.parent
                        and producer.index not in (previous, record.index)):
                    skips.append((producer.name, tensor.shape))
            rows.append(Row(
                path=record.name, type=record.type, depth=record.depth,
                inputs=[t.shape for t in record.inputs], outputs=[t.shape for t in record.outputs],
                params=record.params, flops=record.flops, skips=skips,
            ))
        return rows

    def _producer_through_adds(self, tensor: TensorMeta, record: CallRecord) -> CallRecord | None:
        """The call at `record`'s depth that made `tensor`, or, for the sum of a skip and a ControlNet residual,
        the sibling of `record` that made the skip."""
        producer = self.trace.producer_at(tensor, record.depth)
        if producer is not None or tensor.op is None or self.trace.ops[tensor.op].name != "add":
            return producer
        makers = (self.trace.producer_at(t, record.depth) for t in self.trace.ops[tensor.op].inputs)
        return next((m for m in makers if m is not None and m.parent == record.parent), None)

    @property
    def activation_bytes(self) -> int:
        """Bytes of every module output at the leaves — an upper bound on activation memory without reuse,
        and the memory a training step would keep for backward."""
        return sum(
            _nbytes(out.shape, out.dtype) for r in self.trace.records if not r.children for out in r.outputs
        )

    @property
    def peak_activation_bytes(self) -> int:
        """Largest single activation: a lower bound on the working memory of inference."""
        return max((_nbytes(o.shape, o.dtype) for r in self.trace.records for o in r.outputs), default=0)


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    count = 1
    for d in shape:
        count *= d
    return count * getattr(torch, dtype).itemsize


def step_depth(depth: int, controlnets: tuple[object, ...] | list[object] | None) -> int:
    """The depth to show: with ControlNets the step's top-level calls are the models themselves, so depth 1 (the
    default) shows their blocks, at 2."""
    return 2 if controlnets and depth == 1 else depth


def refuse_branches_with_addons(branches: bool, controlnets: object, ip_adapter: object) -> None:
    """Branches are costed on the UNet alone: an add-on with them is a usage error, not silently dropped."""
    if branches and (controlnets or ip_adapter):
        raise OptionsError("branches are costed on the UNet alone: leave out --controlnet and --ip-adapter")


def summarize(
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    device: str = "meta",
    dtype: str | torch.dtype | None = None,
    **source_options: Any,
) -> Summary:
    """Open the source (on the meta device by default) and trace one forward pass."""
    session = open_session(source, spec, device=device, dtype=dtype, **source_options)
    return summary_of(session)


def summary_of(session: Session) -> Summary:
    """The traced forward pass of an opened session."""
    # with ControlNets, the ops too: their residuals are added to the skips, and the sums are new tensors
    trace = trace_model(session.model, session.inputs, record_ops=bool(session.controlnets))
    inputs = {name: tuple(t.shape) for name, t in _flat_inputs(session.inputs)}
    return Summary(setup=session.setup, config=session.config, inputs=inputs, trace=trace)


def _flat_inputs(inputs: dict[str, Any], prefix: str = ""):
    """Every tensor of the inputs with a dotted name (GLIGEN's nest two deep: cross_attention_kwargs.gligen.boxes)."""
    for name, value in inputs.items():
        if isinstance(value, dict):
            yield from _flat_inputs(value, f"{prefix}{name}.")
        elif isinstance(value, torch.Tensor):
            yield f"{prefix}{name}", value
        elif isinstance(value, (list, tuple)):  # one conditioning image per ControlNet
            for index, tensor in enumerate(value):
                yield f"{prefix}{name}.{index}", tensor
