"""How much each block's output changes from one call of the model to the next, recorded inside the user's loop.

Caching methods (DeepCache, Block Caching, Faster Diffusion, TeaCache) rest on one observation: in a denoising
loop, many blocks return almost what they returned at the previous step. This recorder measures it for the
user's own model: a forward hook on every chosen block keeps the block's last output (its hidden state: the first
element of a tuple, over the whole batch, so both halves of a classifier-free-guidance batch) and, at every later
call, reduces the new output against it to ‖o_t − o_{t−1}‖₁ and o_t·o_{t−1}; with the norms ‖o‖₁ and ‖o‖₂ that
each output had computed at its own call, the relative L1 change (Block Caching's measure) and the cosine
similarity (DeepCache's) follow. The reductions stay on the output's device as tensors and are read only in
`read()`, after the loop: on CUDA nothing inside the loop waits for the GPU. Memory held: one copy of one output
per block, whatever the number of steps (`held_bytes`), plus six floats per block and step.

A step is one call of the root module. A block called more than once per call is named per call as a trace
names it (`nonlinearity#2`). The root module is never changed beyond its hooks, removed on leaving, also when the
loop raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unetinspect.engine.trace import call_name

# the sums of one comparison, in the order they are stacked: the change, then the new and the kept output's norms
_L1, _DOT, _NORM1, _NORM, _BASE, _PREVIOUS_NORM = range(6)


@dataclass
class DriftSeries:
    """What `DriftRecorder.read` returns: per block, one entry per step (None where the block did not run or
    had nothing to compare with), and each step's timestep."""

    blocks: list[str]
    timesteps: list[float | None]
    rel_l1: dict[str, list[float | None]]
    cosine: dict[str, list[float | None]]
    held_bytes: int  # the outputs kept to compare the next call with: one per block


def hidden_state(output: Any) -> torch.Tensor | None:
    """A block's output as a cache would hold it: the tensor itself, or the first element of a tuple (a down
    block's hidden state, not its skip tensors), or the first field of diffusers' output objects."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output:
        return hidden_state(output[0])
    to_tuple = getattr(output, "to_tuple", None)
    if callable(to_tuple):
        return hidden_state(to_tuple())
    return None


class DriftRecorder:
    """While open, records the change of every call of the modules at `paths` against its previous call."""

    def __init__(self, module: nn.Module, paths: list[str]) -> None:
        modules = dict(module.named_modules())
        self.root = module
        self.modules = {path: modules[path] for path in paths}
        self._handles: list[Any] = []
        self._step = -1
        self._calls: dict[str, int] = {}
        self._last: dict[str, torch.Tensor] = {}
        self._norms: dict[str, torch.Tensor] = {}  # name → (‖o‖₁, ‖o‖₂) of the kept output, on the device
        self._stats: dict[str, dict[int, torch.Tensor]] = {}  # name → step → the six sums, on the device
        self._ran: dict[str, set[int]] = {}

    def __enter__(self) -> DriftRecorder:
        try:
            self._handles.append(self.root.register_forward_pre_hook(self._start_call))
            for path, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._hook(path)))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @property
    def held_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._last.values())

    @property
    def steps(self) -> int:
        """How many calls of the root started while the recorder was open."""
        return self._step + 1

    def _start_call(self, module: nn.Module, args: tuple) -> None:
        self._step += 1
        self._calls.clear()

    def _hook(self, path: str) -> Any:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if self._step < 0:  # a block called on its own, outside a call of the root
                return
            call = self._calls.get(path, 0)
            self._calls[path] = call + 1
            out = hidden_state(output)
            if out is None:
                return
            name = call_name(path, call)
            out = out.detach()
            flat = _flat(out)
            norms = torch.stack([torch.linalg.vector_norm(flat, 1), torch.linalg.vector_norm(flat)])
            previous = self._last.get(name)
            if previous is not None and previous.shape == out.shape:
                before = _flat(previous)
                change = torch.stack([torch.linalg.vector_norm(flat - before, 1), torch.dot(flat, before)])
                self._stats.setdefault(name, {})[self._step] = torch.cat([change, norms, self._norms[name]])
            self._ran.setdefault(name, set()).add(self._step)
            self._last[name] = out.clone()  # later ops of the block's caller may change the output in place
            self._norms[name] = norms

        return hook

    def read(self, timesteps: list[float | None]) -> DriftSeries:
        """The recorded changes as numbers: the only point where device values are read (after the loop).
        `timesteps` are the calls' own, as the caller recorded them (a call that raised has none)."""
        steps = self.steps
        names = list(self._ran)
        rel_l1: dict[str, list[float | None]] = {}
        cosine: dict[str, list[float | None]] = {}
        for name in names:
            stats = self._stats.get(name, {})
            table = torch.stack(list(stats.values())).double().cpu() if stats else None
            rows = dict(zip(stats, table)) if table is not None else {}
            rel_l1[name] = [_relative(rows[s]) if s in rows else None for s in range(steps)]
            cosine[name] = [_cosine(rows[s]) if s in rows else None for s in range(steps)]
        timesteps = [*timesteps[:steps], *[None] * (steps - len(timesteps))]
        return DriftSeries(blocks=names, timesteps=timesteps, rel_l1=rel_l1, cosine=cosine,
                           held_bytes=self.held_bytes)


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """The output as one vector in fp32 (fp64 for fp64 models): the sums of half-precision outputs overflow."""
    return tensor.reshape(-1).to(torch.float64 if tensor.dtype == torch.float64 else torch.float32)


def _relative(sums: torch.Tensor) -> float:
    """‖o_t − o_{t−1}‖₁ / ‖o_{t−1}‖₁; an unchanged output is 0 even when it is all zeros, a change from zeros inf."""
    l1, base = float(sums[_L1]), float(sums[_BASE])
    if l1 == 0.0:
        return 0.0
    return l1 / base if base else float("inf")


def _cosine(sums: torch.Tensor) -> float | None:
    """o_t·o_{t−1} / (‖o_t‖ ‖o_{t−1}‖); None where an output is all zeros (no direction to compare)."""
    norms = float(sums[_NORM]) * float(sums[_PREVIOUS_NORM])
    return float(sums[_DOT]) / norms if norms else None

