"""Per-block latency inside the user's own loop: `with watch(pipe.unet) as w: pipe(prompt)`, then `w.report()`.

`profile` times one synthetic step many times; a real denoising loop is different — classifier-free guidance
doubles the batch, schedulers pick the timesteps, other models run between the UNet calls. `watch` hooks the
live module while the `with` block is open and records every call made to it, with the machinery of `profile`
(`timing.BlockHooks`, CUDA events on CUDA and `perf_counter` on the CPU) and its result type (`Profile`), so the
same views render it. On CUDA the marks are events read only in `report()`, after the loop: nothing inside the
loop waits for the GPU. The module is never moved, converted or run by the watch itself; every hook is removed on
leaving the block, also when the loop raised.

The blocks are chosen without a trace, from the module tree: a module's call depth is its number of ancestors,
not counting `ModuleList`/`ModuleDict` containers (they are never called), which is how a trace of a UNet counts
(`down_blocks.0` at 1, `down_blocks.0.resnets.0` at 2). As in `profile`, depth `d` shows every call down to `d`,
parents before children; a module called more than once per step has one row per call (`nonlinearity#2`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unetinspect.engine.attention import AttentionOptions, AttentionRecorder
from unetinspect.engine.cache import CachePlan
from unetinspect.engine.drift import DriftRecorder
from unetinspect.engine.hardware import describe_device
from unetinspect.engine.ranges import RangeRecorder, Ranges
from unetinspect.engine.timing import BlockHooks, Samples, WatchedCall, block_statistics, clock_for
from unetinspect.engine.trace import CallRecord, named_arguments, params_per_path
from unetinspect.errors import RunError
from unetinspect.families import Sizes
from unetinspect.sources.inputs import infer_pixel_factor
from unetinspect.sources.live import config_of, impl_of, placement, sizes_of_call
from unetinspect.sources.session import Setup, dtype_name
from unetinspect.views.drift import Drift
from unetinspect.views.profile import Profile

_CONTAINERS = (nn.ModuleList, nn.ModuleDict)  # hold modules but are never called: no level of their own


@dataclass
class _Call:
    """The raw marks of one call of the watched module, read into times only after the loop."""

    sizes: Sizes
    timestep: torch.Tensor | float | None
    start: Any
    end: Any = None
    blocks: dict[str, list[Any]] = field(default_factory=dict)  # block name → [start mark, end mark]
    inputs: dict[str, Any] | None = None  # the call's arguments by name, copied, when asked to record them


class Watch:
    """Records every call of `module` (and of its parts down to `depth`) while the `with` block is open; with
    `attention`, also its attention maps (`self.attention`, an `AttentionRecorder`: one step per call); with
    `drift`, how much every watched block's output changed from one call to the next (`drift()`); with `ranges`,
    the largest numbers made inside each block (`ranges()`); with `record_inputs`, a copy of every call's
    arguments (`recorded_inputs`, e.g. for `precision(..., inputs=)`)."""

    def __init__(self, module: nn.Module, depth: int = 1, attention: bool | AttentionOptions = False,
                 drift: bool = False, *, ranges: bool = False, record_inputs: bool = False) -> None:
        if not isinstance(module, nn.Module):
            raise RunError(f"watch() takes an nn.Module (e.g. pipe.unet), not {type(module).__name__}",
                           "pass the UNet itself: watch(pipe.unet)")
        if depth < 1:
            raise RunError(f"watch depth {depth} is below 1", "depth 1 shows the blocks; deeper shows their parts")
        self.module, self.depth = module, depth
        self.label = f"{type(module).__name__} (watched)"
        self.device, self.dtype = placement(module)
        self.clock = clock_for(self.device)
        self.paths = _paths_at_depth(module, depth)
        self._blocks = BlockHooks(module, [], self._enter_block, self._leave_block, every_call_of=self.paths)
        self._maps = None
        if attention:
            self._maps = AttentionRecorder(module, AttentionOptions() if attention is True else attention)
        self._drift = DriftRecorder(module, self.paths) if drift else None
        self._ranges = RangeRecorder(module, self.paths) if ranges else None
        self.record_inputs = record_inputs
        self._handles: list[Any] = []
        self._pending: _Call | None = None
        self._done: list[_Call] = []
        self._open = False

    @property
    def attention(self) -> AttentionRecorder:
        """The attention maps of the calls: `.mean()` over them, `.at(step)` of a kept one."""
        if self._maps is None:
            raise RunError("this watch records no attention maps", "open it with watch(module, attention=True)")
        return self._maps

    @property
    def calls(self) -> int:
        """How many calls of the watched module ran to the end while the block was open."""
        return len(self._done)

    def __enter__(self) -> Watch:
        if self._open:
            raise RunError("this watch is already open", "use a new watch() for each with block")
        self._blocks.__enter__()
        try:
            self._handles = [
                self.module.register_forward_pre_hook(self._start_call, with_kwargs=True),
                self.module.register_forward_hook(self._end_call),  # not on a raising call: it is not counted
            ]
            if self._maps is not None:
                self._maps.__enter__()
            if self._drift is not None:
                self._drift.__enter__()
            if self._ranges is not None:
                self._ranges.__enter__()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        try:
            if self._ranges is not None:
                self._ranges.__exit__(*exc)
        finally:
            try:
                if self._drift is not None:
                    self._drift.__exit__(*exc)
            finally:
                if self._maps is not None:
                    self._maps.__exit__(*exc)
                self._blocks.__exit__(*exc)
        self._pending = None  # a call the loop broke out of
        self._open = False

    # ---- hooks ----------------------------------------------------------------------------------------------------

    def _start_call(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        named = named_arguments(module, args, kwargs)
        self._blocks.restart()
        self._pending = _Call(
            sizes=sizes_of_call(named),
            timestep=_timestep(named.get("timestep")),
            inputs=_copied(named) if self.record_inputs else None,
            start=self.clock.mark(),  # last: the bookkeeping above is not the call's time
        )

    def _end_call(self, module: nn.Module, args: tuple, output: Any) -> None:
        call = self._pending
        if call is not None:
            call.end = self.clock.mark()
            self._done.append(call)
            self._pending = None

    def _enter_block(self, name: str) -> None:
        if self._pending is not None:  # a block called on its own, outside a call of the module, is not counted
            self._pending.blocks[name] = [self.clock.mark()]

    def _leave_block(self, name: str) -> None:
        if self._pending is not None and name in self._pending.blocks:
            self._pending.blocks[name].append(self.clock.mark())

    # ---- the result -----------------------------------------------------------------------------------------------

    def ranges(self) -> Ranges:
        """Per block and call, the largest |x| made inside it, its non-finite values, its largest attention logit,
        and where a non-finite value first appeared (see `engine.ranges`)."""
        if self._ranges is None:
            raise RunError("this watch records no ranges", "open it with watch(module, ranges=True)")
        if self._open:
            raise RunError("watch().ranges() is read after the with block", "call it once the loop has finished")
        return self._ranges.result()

    @property
    def recorded_inputs(self) -> list[dict[str, Any]]:
        """The arguments of every finished call, by name, copied when it was made (with `record_inputs=True`)."""
        if not self.record_inputs:
            raise RunError("this watch records no inputs", "open it with watch(module, record_inputs=True)")
        return [call.inputs for call in self._done if call.inputs is not None]

    def report(self) -> Profile:
        """Per-block statistics over the recorded calls (one step = one call), and the calls one by one."""
        if self._open:
            raise RunError("watch().report() is read after the with block", "call it once the loop has finished")
        if not self._done:
            raise RunError(f"no call of the watched {type(self.module).__name__} was recorded",
                           "run the model (or the pipeline that calls it) inside the with block")
        step = self.step_times()
        per_block = self.block_times()
        blocks = self._records(list(per_block))
        top = min((r.depth for r in blocks), default=0)
        samples = Samples(step=step, hooked_step=step, blocks=per_block,
                          outermost=frozenset(r.name for r in blocks if r.depth == top))
        rows, totals = block_statistics(samples, blocks, 0)
        # Every call carried the hooks: there is no unhooked run to compare with (the cost is in measuring.md).
        totals = dataclasses.replace(totals, hooked_step=None, overhead=None)
        calls = [WatchedCall(i, c.sizes.batch, c.sizes.latent if c.sizes.latent != (0, 0) else None,
                             _timestep_value(c.timestep), ms) for i, (c, ms) in enumerate(zip(self._done, step))]
        return Profile(
            setup=self._setup(self._done[0].sizes), device=describe_device(self.device, self.dtype),
            depth=self.depth, warmup=0, repeat=len(calls), attention="auto", compiled=None, compile_s=None,
            blocks=rows, totals=totals, notes=[WATCH_NOTE], calls=calls,
        )

    def step_times(self) -> list[float]:
        """Each recorded call's time in ms, in call order."""
        self.clock.wait()  # the only synchronisation: after the loop
        return [self.clock.elapsed_ms(c.start, c.end) for c in self._done]

    def block_times(self) -> dict[str, list[float]]:
        """Block name → its time in ms in each recorded call (0 where a call did not run it): the per-step series
        `report()` takes its statistics of, as `unetinspect run` draws them."""
        self.clock.wait()
        names = list(dict.fromkeys(name for c in self._done for name in c.blocks))
        per_call = [{name: self.clock.elapsed_ms(*marks) for name, marks in c.blocks.items() if len(marks) == 2}
                    for c in self._done]
        return {name: [times.get(name, 0.0) for times in per_call] for name in names}

    def drift(self) -> Drift:
        """How much each watched block's output changed at every call against the call before (views/drift.py)."""
        if self._drift is None:
            raise RunError("this watch records no drift", "open it with watch(module, drift=True)")
        if self._open:
            raise RunError("watch().drift() is read after the with block", "call it once the loop has finished")
        if not self._done:
            raise RunError(f"no call of the watched {type(self.module).__name__} was recorded",
                           "run the model (or the pipeline that calls it) inside the with block")
        series = self._drift.read([_timestep_value(c.timestep) for c in self._done])
        return Drift(setup=self._setup(self._done[0].sizes), blocks=series.blocks, timesteps=series.timesteps,
                     rel_l1=series.rel_l1, cosine=series.cosine, held_bytes=series.held_bytes)

    def cache_plan(self, threshold: float, blocks: list[str] | None = None) -> CachePlan:
        """Block Caching's per-block schedule from the measured drift: `self.drift().cache_plan(threshold)`."""
        return self.drift().cache_plan(threshold, blocks)

    def _setup(self, sizes: Sizes) -> Setup:
        """The header of the report: the module where it is, at the sizes of its first call."""
        config = config_of(self.module)
        factor = infer_pixel_factor(config) if config is not None else None
        if factor and sizes.latent != (0, 0):
            sizes = dataclasses.replace(sizes, pixels=(sizes.latent[0] * factor, sizes.latent[1] * factor))
        return Setup(label=self.label, kind="module", model_type=type(self.module).__name__,
                     impl=impl_of(self.module), device=str(self.device), dtype=dtype_name(self.dtype), sizes=sizes,
                     weights="its own weights")

    def _records(self, names: list[str]) -> list[CallRecord]:
        """The rows' facts a trace would give (path, class, depth, parameters), FLOPs aside: none are counted."""
        modules = dict(self.module.named_modules())
        depths = _call_depths(self.module)
        params = params_per_path(self.module)
        records = []
        for index, name in enumerate(names):
            path, _, number = name.partition("#")
            records.append(CallRecord(index=index, path=path, type=type(modules[path]).__name__,
                                      depth=depths[path], parent=None, call=int(number or 1) - 1,
                                      params=params.get(path, 0)))
        return records


