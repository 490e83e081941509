"""Where the time and memory of a denoising step go: the `profile` command's work, as a library call.

`profile()` loads a source, counts FLOPs in one traced pass on the meta device (so no timed run ever carries a
FLOP counter), then times the real pass block by block (`timing.measure`). `sweep()` times the whole step over
several input sizes and/or attention backends, for a latency/throughput table. Both turn CUDA out-of-memory into
a `RunError` that names the sizes involved, and report an attention backend that cannot run here instead of
failing on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from unetinspect.engine.hardware import DeviceInfo, describe_device
from unetinspect.engine.timing import (
    BlockHooks,
    BlockTiming,
    Clock,
    Progress,
    Stats,
    StepTiming,
    WatchedCall,
    block_statistics,
    clock_for,
    measure,
    measure_memory,
    report_progress,
)
from unetinspect.engine.trace import CallRecord, Trace, trace_model
from unetinspect.errors import LongRunWarning, OptionsError, RunError
from unetinspect.families import Sizes
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.live import left_as_found
from unetinspect.sources.open import open_session
from unetinspect.sources.session import AUTO_DTYPE, Session, Setup, SourceOrModel, dtype_name
from unetinspect.views.branches import Branches, branch_costs

DEFAULT_WARMUP = 2
DEFAULT_REPEAT = 10
COMPILE_BACKEND = "inductor"  # what `compile=True` means; tests use "eager", which compiles in milliseconds
STEP_RANGE = "unet step"  # the named range around the whole forward pass in a Chrome trace
NOISY_SPREAD = 1.5  # p90 over p10 of the step beyond which the figures come with a warning
DEFAULT_MAX_SECONDS = 600.0  # the longest a profile or sweep is estimated to run before it is refused
ANNOUNCE_SECONDS = 10.0  # an estimate beyond this is said (a LongRunWarning) before the runs start

ATTENTION_BACKENDS = {
    "math": SDPBackend.MATH,
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
}
AUTO = "auto"  # torch picks the backend per call, as it does without `sdpa_kernel`
ALL = "all"
ATTENTION_CHOICES = (AUTO, *ATTENTION_BACKENDS, ALL)


ProfileMode = Literal["step", "sweep", "branches"]


def profile_mode(*, sweep: bool = False, attention: str = "auto", compile: bool = False, chrome_trace: bool = False,
                 branches: bool = False, controlnets: tuple[object, ...] = ()) -> ProfileMode:
    """Which profile a set of options asks for — one step block by block, a sweep of whole steps over sizes or
    backends, or the shallow branches' latency — refusing the options that cannot go together."""
    comparing = sweep or attention == "all"
    if branches and (comparing or compile or chrome_trace or controlnets):
        raise OptionsError("branch latencies come from one profile of the UNet's layers: leave out --sweep, "
                           "--attention all, --compile, --trace and --controlnet")
    if chrome_trace and comparing:
        raise OptionsError("a trace records one profile: leave out --sweep and --attention all")
    return "sweep" if comparing else "branches" if branches else "step"


def profile_by_mode(
    mode: ProfileMode,
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    sizes: str | None = None,
    depth: int = 1,
    attention: str = AUTO,
    chrome_trace: bool = False,
    config: str | None = None,
    variant: str | None = None,
    allow_pickle: bool = False,
    motion_adapter: str | None = None,
    **options: Any,
) -> Profile | Sweep | Branches:
    """The profile `profile_mode` chose: one step block by block (`profile`), the whole step over `sizes` and
    backends (`sweep`), or each shallow branch's latency as the sum of its layers' (`branch_costs`). `options`
    are `profile`'s (device, dtype, warmup, repeat, max_seconds, compile, progress, impl, controlnets)."""
    source_options = {"config": config, "variant": variant, "allow_pickle": allow_pickle,
                      "motion_adapter": motion_adapter}
    if mode == "sweep":
        specs = parse_sweep(sizes, spec) if sizes is not None else [("as given", spec)]
        return sweep(source, specs, attention, **options, **source_options)
    if mode == "step":
        return profile(source, spec, depth=depth, attention=attention, chrome_trace=chrome_trace, **options,
                       **source_options)
    timed = profile(source, spec, depth=2, attention=attention, **options, **source_options)
    latencies = {row.name: row.latency.median for row in timed.blocks}
    return branch_costs(source, spec, latencies=latencies, step_ms=timed.totals.step.median, **source_options)


