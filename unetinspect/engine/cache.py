"""Reusing blocks' outputs across calls of a model: the schedule (`CachePlan`) and the context that applies it.

A plan says, per block and per call of the model, whether the block runs or returns the output it stored the last
time it ran. Two ways to make one:
- `uniform_plan(module, interval, branch)`: DeepCache's uniform schedule (Ma et al. 2024) with its own branch
  numbering (`cache_branch_id`): every `interval`-th call runs whole; the calls between run only the shallow
  branch of skip connection `branch` — with block b = branch // 3 and layer l = branch % 3, the down blocks
  after b, layers l.. of down block b (its downsampler too), the mid block, and the mirror of those in the up
  path (up blocks before n−1−b, resnets and attentions before L−1−l of up block n−1−b) return their stored
  outputs. The plan repeats with period `interval`.
- `Drift.cache_plan(threshold)` (views/drift.py): Block Caching's per-block schedule from measured drift.

`BlockCache` applies a plan to the user's live module: it sets an instance `forward` on each planned block that
either calls the block's own forward (and stores its output) or returns the stored output, counting the calls of
the root to know where in the plan it is. On leaving, every `forward` is put back as it was found (the instance
attribute removed, or the one that was there restored) and the stored outputs are dropped, also when the loop
raised. Times of the root calls and of every block that ran are marked with the device's clock (CUDA events
on CUDA) and read only after the loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from unetinspect.engine.timing import Clock
from unetinspect.errors import RunError

_NO_FORWARD = object()  # a module that had no instance `forward` before the cache set one


@dataclass(frozen=True)
class CachePlan:
    """Per block, per call of the model, whether the block runs (True) or reuses its stored output (False).

    `repeat`: the lists are one period, repeated (DeepCache's uniform schedule); otherwise calls beyond them run
    every block. A block's first call always runs: there is nothing stored yet.
    """

    compute: dict[str, tuple[bool, ...]]
    description: str
    repeat: bool = False

    @property
    def blocks(self) -> list[str]:
        return list(self.compute)

    def runs(self, block: str, call: int) -> bool:
        flags = self.compute[block]
        if call < len(flags):
            return flags[call]
        return flags[call % len(flags)] if self.repeat else True


def check_threshold(threshold: float) -> None:
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not math.isfinite(threshold) \
            or threshold < 0:
        raise RunError(f"cache threshold {threshold!r} is not a number ≥ 0",
                       "give δ ≥ 0: the accumulated relative L1 change above which a block is recomputed")


def uniform_plan(module: nn.Module, interval: int, branch: int) -> CachePlan:
    """DeepCache's uniform schedule for a UNet with `down_blocks`, `mid_block` and `up_blocks` (see the module
    docstring for what `branch` reuses)."""
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        raise RunError(f"cache interval {interval!r} is not a whole number ≥ 1",
                       "give interval=N: every N-th call runs the whole UNet (1 caches nothing)")
    down, up = getattr(module, "down_blocks", None), getattr(module, "up_blocks", None)
    if not isinstance(down, nn.ModuleList) or not isinstance(up, nn.ModuleList) or len(down) != len(up):
        raise RunError(f"a {type(module).__name__} has no down_blocks and up_blocks of equal length",
                       "DeepCache's schedule caches a UNet's blocks: pass the UNet (pipe.unet), or use plan=")
    if not isinstance(branch, int) or isinstance(branch, bool) or not 0 <= branch < 3 * len(down):
        raise RunError(f"cache branch {branch!r} is out of range for {len(down)} down blocks",
                       f"give 0 ≤ branch < {3 * len(down)} (DeepCache's cache_branch_id: 3 × block + layer)")
    reused = _deepcache_reused(down, up, getattr(module, "mid_block", None) is not None, branch // 3, branch % 3)
    period = (True, *(False,) * (interval - 1))
    return CachePlan(compute={path: period for path in reused}, repeat=True,
                     description=f"DeepCache uniform, interval={interval}, branch={branch}")


def _deepcache_reused(downs: nn.ModuleList, ups: nn.ModuleList, mid: bool, block: int, layer: int) -> list[str]:
    """The outermost modules DeepCache's helper returns from its cache at a skipped step, in call order."""
    reused: list[str] = []
    for i, down in enumerate(downs):
        if i > block or (i == block and layer == 0):
            reused.append(f"down_blocks.{i}")
        elif i == block:
            resnets = len(getattr(down, "resnets", None) or [])
            reused += [f"down_blocks.{i}.{kind}.{j}" for j in range(resnets) for kind in ("resnets", "attentions")
                       if j >= layer and j < len(getattr(down, kind, None) or [])]
            reused += [f"down_blocks.{i}.downsamplers.{j}" for j in range(len(getattr(down, "downsamplers", None) or []))]
    if mid:
        reused.append("mid_block")
    for i, up in enumerate(ups):
        mirrored = len(ups) - 1 - i
        if mirrored > block:
            reused.append(f"up_blocks.{i}")
        elif mirrored == block:
            resnets = len(getattr(up, "resnets", None) or [])
            reused += [f"up_blocks.{i}.{kind}.{j}" for j in range(resnets) for kind in ("resnets", "attentions")
                       if resnets - 1 - j > layer and j < len(getattr(up, kind, None) or [])]
    return reused


