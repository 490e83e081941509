"""Per-module latency and memory of a forward pass, measured so that the measuring changes the pass as little as
it can, and so that what it does change is itself measured.

- Each chosen call (the calls a `Trace` shows at a depth: `conv_in`, `down_blocks.0`, ...) is timed by a clock
  marked in a forward pre-hook and a forward hook on that module only; nothing else pays for hooks.
- On CUDA the marks are CUDA events. Recording one is asynchronous, so the pass runs as it would without hooks and
  the times are the GPU's own; all events of a run are read after one synchronisation at its end. On the CPU the
  work is synchronous and `perf_counter` around a call is its latency.
- The whole step is also timed with no hooks installed at all. Unhooked and hooked runs alternate, so that drift
  (a busy machine, clocks ramping) hits both alike; `hooked / unhooked` is the price of the hooks.
- Peak memory per block (CUDA) is read in a run of its own, so that no allocator call sits in a timed run.

Works on any `nn.Module` and any `Trace` of it; FLOPs come from the trace, never from the timed runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from unetinspect.engine.trace import CallRecord, call_name

# (phase, runs done, runs in the phase): how a caller hears of progress, to draw a bar or not.
Progress = Callable[[str, int, int], None]


# ---- statistics ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """A distribution of times in milliseconds: the median to report, p10/p90 and min/max for the spread."""

    median: float
    p10: float
    p90: float
    min: float
    max: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        values = sorted(samples)
        if len(values) == 1:
            p10 = p90 = values[0]
        else:  # linear interpolation between order statistics, as numpy's default percentile
            deciles = statistics.quantiles(values, n=10, method="inclusive")
            p10, p90 = deciles[0], deciles[-1]
        return cls(statistics.median(values), p10, p90, values[0], values[-1], len(values))


# ---- clocks -------------------------------------------------------------------------------------------------------


class Clock(Protocol):
    """Takes marks during a run; `wait()` once after it, then `elapsed_ms` between any two marks."""

    def mark(self) -> Any: ...

    def wait(self) -> None: ...

    def elapsed_ms(self, start: Any, end: Any) -> float: ...


class WallClock:
    """The CPU's clock: the host runs the work, so host time between two marks is the work's latency."""

    def mark(self) -> float:
        return time.perf_counter()

    def wait(self) -> None:
        return None

    def elapsed_ms(self, start: float, end: float) -> float:
        return (end - start) * 1e3


class CudaClock:
    """CUDA events on the device's current stream: a mark is queued with the kernels, costing the host ~µs and the
    GPU nothing, and measures when the GPU reached it. Read only after `wait()` (one synchronisation a run)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def mark(self) -> torch.cuda.Event:
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        return event

    def wait(self) -> None:
        torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start: torch.cuda.Event, end: torch.cuda.Event) -> float:
        return start.elapsed_time(end)


def clock_for(device: torch.device) -> Clock:
    return CudaClock(device) if device.type == "cuda" else WallClock()


# ---- hooks around chosen calls ------------------------------------------------------------------------------------