def attention_backends(choice: str) -> list[str]:
    """The backends a `--attention` value names: one, or with "all" every one, torch's own choice first."""
    if choice == ALL:
        return [AUTO, *ATTENTION_BACKENDS]
    if choice not in ATTENTION_CHOICES:
        raise RunError(f"unknown attention backend {choice!r}", f"use one of {', '.join(ATTENTION_CHOICES)}")
    return [choice]


def parse_sweep(text: str, base: InputSpec = InputSpec()) -> list[tuple[str, InputSpec]]:
    """"256,512,768" or "512x768,1024" (pixel sizes), "height=512,768" / "width=..." or "batch=1,2,4" →
    labelled input specs based on `base`; two axes joined by ";" ("height=512,1024;batch=1,4") give every pair."""
    axes = [part for part in text.split(";") if part.strip()]
    if len(axes) > 1:
        points = [("", base)]
        for axis in axes:
            points = [(f"{label}, {more}" if label else more, spec) for label, first in points
                      for more, spec in _parse_axis(axis, first, text)]
        return points
    return _parse_axis(text, base, text)


def _parse_axis(text: str, base: InputSpec, whole: str) -> list[tuple[str, InputSpec]]:
    key, sep, values = text.partition("=")
    key = key.strip().lower() if sep else "size"
    items = [item.strip() for item in (values if sep else text).split(",") if item.strip()]
    if key not in ("size", "batch", "height", "width") or not items:
        raise RunError(f"cannot read --sweep {whole!r}", "give sizes (--sweep 256,512,768 or 512x768,1024), "
                       "heights or widths (--sweep height=512,768), batch sizes (--sweep batch=1,2,4), or two "
                       "of them joined by ; (--sweep 'height=512,1024;batch=1,4')")
    try:
        if key == "batch":
            return [(f"batch {n}", dataclasses.replace(base, batch=n)) for n in map(_positive, items)]
        if key in ("height", "width"):
            return [(f"{key} {n}", dataclasses.replace(base, **{key: n})) for n in map(_positive, items)]
        sizes = [_size(item) for item in items]
        return [(f"{h}×{w}", dataclasses.replace(base, height=h, width=w)) for h, w in sizes]
    except ValueError:
        raise RunError(f"cannot read --sweep {whole!r}: give positive whole numbers, sizes as 512 or 512x768") \
            from None


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def _size(text: str) -> tuple[int, int]:
    """"512" → (512, 512); "512x768" → (512, 768), height first as in --height/--width."""
    parts = [_positive(part) for part in text.lower().split("x")]
    if len(parts) not in (1, 2):
        raise ValueError(text)
    return parts[0], parts[-1]


# ---- results ------------------------------------------------------------------------------------------------------


@dataclass
class Profile:
    """One source profiled at one input size: per-block rows, the step's totals, and what to know about them.

    `blocks` are every module call down to `depth` (1 = the blocks), parents before children, as `summary --depth`
    shows them; the step's coverage is taken over the outermost ones only, so nested rows are not counted twice.
    """

    setup: Setup
    device: DeviceInfo
    depth: int
    warmup: int
    repeat: int
    attention: str
    compiled: str | None  # the torch.compile backend, None when not compiled
    compile_s: float | None  # seconds the first (compiling) call took
    blocks: list[BlockTiming]
    totals: StepTiming
    notes: list[str]
    chrome_trace: str | None = field(default=None, repr=False)  # JSON text, when asked for
    calls: list[WatchedCall] = field(default_factory=list)  # a `watch`'s calls, one row each; empty otherwise


