"""Two traces side by side, block against block: where the parameters and FLOPs of one UNet went in the other.

Blocks are paired by path when both UNets have the same blocks (a fine-tune, diffusers' model against ours),
and by *stage* when they do not: the embeddings, `conv_in`, down level k (k = 0 at full resolution), the mid
block, up level k, and the output layers. So SD 1.5's `down_blocks.0` faces SDXL's `down_blocks.0` (both at
full resolution) and SD 1.5's `up_blocks.3` faces SDXL's `up_blocks.2` (both back at full resolution).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from unetinspect.engine.trace import CallRecord, Trace
from unetinspect.errors import RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import open_live
from unetinspect.sources.open import open_session
from unetinspect.sources.resolve import is_source_like, resolve_source
from unetinspect.sources.session import Session, SourceOrModel
from unetinspect.views.graph import Graph
from unetinspect.views.report import comparison_graphs
from unetinspect.views.summary import Summary, summary_of
from unetinspect.views.weight_change import BlockChange, weight_changes


@dataclass(frozen=True)
class Side:
    """One block of one UNet in a comparison row (None where the other UNet has no counterpart)."""

    path: str
    type: str
    params: int
    flops: int
    output: tuple[int, ...] | None
    latency_ms: float | None = None  # median, with --profile


@dataclass(frozen=True)
class Pair:
    stage: str
    a: Side | None
    b: Side | None
    weight_change: BlockChange | None = None  # with --weights: how the block's weights changed from A to B

    @property
    def differs(self) -> bool:
        if self.a is None or self.b is None:
            return True
        return (self.a.type, self.a.params, self.a.flops, self.a.output) != \
            (self.b.type, self.b.params, self.b.flops, self.b.output)


@dataclass
class Comparison:
    a: Summary
    b: Summary
    a_label: str
    b_label: str
    aligned_by: str  # "path" or "stage"
    pairs: list[Pair]
    step_ms: tuple[float, float] | None = None  # unhooked step latency of A and B, with --profile
    profile_device: str | None = None
    weight_change: dict[str, BlockChange] | None = None  # block → how its weights changed, with --weights
    graphs: tuple[Graph, Graph] | None = None  # both block diagrams, with page=True (the side-by-side HTML page)

    @property
    def identical(self) -> bool:
        """Same structure block by block (and, when compared, the same weights)."""
        return not any(p.differs for p in self.pairs) and not self.weights_differ

    @property
    def weights_differ(self) -> list[str]:
        """The blocks whose weights differ (empty without --weights)."""
        return [block for block, change in (self.weight_change or {}).items() if change.differs]

    def where_params_went(self, top: int = 3) -> list[tuple[str, int, float]]:
        """The stages that account for most of the parameter difference: (stage, delta, share of the delta)."""
        deltas = [(p.stage, (p.b.params if p.b else 0) - (p.a.params if p.a else 0)) for p in self.pairs]
        total = self.b.trace.total_params - self.a.trace.total_params
        if total == 0:
            return []
        ranked = sorted(deltas, key=lambda item: -abs(item[1]))[:top]
        return [(stage, delta, delta / total) for stage, delta in ranked if delta]


def stage_of(record: CallRecord, num_levels: int) -> str:
    """Where a top-level call sits in the U: "down 0" is the full-resolution level on the way down."""
    parts = record.path.split(".")
    if parts[0] == "down_blocks":
        return f"down {parts[1]}"
    if parts[0] == "up_blocks":
        return f"up {num_levels - 1 - int(parts[1])}"
    if parts[0] == "mid_block":
        return "mid"
    return record.path


def _levels(trace: Trace) -> int:
    return sum(1 for r in trace.at_depth(1) if r.path.startswith("down_blocks."))


def _side(record: CallRecord, latencies: dict[str, float]) -> Side:
    return Side(record.path, record.type, record.params, record.flops,
                record.outputs[0].shape if record.outputs else None, latencies.get(record.name))


def _stage_order(stage: str) -> tuple[int, int]:
    """Embeddings, conv_in, down 0..n, mid, up n..0, output layers — the order data flows."""
    kind, _, level = stage.partition(" ")
    if kind == "down":
        return 2, int(level)
    if kind == "mid":
        return 3, 0
    if kind == "up":
        return 4, -int(level)
    if stage == "conv_in":
        return 1, 0
    if stage.startswith("conv_"):
        return 5, 0
    return 0, 0


def align(a: Trace, b: Trace, a_latencies: dict[str, float] | None = None,
          b_latencies: dict[str, float] | None = None) -> tuple[str, list[Pair]]:
    """Pair the top-level calls of two traces: by path if both have the same ones, else by stage.

    `*_latencies` (block name → median ms, from a profile) are attached to the sides when given.
    """
    a_latencies, b_latencies = a_latencies or {}, b_latencies or {}
    a_records, b_records = a.at_depth(1), b.at_depth(1)
    if [r.name for r in a_records] == [r.name for r in b_records]:
        return "path", [Pair(r.name, _side(r, a_latencies), _side(s, b_latencies))
                        for r, s in zip(a_records, b_records)]
    a_levels, b_levels = _levels(a), _levels(b)
    a_stages = {stage_of(r, a_levels): r for r in a_records}
    b_stages = {stage_of(r, b_levels): r for r in b_records}
    stages = list(dict.fromkeys([*a_stages, *b_stages]))
    stages.sort(key=_stage_order)  # stable: keeps call order within a kind (embeddings, output layers)
    return "stage", [
        Pair(stage, _side(a_stages[stage], a_latencies) if stage in a_stages else None,
             _side(b_stages[stage], b_latencies) if stage in b_stages else None)
        for stage in stages
    ]


def _frames_where_video(spec: InputSpec, sources: tuple[SourceOrModel, SourceOrModel],
                        allow_pickle: bool) -> list[InputSpec]:
    """`--frames` sizes the video side of a comparison: an image UNet beside a video one runs without it (two
    image UNets keep it, and open_session refuses it, as every view does)."""
    video = [spec.frames is not None and _is_video(source, allow_pickle) for source in sources]
    if not any(video):
        return [spec, spec]
    return [spec if v else dataclasses.replace(spec, frames=None) for v in video]


def _is_video(source: SourceOrModel, allow_pickle: bool) -> bool:
    if isinstance(source, Session):
        config = source.config
    elif is_source_like(source):
        config = resolve_source(source, allow_pickle=allow_pickle).config
    else:  # the user's own model (open_live refuses anything that is neither)
        live = open_live(source)
        config = live.config if live is not None else None
    return getattr(config, "default_frames", None) is not None


def compare(
    a: SourceOrModel,
    b: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    impl: str = "ours",
    device: str = "meta",
    dtype: str | None = None,
    allow_pickle: bool = False,
    profile: bool = False,
    profile_device: str | None = None,
    repeat: int = 5,
    weights: bool = False,
    warmup: int | None = None,
    max_seconds: float | None = None,
    page: bool = False,
) -> Comparison:
    """Trace two sources at the same input size and pair their blocks. A source may be the user's own model.

    With `impl="diffusers"` and no `b`, the second side is diffusers' own `UNet2DConditionModel` for source `a`
    (diffusers must be installed): a block-by-block check that our model matches it. With `profile`, both
    sources are also timed block by block on `profile_device` (default: CUDA when available, else the CPU).
    With `weights`, two checkpoints of the same structure are also compared weight by weight, per block. With
    `page`, both block diagrams are drawn from the same two sessions (`Comparison.graphs`). `warmup` and
    `max_seconds` are `profile`'s, where given.
    """
    if profile and impl == "diffusers":
        raise RunError("--profile times two sources; for ours against diffusers see "
                       "benchmarks/forward_vs_diffusers.py")
    if impl not in ("ours", "diffusers"):
        raise RunError(f"unknown --impl {impl!r}", "use ours or diffusers")
    if impl == "diffusers" and b is not None:
        raise RunError("--impl diffusers compares one source with diffusers' model of it; give one source")
    if impl == "ours" and b is None:
        raise RunError("compare needs two sources (or one with --impl diffusers)")
    if weights and impl == "diffusers":
        raise RunError("--weights compares two checkpoints; give two sources")
    spec_a, spec_b = _frames_where_video(spec, (a, a if b is None else b), allow_pickle)
    first = open_session(a, spec_a, device=device, dtype=dtype, allow_pickle=allow_pickle)
    if impl == "diffusers":
        second = open_session(first.origin, spec_a, device=device, dtype=first.dtype, impl="diffusers")
        labels = (f"{first.setup.label} (unetinspect)", f"{first.setup.label} (diffusers)")
    else:
        second = open_session(b, spec_b, device=device, dtype=dtype, allow_pickle=allow_pickle)
        labels = (first.setup.label, second.setup.label)
    changes = _weight_changes(first, second) if weights else None
    a_summary, b_summary = summary_of(first), summary_of(second)
    graphs = comparison_graphs(first, second) if page else None
    if not profile:
        aligned_by, pairs = align(a_summary.trace, b_summary.trace)
        return Comparison(a_summary, b_summary, labels[0], labels[1], aligned_by, _with_changes(pairs, changes),
                          weight_change=changes, graphs=graphs)

    from unetinspect.views.profile import profile as profile_session

    timing: dict[str, Any] = {k: v for k, v in (("warmup", warmup), ("max_seconds", max_seconds)) if v is not None}
    # each side timed at the sizes it was traced at (--frames only on a video side), opened again from its origin:
    # its source, or the user's own module
    timings = [profile_session(s.origin, side_spec, device=profile_device, dtype=dtype, repeat=repeat, **timing)
               for s, side_spec in ((first, spec_a), (second, spec_b))]
    latencies = [{row.name: row.latency.median for row in t.blocks} for t in timings]
    aligned_by, pairs = align(a_summary.trace, b_summary.trace, *latencies)
    return Comparison(a_summary, b_summary, labels[0], labels[1], aligned_by, _with_changes(pairs, changes),
                      step_ms=(timings[0].totals.step.median, timings[1].totals.step.median),
                      profile_device=timings[0].device.name, weight_change=changes, graphs=graphs)


def _weight_changes(first: Session, second: Session) -> dict[str, BlockChange]:
    """Block → how B's weights differ from A's; both must be files, which a live model is not."""
    if first.source is None or second.source is None:
        raise RunError("compare --weights reads two checkpoints: a live model has no file to read",
                       "give both as files or folders")
    return {change.block: change for change in weight_changes(first.source, second.source)}


def _with_changes(pairs: list[Pair], changes: dict[str, BlockChange] | None) -> list[Pair]:
    """The pairs with their block's weight change attached (unchanged without --weights)."""
    if changes is None:
        return pairs
    return [dataclasses.replace(pair, weight_change=changes.get(pair.stage)) for pair in pairs]