class BlockHooks:
    """While active, calls `enter(name)` / `leave(name)` around each chosen module call of a forward pass.

    Calls are chosen as trace records: the n-th call of the module at `path` in a pass is the record with that
    path and `call == n`, named as the trace names it (`nonlinearity#2`). Hooks go on those modules only; other
    calls of a hooked module are counted and passed over. Counting restarts each time the hooks are installed,
    so install them once per forward pass — or, hooks kept over many passes (`watch`), `restart()` at each.
    `every_call_of` chooses every call of the modules at those paths as well, for a model that has no trace.
    """

    def __init__(self, model: nn.Module, blocks: Sequence[CallRecord], enter: Callable[[str], None],
                 leave: Callable[[str], None], *, every_call_of: Sequence[str] = ()) -> None:
        self.names = {(r.path, r.call): r.name for r in blocks}
        self.every_call_of = set(every_call_of)
        modules = dict(model.named_modules())
        paths = dict.fromkeys([*(path for path, _ in self.names), *every_call_of])
        self.modules = {path: modules[path] for path in paths}
        self.enter, self.leave = enter, leave
        self.calls: dict[str, int] = {}
        self.open: dict[str, str | None] = {}
        self.handles: list[Any] = []

    def __enter__(self) -> BlockHooks:
        self.restart()
        for path, module in self.modules.items():
            self.handles.append(module.register_forward_pre_hook(self._pre_hook(path)))
            self.handles.append(module.register_forward_hook(self._post_hook(path), always_call=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def restart(self) -> None:
        """Count calls from 0 again: a new forward pass begins."""
        self.calls.clear()
        self.open.clear()

    def _pre_hook(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple) -> None:
            call = self.calls.get(path, 0)
            self.calls[path] = call + 1
            chosen = path in self.every_call_of
            name = self.open[path] = call_name(path, call) if chosen else self.names.get((path, call))
            if name is not None:
                self.enter(name)

        return hook

    def _post_hook(self, path: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            name = self.open.pop(path, None)
            if name is not None:
                self.leave(name)

        return hook


# ---- timed runs ---------------------------------------------------------------------------------------------------


@dataclass
class Samples:
    """Raw times of the timed runs in ms, one value per run: what every statistic is computed from."""

    step: list[float]  # no hooks installed
    hooked_step: list[float]  # the same step, with the block hooks
    blocks: dict[str, list[float]]  # block name → its time in each hooked run
    outermost: frozenset[str] = frozenset()  # the blocks inside no other timed block (empty: all of them)

    def blocks_sum(self) -> list[float]:
        """Per hooked run, the time spent inside any block (nested blocks are inside their parent's time)."""
        outer = [times for name, times in self.blocks.items() if not self.outermost or name in self.outermost]
        return [sum(times) for times in zip(*outer)] if outer else []

    def unattributed(self) -> list[float]:
        """Per hooked run, the time inside no block: the model's own glue code, plus what the hooks cost."""
        return [step - inside for step, inside in zip(self.hooked_step, self.blocks_sum())]


def timed_call(clock: Clock, fn: Callable[[], Any]) -> float:
    """Milliseconds `fn()` takes, from marks around it, read after waiting for the device."""
    start = clock.mark()
    fn()
    end = clock.mark()
    clock.wait()
    return clock.elapsed_ms(start, end)


def measure(
    model: nn.Module,
    inputs: dict[str, Any],
    blocks: Sequence[CallRecord],
    *,
    warmup: int,
    repeat: int,
    clock: Clock,
    progress: Progress | None = None,
) -> Samples:
    """`warmup` then `repeat` rounds of one unhooked and (when `blocks` are given) one hooked run."""
    marks: dict[str, list[Any]] = {}
    hooks = BlockHooks(model, blocks, enter=lambda name: marks.__setitem__(name, [clock.mark()]),
                       leave=lambda name: marks[name].append(clock.mark()))
    top = min((r.depth for r in blocks), default=0)
    samples = Samples(step=[], hooked_step=[], blocks={r.name: [] for r in blocks},
                      outermost=frozenset(r.name for r in blocks if r.depth == top))

    def step() -> None:
        model(**inputs)

    def one_round() -> tuple[float, float | None, dict[str, float]]:
        unhooked = timed_call(clock, step)
        if not blocks:
            return unhooked, None, {}
        marks.clear()
        with hooks:
            hooked = timed_call(clock, step)
        return unhooked, hooked, {name: clock.elapsed_ms(*pair) for name, pair in marks.items()}

    with torch.inference_mode():
        for i in range(warmup):
            one_round()
            report_progress(progress, "warmup", i + 1, warmup)
        for i in range(repeat):
            unhooked, hooked, per_block = one_round()
            samples.step.append(unhooked)
            if hooked is not None:
                samples.hooked_step.append(hooked)
                for name, times in samples.blocks.items():
                    times.append(per_block.get(name, 0.0))
            report_progress(progress, "timing", i + 1, repeat)
    return samples


def report_progress(progress: Progress | None, phase: str, done: int, total: int) -> None:
    """Tell `progress`, if there is one."""
    if progress is not None:
        progress(phase, done, total)


# ---- memory (CUDA) ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockMemory:
    """Bytes allocated by torch during one block: the peak (weights and live activations included) and how far
    that peak rose above what was allocated when the block began (its own working memory)."""

    peak: int
    added: int


def measure_memory(model: nn.Module, inputs: dict[str, Any], blocks: Sequence[CallRecord],
                   device: torch.device) -> tuple[int, dict[str, BlockMemory]]:
    """The step's peak allocated bytes (one run without hooks), and each block's (one run with hooks).

    Resetting the peak counter at each block would hide the step's own peak, hence the two runs.
    """
    start: dict[str, int] = {}
    per_block: dict[str, BlockMemory] = {}

    def enter(name: str) -> None:
        torch.cuda.reset_peak_memory_stats(device)
        start[name] = torch.cuda.memory_allocated(device)

    def leave(name: str) -> None:
        peak = torch.cuda.max_memory_allocated(device)
        per_block[name] = BlockMemory(peak=peak, added=peak - start[name])

    with torch.inference_mode():
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        model(**inputs)
        step_peak = torch.cuda.max_memory_allocated(device)
        if blocks:
            with BlockHooks(model, blocks, enter, leave):
                model(**inputs)
        torch.cuda.synchronize(device)
    return step_peak, per_block


# ---- the result ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlockTiming:
    """One block's row: latency over the hooked runs, its share of the unhooked step, its FLOPs and rate."""

    name: str
    path: str
    type: str
    depth: int
    params: int
    flops: int
    latency: Stats
    share: float  # median latency over the unhooked step's median
    flops_per_s: float | None  # FLOPs over the median latency
    mfu: float | None  # flops_per_s over the device's peak for the dtype, where known
    memory: BlockMemory | None  # CUDA only


@dataclass(frozen=True)
class StepTiming:
    """The step as a whole, and how far the block rows account for it."""

    step: Stats  # no hooks installed: the figure to quote
    hooked_step: Stats | None  # with the block hooks (None when nothing was hooked, e.g. a compiled model)
    blocks_sum: Stats | None  # per hooked run, the time inside any block
    unattributed: Stats | None  # per hooked run, hooked step minus blocks: glue code and hook cost
    # The two ratios a reader checks the rows by, each the median over rounds of the ratio within a round (an
    # unhooked run and the hooked run right after it), so that a machine busier in some rounds than in others
    # cancels out instead of landing on one side.
    overhead: float | None  # hooked over unhooked step: 1.02 means the hooks made the step 2% slower
    coverage: float | None  # sum of the blocks over the unhooked step: how much of the real step the rows explain
    flops: int
    flops_per_s: float
    mfu: float | None
    peak_memory: int | None  # CUDA only


@dataclass(frozen=True)
class WatchedCall:
    """One call of a watched model inside the user's own loop (`watch`): what it was given, and how long it took.

    A pipeline with classifier-free guidance calls the UNet with the conditional and unconditional halves in one
    batch: `batch` 2 for one image."""

    index: int
    batch: int | None  # of `sample` (or the first tensor argument)
    latent: tuple[int, int] | None  # (height, width) of a 4-D `sample`
    timestep: float | None  # the first value of `timestep`, when one was passed
    ms: float


def block_statistics(
    samples: Samples,
    blocks: Sequence[CallRecord],
    total_flops: int,
    *,
    peak_flops: float | None = None,
    memory: tuple[int, dict[str, BlockMemory]] | None = None,
) -> tuple[list[BlockTiming], StepTiming]:
    """Statistics of the raw samples, with each block's FLOPs (from the trace) and rates."""
    step = Stats.of(samples.step)

    def rate(flops: int, ms: float) -> tuple[float | None, float | None]:
        if ms <= 0:
            return None, None
        per_s = flops / (ms / 1e3)
        return per_s, (per_s / peak_flops if peak_flops else None)

    rows = []
    for record in blocks:
        latency = Stats.of(samples.blocks[record.name])
        per_s, mfu = rate(record.flops, latency.median)
        rows.append(BlockTiming(
            name=record.name, path=record.path, type=record.type, depth=record.depth, params=record.params,
            flops=record.flops, latency=latency, share=latency.median / step.median, flops_per_s=per_s, mfu=mfu,
            memory=memory[1].get(record.name) if memory else None,
        ))
    step_per_s, step_mfu = rate(total_flops, step.median)
    hooked = bool(samples.hooked_step)
    in_blocks = hooked and bool(blocks)
    totals = StepTiming(
        step=step,
        hooked_step=Stats.of(samples.hooked_step) if hooked else None,
        blocks_sum=Stats.of(samples.blocks_sum()) if in_blocks else None,
        unattributed=Stats.of(samples.unattributed()) if in_blocks else None,
        overhead=_median_ratio(samples.hooked_step, samples.step) if hooked else None,
        coverage=_median_ratio(samples.blocks_sum(), samples.step) if in_blocks else None,
        flops=total_flops, flops_per_s=step_per_s or 0.0, mfu=step_mfu,
        peak_memory=memory[0] if memory else None,
    )
    return rows, totals


def _median_ratio(parts: Sequence[float], wholes: Sequence[float]) -> float:
    return statistics.median(part / whole for part, whole in zip(parts, wholes))