@dataclass(frozen=True)
class Variant:
    """One point of a sweep: an input size under an attention backend, or why it could not run."""

    label: str
    attention: str
    sizes: Sizes
    flops: int
    step: Stats | None = None
    peak_memory: int | None = None  # CUDA only
    error: str | None = None

    @property
    def images_per_s(self) -> float | None:
        return self.sizes.batch / (self.step.median / 1e3) if self.step else None

    @property
    def flops_per_s(self) -> float | None:
        return self.flops / (self.step.median / 1e3) if self.step else None


@dataclass
class Sweep:
    """Whole-step latency and throughput over several sizes and/or attention backends."""

    setup: Setup  # sized as the first point
    device: DeviceInfo
    warmup: int
    repeat: int
    compiled: str | None
    variants: list[Variant]


# ---- the work -----------------------------------------------------------------------------------------------------


@dataclass
class _Timed:
    """An opened session, what runs it (its model or the compiled form), and the clock to time it with."""

    session: Session
    info: DeviceInfo
    runner: nn.Module | Any
    compiled: str | None
    clock: Clock

    def first_call(self, inputs: dict[str, Any]) -> float:
        """One run outside the statistics: it compiles a compiled model and shows up an attention backend that
        cannot run. Returns its wall-clock seconds (the compile time, for a compiled model)."""
        start = time.perf_counter()
        with torch.inference_mode():
            self.runner(**inputs)
        self.clock.wait()
        return time.perf_counter() - start


def _open(source: SourceOrModel, spec: InputSpec, device: str | torch.device | None,
          dtype: str | torch.dtype | None, compile: bool | str, source_options: dict[str, Any]) -> _Timed:
    session = open_session(source, spec, device=device, dtype=AUTO_DTYPE if dtype is None else dtype,
                           **source_options)
    if session.device.type == "meta":
        raise RunError("cannot time a forward pass on the meta device", "use --device cpu or cuda")
    backend = (COMPILE_BACKEND if compile is True else compile) or None
    runner = torch.compile(session.model, backend=backend) if backend else session.model
    return _Timed(session, describe_device(session.device, session.dtype), runner, backend,
                  clock_for(session.device))


def flops_trace(session: Session) -> Trace:
    """The call tree and FLOPs of one pass, traced on the meta device: exact counts, no compute, no memory.
    (A live model that cannot be rebuilt from a config is traced itself, where it is.)"""
    if session.live is not None:
        return session.live.structure_trace(session.spec)
    meta = session if session.device.type == "meta" else None
    if meta is None:
        meta = open_session(session.source, session.spec, device="meta", dtype=session.dtype,
                            controlnets=session.controlnets)
    return trace_model(meta.model, meta.inputs)