class BlockCache:
    """While open, the planned blocks of `module` run or reuse their stored outputs as `plan` says, call by call."""

    def __init__(self, module: nn.Module, plan: CachePlan, clock: Clock) -> None:
        modules = dict(module.named_modules())
        missing = [b for b in plan.blocks if b not in modules]
        if missing:
            raise RunError(f"the plan names {missing[0]!r}, which {type(module).__name__} does not have",
                           "apply a plan to the module it was measured on")
        self.root, self.plan, self.clock = module, plan, clock
        self.blocks = {path: modules[path] for path in plan.blocks}
        self.call = -1
        self.call_marks: list[list[Any]] = []  # per root call: [start, end] (end missing if the call raised)
        self.block_marks: dict[str, list[tuple[Any, Any]]] = {path: [] for path in self.blocks}
        self.reused: dict[str, list[int]] = {path: [] for path in self.blocks}  # the calls where each was reused
        self._stored: dict[str, Any] = {}
        self.held = 0  # the bytes the stored outputs held when the cache was left
        self._found: dict[str, Any] = {}
        self._handles: list[Any] = []

    @property
    def held_bytes(self) -> int:
        """What the stored outputs hold (tensors found in them, shared ones once)."""
        seen: dict[int, int] = {}
        for output in self._stored.values():
            for tensor in _tensors(output):
                seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
        return sum(seen.values())

    def __enter__(self) -> BlockCache:
        try:
            self._handles = [self.root.register_forward_pre_hook(self._start_call),
                             self.root.register_forward_hook(self._end_call)]
            for path, module in self.blocks.items():
                self._found[path] = module.__dict__.get("forward", _NO_FORWARD)
                module.forward = self._forward(path, module.forward)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for path, found in self._found.items():
            module = self.blocks[path]
            if found is _NO_FORWARD:
                module.__dict__.pop("forward", None)
            else:
                module.forward = found
        self._found.clear()
        self.held = self.held_bytes
        self._stored.clear()

    def _start_call(self, module: nn.Module, args: tuple) -> None:
        self.call += 1
        self.call_marks.append([self.clock.mark()])

    def _end_call(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.call_marks[-1].append(self.clock.mark())

    def _forward(self, path: str, forward: Callable[..., Any]) -> Callable[..., Any]:
        def cached_forward(*args: Any, **kwargs: Any) -> Any:
            if self.call >= 0 and path in self._stored and not self.plan.runs(path, self.call):
                self.reused[path].append(self.call)
                return self._stored[path]
            start = self.clock.mark()
            output = forward(*args, **kwargs)
            self.block_marks[path].append((start, self.clock.mark()))
            self._stored[path] = output
            return output

        return cached_forward


def _tensors(output: Any) -> list[Any]:
    if hasattr(output, "data_ptr"):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for item in output for t in _tensors(item)]
    return []
