"""Partial-UNet costs: what a DeepCache-style step costs when everything deeper than one skip is reused.

Caching methods (DeepCache, CacheQuant, learning-to-cache) run a full step now and then and, in between, only a
*shallow branch*: for skip connection k they run the conditioning, `conv_in`, the down path up to the layer
that produced skip k, and the up path from the layer that consumes it to `conv_out`; the deeper features come
from the previous step's cache. Papers count those branches with counters of their own, so their figures
rarely agree; here every branch is a set of rows of one Trace, at layer depth (resnets, transformers,
resamplers inside blocks), and its cost is the sum of those rows.

Everything is found in the trace, not in the config: a skip is a feature map an up block reads that an
earlier block on the latent's path made (its `res_hidden_states_tuple`); its producer is the layer that
returned it, its consumer the first layer of the up block whose input was computed from it (through the
`torch.cat` in the block's own code, seen because the trace records ops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unetinspect.engine.trace import CallRecord, TensorMeta, Trace
from unetinspect.errors import UnetInspectError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.open import open_session
from unetinspect.sources.session import Setup, SourceOrModel
from unetinspect.views.graph import build_graph, trace_for_diagram

LAYER_DEPTH = 2  # the rows a branch is made of: resnets, transformers and resamplers inside the blocks

CONVENTIONS = (
    "FLOPs count a multiply-add as 2; MACs = FLOPs / 2.",
    "Attention matmuls (Q·Kᵀ and softmax·V) are counted; 'MACs w/o attn' leaves them out, as counters that only "
    "see Conv/Linear layers do (DeepCache's, fvcore's).",
    "Figures are for one forward pass at the traced batch; classifier-free guidance runs the UNet on a batch of "
    "2 per image, so a CFG step costs twice the batch-1 figure (DeepCache and most papers quote per image).",
    "Norms, activations, softmax and residual adds are not counted (elementwise, memory-bound).",
)


@dataclass(frozen=True)
class Branch:
    """The shallow branch of skip connection `index` (0 = the shallowest, in the order the skips were made)."""

    index: int
    producer: str  # the layer that made the skip (conv_in, down_blocks.0.attentions.0, ...)
    consumer: str  # the layer that reads it (up_blocks.3.resnets.1, ...)
    shape: tuple[int, ...]
    runs: tuple[str, ...]  # names of the rows it runs, in call order
    flops: int
    attention_flops: int
    params: int  # parameters of the layers it runs (what a pruned copy of the branch would hold)
    latency_ms: float | None = None  # sum of the rows' median latencies, with a profile

    @property
    def macs(self) -> int:
        return self.flops // 2

    @property
    def macs_without_attention(self) -> int:
        return (self.flops - self.attention_flops) // 2


@dataclass
class Branches:
    """Every shallow branch of one traced UNet, and the full step they are a share of."""

    setup: Setup
    flops: int  # the full step
    attention_flops: int
    params: int
    branches: list[Branch]
    step_ms: float | None = None  # the unhooked step, with a profile
    conventions: tuple[str, ...] = field(default=CONVENTIONS)

    @property
    def macs(self) -> int:
        return self.flops // 2


def find_branches(trace: Trace, latencies: dict[str, float] | None = None) -> list[Branch]:
    """The shallow branch of every skip connection of a trace recorded with `record_ops=True`.

    `latencies` (row name → median ms, from a profile at depth 2) adds each branch's latency as the sum of its
    rows. A model without skips (not a UNet) has no branches.
    """
    units = trace.at_depth(LAYER_DEPTH)
    on_path = _path_blocks(trace)
    path_units = [u for u in units if _block_of(trace, u).name in on_path]
    conditioning = [u for u in units if _block_of(trace, u).name not in on_path]
    skips = sorted(_skips(trace, on_path), key=lambda s: (s[0].index, s[2]))
    branches = []
    for k, (producer, consumer, _, tensor) in enumerate(skips):
        ran = sorted(conditioning + [u for u in path_units if u.index <= producer.index or u.index >= consumer.index],
                     key=lambda u: u.index)
        branches.append(Branch(
            index=k, producer=producer.name, consumer=consumer.name, shape=tensor.shape,
            runs=tuple(u.name for u in ran), flops=sum(u.flops for u in ran),
            attention_flops=sum(attention_flops(trace, u) for u in ran),
            params=sum({u.path: u.params for u in ran}.values()),
            latency_ms=sum(latencies.get(u.name, 0.0) for u in ran) if latencies else None,
        ))
    return branches


def attention_flops(trace: Trace, record: CallRecord) -> int:
    """FLOPs of a call that ran outside any leaf layer: in a UNet, the attention products (SDPA's two matmuls).

    Every other FLOP runs inside a Conv2d or Linear leaf; attention is the one matmul a module's own code does.
    """
    inside = [record, *trace.descendants(record)]
    return sum(r.own_flops for r in inside if r.children)


def branch_costs(
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    latencies: dict[str, float] | None = None,
    step_ms: float | None = None,
    **source_options: Any,
) -> Branches:
    """Open a source on the meta device, trace it with its ops, and cost each of its shallow branches."""
    session = open_session(source, spec, device="meta", **source_options)
    trace = trace_for_diagram(session)
    branches = find_branches(trace, latencies)
    if not branches:
        raise UnetInspectError(f"{session.setup.label} has no skip connections from its down path to its up path",
                               "branches are the partial UNets of caching methods; this model has none")
    units = trace.at_depth(LAYER_DEPTH)
    return Branches(setup=session.setup, flops=trace.flops, params=trace.total_params, branches=branches,
                    attention_flops=sum(attention_flops(trace, u) for u in units), step_ms=step_ms)


# ---- finding the skips ---------------------------------------------------------------------------------------------


def _path_blocks(trace: Trace) -> set[str]:
    """Names of the top-level calls on the latent's path (conv_in … conv_out), as the diagram finds them."""
    return {node.id for node in build_graph(trace, "blocks").nodes if node.on_path}


def _block_of(trace: Trace, record: CallRecord) -> CallRecord:
    """The top-level call (depth 1) a call runs in."""
    while record.depth > 1:
        record = trace.records[record.parent or 0]  # below depth 1 every call has a parent
    return record


def _skips(trace: Trace, on_path: set[str]) -> list[tuple[CallRecord, CallRecord, int, TensorMeta]]:
    """(producer layer, consumer layer, position in the up block's inputs, tensor) of every skip connection.

    A skip is a feature-map input of a path block, other than its first (the main path), that an earlier path
    block made: the up blocks' `res_hidden_states_tuple`. Without a mid block the last down block's output is
    both an up block's main input and its last skip; naming the inputs by position keeps both.
    """
    found = []
    for block in trace.at_depth(1):
        if block.name not in on_path or not block.children:
            continue
        for position, tensor in enumerate(block.inputs[1:], start=1):
            producer = trace.producer_at(tensor, LAYER_DEPTH)
            if len(tensor.shape) != 4 or producer is None or producer.depth == 0:
                continue
            if _block_of(trace, producer).name not in on_path or producer.index >= block.index:
                continue
            consumer = _consumer(trace, block, tensor)
            if consumer is not None:
                found.append((producer, consumer, position, tensor))
    return found


def _consumer(trace: Trace, block: CallRecord, tensor: TensorMeta) -> CallRecord | None:
    """The first layer of `block` whose input was computed from `tensor` (through the block's own ops); None
    when no layer reads it (k-diffusion's up blocks are handed every skip and read only the last)."""
    for index in block.children:
        child = trace.records[index]
        if any(tensor.key in _source_keys(trace, t, block.index) for t in child.inputs):
            return child
    return None


def _source_keys(trace: Trace, tensor: TensorMeta, parent: int) -> set[int | None]:
    """The tensor's key and those of the tensors the ops of call `parent` computed it from (cat, views)."""
    keys = {tensor.key}
    if tensor.op is not None and trace.ops and trace.ops[tensor.op].parent == parent:
        for source in trace.ops[tensor.op].inputs:
            keys |= _source_keys(trace, source, parent)
    return keys
