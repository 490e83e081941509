"""Which blocks lose most in a lower precision: each block alone in fp16, bf16, fp8 or int8, the rest float32.

A float32 forward is the reference; then, for every block at the chosen depth and every format, that block alone
runs in the format (`engine.precision.in_format`) and the UNet's output is compared with the reference:
relative error ‖y − y_ref‖₂ / ‖y_ref‖₂ and SQNR = 20·log10(‖y_ref‖₂ / ‖y − y_ref‖₂) dB, per timestep, since a
block's sensitivity moves along the denoising loop. A block whose output holds a non-finite value has an infinite
error and is ranked first. Costs are known before anything runs: timesteps × (1 + blocks × formats) forwards,
estimated from their FLOPs and one measured batch-1 run as `profile` estimates, and refused past `max_seconds`.

The figures mean something only with real weights and real inputs: any source opens (folders, single files,
`pipe.unet`), and `inputs=` takes one call's arguments or the calls a `watch(..., record_inputs=True)` recorded
in a real loop. With random weights the output says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unetinspect.engine.precision import FORMATS, Format, in_format, parse_format
from unetinspect.engine.timing import Progress, report_progress
from unetinspect.engine.trace import CallRecord
from unetinspect.errors import RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import left_as_found, sizes_of_call
from unetinspect.sources.open import open_session
from unetinspect.sources.session import Session, Setup, SourceOrModel
from unetinspect.views.profile import DEFAULT_MAX_SECONDS, estimate_forwards, flops_trace
from unetinspect.weights.block_names import diffusers_blocks

DEFAULT_FORMATS = tuple(FORMATS)
DEFAULT_TIMESTEPS = (999.0, 500.0, 50.0)
RANDOM_WEIGHTS_NOTE = "random weights: errors show the architecture, not your model"


@dataclass
class Precision:
    """Per format, per block, one figure per timestep: `error[fmt][block]` (relative, inf where the output held a
    non-finite value), `sqnr_db[fmt][block]`, `nonfinite[fmt][block]` (non-finite values in the UNet's output)."""

    setup: Setup
    formats: list[str]
    conventions: dict[str, str]
    timesteps: list[float]
    blocks: list[str]
    error: dict[str, dict[str, list[float]]]
    sqnr_db: dict[str, dict[str, list[float]]]
    nonfinite: dict[str, dict[str, list[int]]]
    depth: int | None  # None: the blocks were named
    notes: list[str] = field(default_factory=list)

    def ranked(self, fmt: str) -> list[str]:
        """The blocks worst first in `fmt`: those with non-finite outputs, then by their largest error."""
        return sorted(self.blocks, key=lambda b: (-sum(self.nonfinite[fmt][b]), -self.worst(fmt, b)))

    def worst(self, fmt: str, block: str) -> float:
        """The block's largest relative error over the timesteps (NaN counts as infinite)."""
        return max((math.inf if math.isnan(e) else e for e in self.error[fmt][block]), default=0.0)


def parse_timesteps(text: str) -> list[float]:
    """"999,500,50" → [999.0, 500.0, 50.0]; nothing, or anything but non-negative numbers, is refused."""
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    try:
        values = [float(item) for item in items]
    except ValueError:
        values = []
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise RunError(f"cannot read --timesteps {text!r}", "give non-negative numbers, e.g. --timesteps 999,500,50")
    return values


def parse_formats(text: str | Sequence[str]) -> list[Format]:
    """"fp16,bf16" or ["fp16", "int8"] → their formats, each once; none, or an unknown one, is refused."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if str(n).strip()]
    if not names:
        raise RunError("no precision was asked for", f"give some of {', '.join(FORMATS)}, e.g. --dtypes fp16,int8")
    return list({f.name: f for f in map(parse_format, names)}.values())


def precision(
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    dtypes: str | Sequence[str] = DEFAULT_FORMATS,
    depth: int = 1,
    blocks: Sequence[str] | str | None = None,
    timesteps: Sequence[float] | str | None = None,
    inputs: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    device: str | torch.device | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    progress: Progress | None = None,
    **source_options: Any,
) -> Precision:
    """The UNet's output error with each block at `depth` (or each of `blocks`, module paths) alone in each of
    `dtypes` (fp16, bf16, fp8, int8), the rest float32, at each timestep. `blocks` may be named in any of the
    three namings (`down_blocks.1.attentions.0`, `input_blocks.4.1`, `IN04`); `dtypes`, `blocks` and `timesteps`
    may be given as the command line writes them ("fp16,bf16", "mid_block,IN04", "999,500,50").

    `inputs`: one call's keyword arguments (run at each of `timesteps`, default 999, 500, 50), or a list of them
    (`watch(..., record_inputs=True).recorded_inputs`): each at its own timestep, or with `timesteps` the
    recorded call nearest each. A live model runs where it is and must be float32; it is left exactly as found.
    """
    formats = parse_formats(dtypes)
    if isinstance(timesteps, str):  # as the command line writes them: "999,500,50"
        timesteps = parse_timesteps(timesteps)
    if isinstance(blocks, str):
        blocks = [b.strip() for b in blocks.split(",") if b.strip()]
    if timesteps is not None:
        timesteps = [float(t) for t in timesteps]
        if not timesteps or any(not math.isfinite(t) or t < 0 for t in timesteps):
            raise RunError(f"timesteps {timesteps!r} are not a list of non-negative numbers",
                           "give some, e.g. timesteps=[999, 500, 50]")
    if depth < 1:
        raise RunError(f"depth {depth} is below 1", "depth 1 tests the blocks; deeper tests their layers")
    session = _open(source, spec, device, inputs, source_options)
    calls = _calls(session, inputs, timesteps)
    trace = flops_trace(session)
    if blocks is not None:  # diffusers paths, original LDM paths or LoRA Block Weight IDs alike
        blocks = list(diffusers_blocks(blocks, session.setup.naming, (p for p, _ in session.model.named_modules())))
    chosen = tested_blocks(session.model, trace.records, depth, blocks)
    runs = len(calls) * (1 + len(chosen) * len(formats))
    estimate_forwards(session, trace.flops, runs, max_seconds, "--blocks, --dtypes or --timesteps")

    error: dict[str, dict[str, list[float]]] = {f.name: {b: [] for b in chosen} for f in formats}
    sqnr = {f.name: {b: [] for b in chosen} for f in formats}
    nonfinite: dict[str, dict[str, list[int]]] = {f.name: {b: [] for b in chosen} for f in formats}
    modules = dict(session.model.named_modules())
    done = 0
    with left_as_found(session.model), torch.no_grad():
        session.model.eval()
        for call in calls:
            reference = _output(session.model(**call)).double()
            done += 1
            report_progress(progress, "forwards", done, runs)
            for fmt in formats:
                for block in chosen:
                    with in_format(modules[block], fmt):
                        output = _output(session.model(**call)).double()
                    rel, bad = _relative_error(output, reference)
                    error[fmt.name][block].append(rel)
                    sqnr[fmt.name][block].append(-20 * math.log10(rel) if 0 < rel < math.inf else
                                                 math.inf if rel == 0 else -math.inf)
                    nonfinite[fmt.name][block].append(bad)
                    done += 1
                    report_progress(progress, "forwards", done, runs)
    notes = [RANDOM_WEIGHTS_NOTE] if session.setup.weights == "random weights" else []
    notes.append("each block alone in the format, the rest of the model float32; errors of the UNet's output "
                 "against its float32 forward")
    return Precision(
        setup=session.setup, formats=[f.name for f in formats], conventions={f.name: f.convention for f in formats},
        timesteps=[_timestep_of(call) for call in calls], blocks=chosen, error=error, sqnr_db=sqnr,
        nonfinite=nonfinite, depth=None if blocks is not None else depth, notes=notes,
    )


def _open(source: Any, spec: InputSpec, device: str | torch.device | None, inputs: Any,
          source_options: dict[str, Any]) -> Session:
    """The session in float32 (the reference), on a real device; a live model as it is (refused unless float32)."""
    try:
        session = open_session(source, spec, device=device, dtype="float32", **source_options)
    except RunError as exc:
        if "runs where it is" in exc.message:
            raise RunError(f"precision compares against a float32 forward; {exc.message.split(';')[0]}",
                           "pass a float32 copy (copy.deepcopy(unet).float()) or the model's folder") from None
        raise
    if session.device.type == "meta":
        raise RunError("precision runs real forward passes, not on the meta device", "use --device cpu or cuda")
    if inputs is not None:
        first = inputs if isinstance(inputs, Mapping) else (inputs[0] if len(inputs) else None)
        if first is None:
            raise RunError("inputs= holds no recorded call", "record some: watch(unet, record_inputs=True)")
        setup = dataclasses.replace(session.setup, sizes=sizes_of_call(dict(first)))
        session = dataclasses.replace(session, setup=setup, inputs=_on(dict(first), session))
    return session


def _calls(session: Session, inputs: Any, timesteps: list[float] | None) -> list[dict[str, Any]]:
    """The forward calls to run: the session's (or given) arguments at each timestep, or the recorded calls."""
    if inputs is None or isinstance(inputs, Mapping):
        return at_timesteps(session, timesteps or DEFAULT_TIMESTEPS)
    recorded = [_on(dict(call), session) for call in inputs]
    if timesteps is None:
        return recorded
    return [min(recorded, key=lambda call: abs(_timestep_of(call) - t)) for t in timesteps]


def at_timesteps(session: Session, timesteps: Sequence[float]) -> list[dict[str, Any]]:
    """The session's arguments once per timestep, each given as the session gives its own (tensor or number)."""
    base = session.inputs
    return [{**base, "timestep": _like(base.get("timestep"), t, session.device)} for t in timesteps]


def _like(timestep: Any, value: float, device: torch.device) -> Any:
    """`value` as the call's own timestep was given: a tensor of its dtype and shape, or a number."""
    if isinstance(timestep, torch.Tensor):
        return torch.full_like(timestep, value, device=device)
    return value


def _on(value: Any, session: Session) -> Any:
    """Recorded arguments on the session's device, their floating tensors in its dtype (float32)."""
    if isinstance(value, torch.Tensor):
        return value.to(session.device, session.dtype if value.is_floating_point() else value.dtype)
    if isinstance(value, dict):
        return {key: _on(item, session) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on(item, session) for item in value)
    return value


def _timestep_of(call: Mapping[str, Any]) -> float:
    value = call.get("timestep")
    if isinstance(value, torch.Tensor):
        return float(value.reshape(-1)[0]) if value.numel() else math.nan
    return float(value) if isinstance(value, (int, float)) else math.nan


def tested_blocks(model: nn.Module, records: list[CallRecord], depth: int,
                  named: Sequence[str] | None) -> list[str]:
    """The modules to test: the ones named, else every module called at `depth` (and shallower ones with no
    calls below them, such as conv_in at depth 2), each once, in call order."""
    modules = dict(model.named_modules())
    if named is not None:
        if not named:
            raise RunError("--blocks names no module", "give module paths, e.g. --blocks mid_block,up_blocks.1")
        unknown = [b for b in named if b not in modules or not b]
        if unknown:
            near = sorted({r.path for r in records if r.depth == 1})
            raise RunError(f"no module {unknown[0]!r} in the model",
                           f"give module paths such as {', '.join(near[:4])} (unetinspect summary --depth 2)")
        return list(dict.fromkeys(named))
    parents = {records[r.parent].path for r in records if r.parent is not None and r.depth <= depth}
    return list(dict.fromkeys(r.path for r in records[1:]
                              if r.path and (r.depth == depth or (r.depth < depth and r.path not in parents))))


def _output(result: Any) -> torch.Tensor:
    """The model's prediction from whatever it returns (a tensor, a tuple, an `...Output`)."""
    if isinstance(result, torch.Tensor):
        return result
    sample = getattr(result, "sample", None)
    if isinstance(sample, torch.Tensor):
        return sample
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], torch.Tensor):
        return result[0]
    raise RunError(f"cannot find the prediction in a {type(result).__name__}",
                   "the model should return a tensor, a tuple or an object with .sample")


def _relative_error(output: torch.Tensor, reference: torch.Tensor) -> tuple[float, int]:
    """‖y − y_ref‖₂ / ‖y_ref‖₂ in float64, inf where y holds a non-finite value; and how many it holds."""
    bad = int((~torch.isfinite(output)).sum())
    if bad:
        return math.inf, bad
    norm = float(torch.linalg.vector_norm(reference))
    diff = float(torch.linalg.vector_norm(output - reference))
    return (diff / norm if norm else (0.0 if diff == 0 else math.inf)), 0