def profile(
    source: SourceOrModel = None,
    spec: InputSpec = InputSpec(),
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    depth: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeat: int = DEFAULT_REPEAT,
    attention: str = AUTO,
    compile: bool | str = False,
    chrome_trace: bool = False,
    progress: Progress | None = None,
    impl: str = "ours",
    inputs: dict[str, Any] | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    **source_options: Any,
) -> Profile:
    """Time the forward pass of `source` block by block (every call down to `depth`), and the whole step without
    hooks. `dtype=None` is fp16 on CUDA and fp32 elsewhere.

    `compile` profiles a `torch.compile`d model (True: inductor; or a backend name): hooks cannot see inside
    its graph, so only the whole step is timed. `chrome_trace` also records one step with `torch.profiler`, each
    block a named range, and returns the trace's JSON text on `Profile.chrome_trace`.

    `source` may be the user's own model (`pipe.unet`, a pipeline, any `nn.Module` with `inputs=`): it is timed
    on its own device, in its own dtype, with its own weights, and left exactly as it was found (modes, hooks,
    grad flags). `impl="diffusers"` times diffusers' own class holding the same weights.

    Before the timed runs, one batch-1 run measures the device's FLOP rate; work estimated (from the step's FLOPs)
    to run past `max_seconds` is refused with the estimate (None: no limit), and past ANNOUNCE_SECONDS it is said
    in a `LongRunWarning`. At batch 1 that run is the first call, so it costs nothing extra.
    """
    if repeat < 1:
        raise RunError("--repeat must be at least 1")
    if attention == ALL:
        raise RunError("profile() takes one attention backend", "use sweep() to compare them all")
    (backend,) = attention_backends(attention)
    timed = _open(source, spec, device, dtype, compile, dict(source_options, impl=impl, inputs=inputs))
    session = timed.session
    trace = flops_trace(session)
    blocks = [] if timed.compiled else [r for r in trace.records[1:] if r.depth <= depth]
    notes = []
    if timed.compiled:
        notes.append("block hooks cannot see inside a compiled graph: only the whole step is timed")
    elif not blocks:
        notes.append(f"no module calls down to depth {depth}: only the whole step is timed")

    with _out_of_memory_as_error(timed), _attention(backend, timed), left_as_found(session.model):
        session.model.eval()
        inputs = session.inputs
        first = "compiling" if timed.compiled else "first call"
        report_progress(progress, first, 0, 1)
        rate = _measure_rate(timed, trace.flops)
        reused = rate.whole_step and not timed.compiled  # it was the first call
        runs = ((not reused) + (warmup + repeat) * (2 if blocks else 1) + (session.device.type == "cuda")
                + chrome_trace)
        _check_duration(rate, trace.flops, runs, max_seconds)
        first_s = rate.seconds if reused else timed.first_call(inputs)
        report_progress(progress, first, 1, 1)
        samples = measure(timed.runner, inputs, blocks, warmup=warmup, repeat=repeat, clock=timed.clock,
                          progress=progress)
        memory = None
        if session.device.type == "cuda":
            report_progress(progress, "memory", 0, 1)
            memory = measure_memory(timed.runner, inputs, blocks, session.device)
            report_progress(progress, "memory", 1, 1)
        trace_json = None
        if chrome_trace:
            report_progress(progress, "trace", 0, 1)
            trace_json = _chrome_trace(timed, inputs, blocks)
            report_progress(progress, "trace", 1, 1)

    rows, totals = block_statistics(samples, blocks, trace.flops, peak_flops=timed.info.peak_flops, memory=memory)
    if totals.step.p90 > NOISY_SPREAD * totals.step.p10:
        notes.append(f"the runs scattered widely (p90 is {totals.step.p90 / totals.step.p10:.1f}× p10): something "
                     "else is using the device; more --repeat, or on a CPU fewer threads (OMP_NUM_THREADS), "
                     "give steadier figures")
    return Profile(
        setup=session.setup, device=timed.info, depth=depth, warmup=warmup, repeat=repeat, attention=backend,
        compiled=timed.compiled, compile_s=first_s if timed.compiled else None, blocks=rows, totals=totals,
        notes=notes, chrome_trace=trace_json,
    )


def sweep(
    source: SourceOrModel = None,
    specs: Sequence[tuple[str, InputSpec]] = (("default", InputSpec()),),
    attention: str = AUTO,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    warmup: int = DEFAULT_WARMUP,
    repeat: int = DEFAULT_REPEAT,
    compile: bool | str = False,
    progress: Progress | None = None,
    impl: str = "ours",
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    **source_options: Any,
) -> Sweep:
    """The unhooked step at each labelled input size, under each backend `attention` names ("all": every one).

    A size that runs out of memory or a backend that cannot run is a row with its `error`, not a failure: the
    other rows are still worth having. The whole sweep is estimated and refused (or announced) as `profile` is,
    from each point's FLOPs and one batch-1 run at the first size.
    """
    if repeat < 1:
        raise RunError("--repeat must be at least 1")
    if not specs:
        raise RunError("a sweep needs at least one size")
    backends = attention_backends(attention)
    timed = _open(source, specs[0][1], device, dtype, compile, dict(source_options, impl=impl))
    for _, spec in specs:  # a bad size fails now, not after the sizes before it were timed
        timed.session.sizes_for(spec)
    points = [(label, dataclasses.replace(timed, session=timed.session.resized(spec))) for label, spec in specs]
    flops = [flops_trace(point.session).flops for _, point in points]
    try:
        rate = _measure_rate(timed, flops[0])
    except torch.OutOfMemoryError:  # not even batch 1 fits, so no point will run long: each fails as its row
        rate = None
    if rate is not None:
        _check_duration(rate, sum(flops) // len(flops), len(points) * len(backends) * (1 + warmup + repeat),
                        max_seconds)
    variants = []
    for (label, point), point_flops in zip(points, flops):
        for backend in backends:
            base = Variant(label, backend, point.session.setup.sizes, point_flops)
            variants.append(_time_variant(point, backend, base, warmup, repeat,
                                          _prefixed(progress, f"{label} · {backend} · ")))
    return Sweep(setup=timed.session.setup, device=timed.info, warmup=warmup, repeat=repeat,
                 compiled=timed.compiled, variants=variants)