WATCH_NOTE = ("timed inside your own loop with the block hooks installed in every call (no unhooked run to "
              "compare with; see docs/measuring.md for what the hooks cost); FLOPs are not counted by a watch")


def watch(module: nn.Module, depth: int = 1, attention: bool | AttentionOptions = False, drift: bool = False, *,
          ranges: bool = False, record_inputs: bool = False) -> Watch:
    """Hook `module`'s calls down to `depth` and time every call made to it inside the `with` block:

        with watch(pipe.unet) as w:
            pipe("a photo of a cat", num_inference_steps=20)
        print(w.calls)           # 40 without batching CFG, 20 with (diffusers batches it: batch 2)
        profile = w.report()     # the `Profile` that `profile()` returns, plus `profile.calls`

    With `attention=True` every call's cross-attention maps are added up too (the conditional half of a
    classifier-free-guidance batch): `w.attention.mean()`; pass `AttentionOptions(keep_steps={0, 19}, ...)` to
    keep steps for `w.attention.at(step)`, pick the rows, the blocks, or self-attention.

    With `drift=True`, `w.drift()` gives every watched block's change from one call to the next (relative L1 and
    cosine; one output per block is held meanwhile) and `w.cache_plan(threshold=δ)` the per-block cache schedule
    `cache(module, plan=...)` applies. With `ranges=True`, `w.ranges()` gives per block and call the largest |x| of
    every tensor made inside it (at every depth), its non-finite values, its headroom to float16 and its largest
    attention logit. With `record_inputs=True`, `w.recorded_inputs` holds every call's arguments, to replay in
    `precision(inputs=)`.
    """
    return Watch(module, depth, attention, drift, ranges=ranges, record_inputs=record_inputs)


