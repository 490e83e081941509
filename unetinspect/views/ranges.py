"""How large the numbers inside each block get, at a few timesteps: headroom under fp16, bf16 and fp8 e4m3.

People who run a UNet in float16 or quantise it to fp8 need, per block, the largest |x| any operation inside it makes
(an overflow inside a resnet is normalised away before the block returns), how far that is from each format's
largest number, the largest attention logit, and where a non-finite value first appeared. `watch(module,
ranges=True)` records exactly that inside a user's own loop (engine/ranges.py); this view runs it on any source the
session opens (preset, folder, checkpoint, config, live module) at `timesteps` — ranges grow at high noise, so a
few spread over 0..999 — and keeps every timestep's figures.

The cost is known before anything runs: one forward per timestep, and recording every operation about doubles a
step on a CPU (docs/measuring.md), so two forwards' FLOPs per timestep at the rate one batch-1 run reaches,
refused past `max_seconds` as `profile` and `precision` refuse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from unetinspect.engine.precision import FP8_MAX
from unetinspect.engine.ranges import FLOAT16_MAX, FirstNonFinite, Ranges
from unetinspect.engine.timing import Progress, report_progress
from unetinspect.engine.trace import CallRecord
from unetinspect.errors import RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import left_as_found
from unetinspect.sources.open import open_session
from unetinspect.sources.session import Session, Setup, SourceOrModel
from unetinspect.views.precision import at_timesteps, parse_timesteps
from unetinspect.views.profile import DEFAULT_MAX_SECONDS, estimate_forwards, flops_trace
from unetinspect.views.watch import Watch, watch
from unetinspect.weights.block_names import diffusers_blocks

DEFAULT_TIMESTEPS = (999.0, 500.0, 1.0)
TRAINING_STEPS = 1000  # the schedulers of SD, SDXL, IF, Kandinsky train on timesteps 0..999
# The largest finite number of each format the headroom is measured against (fp8: e4m3fn, without a scale).
LIMITS = {"fp16": FLOAT16_MAX, "bf16": float(torch.finfo(torch.bfloat16).max), "fp8": FP8_MAX}
RECORDING_COST = 2  # a step inside watch(ranges=True) against a bare one, on a CPU (docs/measuring.md)
RANDOM_WEIGHTS_NOTE = "random weights: ranges show the architecture, not your model"
FP8_NOTE = ("fp8 headroom is against e4m3's 448 without a scale; scaled fp8 (precision's) maps each tensor's "
            "absmax to 448 instead")


@dataclass
class ActivationRanges:
    """Per watched block, one figure per timestep: `max_abs[block]` (the largest |x| any operation inside it made,
    at every depth), `logit_max[block]` (its attention layers' largest |q·kᵀ·scale|, None without attention),
    `nonfinite[block]`; `first_nonfinite` says where one first appeared (its `call` indexes `timesteps`)."""

    setup: Setup
    timesteps: list[float]
    blocks: list[str]
    max_abs: dict[str, list[float]]
    logit_max: dict[str, list[float | None]]
    nonfinite: dict[str, list[int]]
    first_nonfinite: FirstNonFinite | None
    depth: int | None  # None: the blocks were named
    limits: dict[str, float] = field(default_factory=lambda: dict(LIMITS))
    notes: list[str] = field(default_factory=list)

    def largest(self, block: str) -> float:
        """The block's largest |x| over the timesteps (NaN, a tensor that held only NaNs, counts as infinite)."""
        return max((math.inf if math.isnan(x) else x for x in self.max_abs[block]), default=0.0)

    def headroom(self, fmt: str) -> dict[str, list[float]]:
        """How many times each block's largest |x| fits under `fmt`'s largest number, per timestep (below 1: it
        overflows; infinite where nothing was made; NaN where the largest |x| was not finite in the dtype run)."""
        return {block: [_headroom(self.limits[fmt], x) for x in values] for block, values in self.max_abs.items()}

    def ranked(self) -> list[str]:
        """The blocks, those holding non-finite values first, then by their largest |x|, largest first: the block
        that overflowed (infinite maximum) before those its non-finite values flowed into, however many."""
        return sorted(self.blocks, key=lambda b: (not any(self.nonfinite[b]), -self.largest(b)))


def _headroom(limit: float, largest: float) -> float:
    return math.nan if not math.isfinite(largest) else limit / largest if largest > 0 else math.inf


def activation_ranges(
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    depth: int = 1,
    blocks: Sequence[str] | str | None = None,
    timesteps: Sequence[float] | str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    inputs: dict[str, Any] | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    progress: Progress | None = None,
    **source_options: Any,
) -> ActivationRanges:
    """One forward of `source` per timestep (default 999, 500, 1) inside `watch(model, ranges=True)`: per block
    down to `depth` (or each of `blocks`, in any naming: `mid_block`, `input_blocks.4.1`, `IN04`) its largest
    |x|, its headroom under fp16, bf16 and fp8, its largest attention logit, its non-finite values.

    `dtype` is what the model runs in: float32 (default) shows how far past 65504 a block goes; fp16 makes the
    overflows real, as non-finite values with the first one located. A live model runs where and as it is, and
    is left exactly as found. `blocks`, `timesteps` may be given as the command line writes them.
    """
    timesteps = _timesteps(timesteps)
    if isinstance(blocks, str):
        blocks = [b.strip() for b in blocks.split(",") if b.strip()]
    if depth < 1:
        raise RunError(f"depth {depth} is below 1", "depth 1 watches the blocks; deeper also their layers")
    session = open_session(source, spec, device=device, dtype=dtype, inputs=inputs, **source_options)
    if session.device.type == "meta":
        raise RunError("ranges are measured on real forward passes, not on the meta device",
                       "use --device cpu or cuda")
    trace = flops_trace(session)
    called = {r.path for r in trace.records if r.path}
    named = _named_blocks(session, trace.records, blocks) if blocks is not None else None
    watched = _watch(session, trace.records, depth, named)
    estimate_forwards(session, trace.flops, RECORDING_COST * len(timesteps), max_seconds, "--timesteps or the sizes")
    with left_as_found(session.model), torch.no_grad():
        session.model.eval()
        with watched:
            for done, call in enumerate(at_timesteps(session, timesteps), 1):
                session.model(**call)
                report_progress(progress, "forwards", done, len(timesteps))
    recorded = watched.ranges()
    shown = named if named is not None else [b for b in recorded.max_abs if b in called]
    notes = [RANDOM_WEIGHTS_NOTE] if session.setup.weights == "random weights" else []
    notes += [*recorded.notes, FP8_NOTE]
    return ActivationRanges(
        setup=session.setup, timesteps=timesteps, blocks=shown,
        max_abs={b: recorded.max_abs[b] for b in shown}, logit_max={b: recorded.logit_max[b] for b in shown},
        nonfinite={b: recorded.nonfinite[b] for b in shown}, first_nonfinite=_first(recorded, shown),
        depth=None if named is not None else depth, notes=notes,
    )


def _timesteps(given: Sequence[float] | str | None) -> list[float]:
    """The timesteps to run at, each in the 1000 training steps' range 0..999."""
    values = (parse_timesteps(given) if isinstance(given, str) else
              list(DEFAULT_TIMESTEPS) if given is None else [float(t) for t in given])
    if not values:
        raise RunError("no timestep was given", "give some, e.g. --timesteps 999,500,1")
    bad = [t for t in values if not (math.isfinite(t) and 0 <= t < TRAINING_STEPS)]
    if bad:
        raise RunError(f"timestep {bad[0]:g} is outside 0..{TRAINING_STEPS - 1}",
                       "give timesteps of the denoising loop, e.g. --timesteps 999,500,1")
    return values


def _named_blocks(session: Session, records: list[CallRecord], blocks: Sequence[str]) -> list[str]:
    """`--blocks` in any naming, as the diffusers paths of modules the model calls; anything else refused."""
    if not blocks:
        raise RunError("--blocks names no module", "give module paths, e.g. --blocks mid_block,up_blocks.1")
    called = {r.path for r in records if r.path}
    named = list(diffusers_blocks(blocks, session.setup.naming, (p for p, _ in session.model.named_modules())))
    unknown = [b for b in named if b not in called]
    if unknown:
        near = sorted({r.path for r in records if r.depth == 1})
        raise RunError(f"no module {unknown[0]!r} is called in the model",
                       f"give module paths such as {', '.join(near[:4])} (unetinspect summary --depth 2)")
    return named


def _watch(session: Session, records: list[CallRecord], depth: int, named: list[str] | None) -> Watch:
    """The watch (not yet open) down to `depth`, or deep enough for every named module."""
    if named is None:
        return watch(session.model, depth, ranges=True)
    watched = watch(session.model, max(r.depth for r in records if r.path in named), ranges=True)
    unwatched = [b for b in named if b not in watched.paths]
    if unwatched:  # called from outside its parent module: deeper in the calls than in the module tree
        raise RunError(f"{unwatched[0]!r} is called from outside its parent module, so no depth watches it",
                       "name the block that calls it instead")
    return watched


def _first(recorded: Ranges, shown: list[str]) -> FirstNonFinite | None:
    """Where a non-finite value first appeared, its block the outermost shown block holding its layer, as
    `Ranges` names it (None: a layer outside every shown block, e.g. the head when only some blocks are named)."""
    first = recorded.first_nonfinite
    if first is None:
        return None
    holders = [b for b in shown if first.layer == b or first.layer.startswith(b + ".")]
    return FirstNonFinite(min(holders, key=len) if holders else None, first.call, first.layer)