def _time_variant(timed: _Timed, backend: str, base: Variant, warmup: int, repeat: int,
                  progress: Progress | None) -> Variant:
    device = timed.session.device
    cuda = device.type == "cuda"
    try:
        with _attention(backend, timed):
            inputs = timed.session.inputs
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            timed.first_call(inputs)
            samples = measure(timed.runner, inputs, [], warmup=warmup, repeat=repeat, clock=timed.clock,
                              progress=progress)
            peak = torch.cuda.max_memory_allocated(device) if cuda else None
        return dataclasses.replace(base, step=Stats.of(samples.step), peak_memory=peak)
    except torch.OutOfMemoryError as exc:
        if cuda:
            torch.cuda.empty_cache()
        return dataclasses.replace(base, error=f"out of memory: {_first_line(exc)}")
    except RunError as exc:  # an attention backend that cannot run here
        return dataclasses.replace(base, error=exc.message)


# ---- how long it will take -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rate:
    """What one unhooked batch-1 run measured on the real device: its seconds and FLOPs per second, and whether it
    was the step itself (batch 1 already, or a live model's own inputs), which then needs no first call of its own."""

    seconds: float
    flops_per_s: float
    device: str
    whole_step: bool


def _measure_rate(timed: _Timed, flops: int) -> _Rate:
    """Run the session's model once at batch 1 and take its FLOP rate.

    A step's FLOPs grow with its batch (every layer works on each sample alone), so a batch-1 run's FLOPs are
    `flops / batch`, with no second trace. At batch 1 fixed costs (kernel launches, Python) weigh most, so the
    rate is low and estimates from it err long, never short. A live model's inputs are its own: it runs as given.
    """
    session = timed.session
    batch = session.setup.sizes.batch
    one = session if batch == 1 or session.live is not None else session.resized(
        dataclasses.replace(session.spec, batch=1))
    start = time.perf_counter()
    with torch.inference_mode():
        one.model(**one.inputs)
    timed.clock.wait()
    seconds = max(time.perf_counter() - start, 1e-9)
    share = one.setup.sizes.batch / batch if one is not session else 1.0
    return _Rate(seconds, flops * share / seconds, timed.info.name, whole_step=one is session)


def estimate_forwards(session: Session, flops: int, runs: int, max_seconds: float | None, fewer: str) -> None:
    """For a view that runs a session's model `runs` times (each pass `flops`): the same estimate as profile's,
    from one batch-1 run, refused past `max_seconds` or said past ANNOUNCE_SECONDS; `fewer` names the options
    that make less work."""
    timed = _Timed(session, describe_device(session.device, session.dtype), session.model, None,
                   clock_for(session.device))
    with torch.inference_mode():
        rate = _measure_rate(timed, flops)
    _check_duration(rate, flops, runs, max_seconds, fewer)