def _call_depths(module: nn.Module) -> dict[str, int]:
    """Each submodule's depth in the call tree: its ancestors, containers not counted."""
    modules = dict(module.named_modules())
    depths = {"": 0}
    for path in modules:
        if path:
            parent = path.rpartition(".")[0]
            depths[path] = depths[parent] + (0 if isinstance(modules[parent], _CONTAINERS) else 1)
    return depths


def _paths_at_depth(module: nn.Module, depth: int) -> list[str]:
    """The modules whose calls are rows: every one down to `depth` (containers aside), as `profile` shows them."""
    depths = _call_depths(module)
    return [path for path, sub in module.named_modules()
            if path and not isinstance(sub, _CONTAINERS) and depths[path] <= depth]


def _timestep(value: Any) -> torch.Tensor | float | None:
    """The call's timestep, kept without reading it: on CUDA `.item()` would wait for the GPU inside the loop."""
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(-1)[:1].clone() if value.numel() else None
    return float(value) if isinstance(value, (int, float)) else None


def _copied(named: dict[str, Any]) -> dict[str, Any]:
    """A call's arguments with every tensor detached and copied (on its device: no wait), nested ones too."""
    def copy(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        if isinstance(value, dict):
            return {key: copy(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(copy(item) for item in value)
        return value
    return {name: copy(value) for name, value in named.items()}


def _timestep_value(value: torch.Tensor | float | None) -> float | None:
    return float(value.item()) if isinstance(value, torch.Tensor) else value