def _check_duration(rate: _Rate, flops: int, runs: int, max_seconds: float | None,
                    fewer: str = "--batch, --repeat or --warmup") -> None:
    """Refuse work estimated to run past `max_seconds` (None: no limit) before it starts, and say an estimate
    past ANNOUNCE_SECONDS: a batch of 3000 on a CPU must not run for hours without a word."""
    step_s = flops / rate.flops_per_s
    total = step_s * runs
    what = (f"about {_duration(total)}: {runs} runs of about {_duration(step_s)} ({flops / 1e9:,.1f} GFLOPs at "
            f"the {rate.flops_per_s / 1e9:,.2f} GFLOP/s a batch-1 run reached on {rate.device})")
    if max_seconds is not None and total > max_seconds:
        raise RunError(f"this would run {what}, over the limit of {_duration(max_seconds)}",
                       f"lower {fewer}, or pass --max-seconds {math.ceil(total * 1.5)} "
                       "to go on")
    if total > ANNOUNCE_SECONDS:
        warnings.warn(f"this will run {what}", LongRunWarning, stacklevel=3)


def _duration(seconds: float) -> str:
    """3.2 s, 4.5 min, 2.1 h: an estimate's size at a glance."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


# ---- attention backends -------------------------------------------------------------------------------------------

# What torch says when the chosen SDPA backends cannot run a call (the wording changed across versions).
_NO_KERNEL = ("No viable backend for scaled_dot_product_attention", "No available kernel")


@contextlib.contextmanager
def _attention(backend: str, timed: _Timed) -> Iterator[None]:
    """Restrict SDPA to one backend (none for "auto"); a backend that cannot run becomes a `RunError`."""
    if backend == AUTO:
        yield
        return
    try:
        with sdpa_kernel(ATTENTION_BACKENDS[backend]):
            yield
    except RuntimeError as exc:
        if isinstance(exc, torch.OutOfMemoryError) or not any(s in str(exc) for s in _NO_KERNEL):
            raise
        raise RunError(f"attention backend {backend!r} is not available on {timed.session.device.type} for "
                       f"{dtype_name(timed.session.dtype)} with these shapes",
                       "see which ones work with --attention all") from None


# ---- out of memory ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _out_of_memory_as_error(timed: _Timed) -> Iterator[None]:
    try:
        yield
    except torch.OutOfMemoryError as exc:
        if timed.session.device.type == "cuda":
            torch.cuda.empty_cache()
        raise RunError(_oom_message(timed, exc), _oom_hint(timed.session)) from None


def _oom_message(timed: _Timed, exc: BaseException) -> str:
    session = timed.session
    sizes = session.setup.sizes
    size = "×".join(map(str, sizes.pixels)) + " px" if sizes.pixels else "latent " + "×".join(map(str, sizes.latent))
    weights = sum(p.numel() * p.element_size() for p in session.model.parameters())
    capacity = f" of {timed.info.total_memory / 2**30:.1f} GiB" if timed.info.total_memory else ""
    return (f"out of memory on {timed.info.name}{capacity} running batch {sizes.batch} at {size} "
            f"in {dtype_name(session.dtype)} (weights {weights / 2**30:.2f} GiB): {_first_line(exc)}")


def _oom_hint(session: Session) -> str:
    smaller = "a smaller --batch" if session.setup.sizes.batch > 1 else "smaller --height/--width"
    return f"try {smaller}" + (", or --dtype fp16" if session.dtype == torch.float32 else "")


# ---- Chrome trace -------------------------------------------------------------------------------------------------


def _chrome_trace(timed: _Timed, inputs: dict[str, Any], blocks: Sequence[CallRecord]) -> str:
    """One step under `torch.profiler`, each block a `record_function` range, as Chrome/Perfetto trace JSON."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    ranges: dict[str, Any] = {}

    def enter(name: str) -> None:
        ranges[name] = record_function(name)
        ranges[name].__enter__()

    def leave(name: str) -> None:
        ranges.pop(name).__exit__(None, None, None)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if timed.session.device.type == "cuda" else [])
    with torch.inference_mode(), torch_profile(activities=activities) as prof:
        with record_function(STEP_RANGE), BlockHooks(timed.session.model, blocks, enter, leave):
            timed.runner(**inputs)
        timed.clock.wait()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json"
        prof.export_chrome_trace(str(path))
        return path.read_text()


# ---- small helpers ------------------------------------------------------------------------------------------------


def _prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """The same progress, its phases named after the variant they belong to."""
    if progress is None:
        return None
    return lambda phase, done, total: progress(prefix + phase, done, total)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
