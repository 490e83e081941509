"""How large the numbers inside a module get, call by call: where float16 (max 65504) would overflow.

An overflow is rarely visible at a block's output: inside a resnet a too-large convolution output is normalised by
the next GroupNorm, and the block returns ordinary numbers that were infinite in float16 a few operations before.
So the recorder looks at *every floating tensor an operation makes* while the watched module runs, at every depth,
through a `TorchDispatchMode`: each ATen operation's outputs pass through it once. Forward hooks on submodules
would see only module outputs and miss the functional operations between them (residual additions, GEGLU's
product, the attention kernel's output); `torch.overrides` would see Python-level calls but not the operations a
composite function makes inside. The dispatch mode sees all of them, once each, and nothing else — views (which
make no new numbers) are passed over. Which module made each operation's output comes from pre- and post-hooks
on every submodule (a stack of the running ones); the innermost one is the operation's layer.

Nothing waits for the GPU inside the loop: every operation adds two device scalars (its largest |x| in float32,
through one `vector_norm(ord=inf)`, and its count of finite values), stacked into one tensor per call when the
call ends; they are read, and attributed to blocks and layers, only in `result()`, after the loop.

Attention layers also give their largest |q·kᵀ·scale| logit (where SD 2.x overflows in float16 unless attention
is upcast), recomputed beside the real call from its own inputs through its own projections, in float32 and in
chunks of queries (the layer still runs its fused kernel; its output is not touched). The recompute is not
counted as the layer's own operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from unetinspect.engine.attention import attention_layers, queries_and_keys
from unetinspect.engine.trace import named_arguments

FLOAT16_MAX = 65504.0  # the largest finite float16
LOGIT_CHUNK = 1024  # queries per chunk of the logit recompute: its float32 scores stay below chunk × keys × heads
_CONTAINERS = (nn.ModuleList, nn.ModuleDict)
_MEASURED = (torch.float16, torch.bfloat16, torch.float32, torch.float64)  # float8 has no reductions to run


@dataclass(frozen=True)
class FirstNonFinite:
    """Where a non-finite value first appeared: the watched block, the call (0 = first), the innermost layer."""

    block: str | None  # None: made by the watched module itself, outside every watched block
    call: int
    layer: str


@dataclass
class Ranges:
    """Per watched block, one entry per call: the largest |x| made inside it, its count of non-finite values (over
    every tensor its operations made), the largest |attention logit| of its attention layers (None without one)."""

    calls: int
    max_abs: dict[str, list[float]]
    nonfinite: dict[str, list[int]]
    logit_max: dict[str, list[float | None]]
    first_nonfinite: FirstNonFinite | None
    notes: list[str] = field(default_factory=list)

    @property
    def headroom(self) -> dict[str, list[float]]:
        """How many times each block's largest |x| fits under float16's 65504 (below 1: it overflows)."""
        return {block: [FLOAT16_MAX / x if x > 0 else math.inf for x in values]
                for block, values in self.max_abs.items()}

    def above_float16(self) -> list[str]:
        """The blocks whose largest |x| (or attention logit) passed 65504 in some call."""
        return [block for block, values in self.max_abs.items()
                if max(values, default=0.0) > FLOAT16_MAX
                or max((v for v in self.logit_max[block] if v is not None), default=0.0) > FLOAT16_MAX]


@dataclass
class _Call:
    """One call of the watched module: per operation its layer's id, its tensors' sizes, and the device scalars."""

    layers: list[int] = field(default_factory=list)
    numels: list[int] = field(default_factory=list)
    maxes: list[torch.Tensor] = field(default_factory=list)
    finite: list[torch.Tensor] = field(default_factory=list)
    logits: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (layer id, its largest |logit|)
    stacked: tuple[torch.Tensor, torch.Tensor] | None = None  # maxes and finite counts, one tensor each


class _Operations(TorchDispatchMode):
    """Hands every operation's floating outputs to the recorder; views make no new numbers and are passed over."""

    def __init__(self, recorder: RangeRecorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        call = self.recorder.recording_call()
        if call is not None and not func.is_view:
            self.recorder.record(call, out)
        return out


class RangeRecorder:
    """While open (`with`), records every call of `model`: per operation the largest |x| and the finite count of
    its floating outputs, each charged to the innermost module running; `result()` sums them into `blocks`."""

    def __init__(self, model: nn.Module, blocks: list[str]) -> None:
        self.model, self.blocks = model, list(blocks)
        self.modules = {path: m for path, m in model.named_modules() if path and not isinstance(m, _CONTAINERS)}
        self.attention = attention_layers(model)
        self.layer_ids = {path: index for index, path in enumerate(["", *self.modules])}  # "": the model itself
        self._stack: list[int] = []
        self._call: _Call | None = None
        self._calls: list[_Call] = []
        self._in_hooks = 0  # forward hooks of how many modules are running: what they compute is not recorded
        self._mode = _Operations(self)
        self._handles: list[Any] = []
        self._open = False
        self._unread: list[str] = []  # attention layers called without hidden_states (LDM's x): no logit recompute

    def recording_call(self) -> _Call | None:
        """The open call whose operations are recorded now; None between calls and while hooks run."""
        return None if self._in_hooks else self._call

    def __enter__(self) -> RangeRecorder:
        try:
            self._handles = [self.model.register_forward_pre_hook(self._start),
                             self.model.register_forward_hook(self._end)]
            self._handles += [m.register_forward_hook(self._logits(path), with_kwargs=True)
                              for path, m in self.attention.items()]
            for path, module in self.modules.items():
                self._handles += [module.register_forward_pre_hook(self._push(self.layer_ids[path])),
                                  module.register_forward_hook(self._pop, prepend=True, always_call=True),
                                  module.register_forward_hook(self._resume, always_call=True)]
            self._mode.__enter__()  # for the whole with block: a raising call leaves nothing half-entered
        except BaseException:
            self._remove_hooks()
            raise
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._open:
                self._mode.__exit__(None, None, None)
        finally:
            self._open = False
            self._remove_hooks()
            self._call = None  # a call the loop broke out of is not counted

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # ---- hooks --------------------------------------------------------------------------------------------------

    def _start(self, module: nn.Module, args: tuple) -> None:
        self._call, self._stack, self._in_hooks = _Call(), [], 0

    def _end(self, module: nn.Module, args: tuple, output: Any) -> None:
        call, self._call = self._call, None
        if call is None:
            return
        if call.maxes:  # two tensors per call instead of two per operation, still on the device
            call.stacked = (torch.stack(call.maxes), torch.stack(call.finite))
            call.maxes, call.finite = [], []
        self._calls.append(call)

    def _push(self, layer: int) -> Any:
        def hook(module: nn.Module, args: tuple) -> None:
            self._stack.append(layer)
        return hook

    def _pop(self, module: nn.Module, args: tuple, output: Any) -> None:
        """First of the module's forward hooks: its forward is over; what other hooks compute is not its own
        (attention maps recomputing logits, say) and is not recorded until `_resume`, the last one — also what
        modules those hooks call compute (they count in and out the same way)."""
        if self._stack:
            self._stack.pop()
        self._in_hooks += 1

    def _resume(self, module: nn.Module, args: tuple, output: Any) -> None:
        self._in_hooks = max(self._in_hooks - 1, 0)

    def record(self, call: _Call, out: Any) -> None:
        """One operation's floating outputs: their largest |x| and finite count, as device scalars (no sync),
        added to `call` (the open one, as `recording_call()` gave it: no check per operation)."""
        layer = self._stack[-1] if self._stack else 0
        for tensor in tree_leaves(out):
            if (isinstance(tensor, torch.Tensor) and tensor.dtype in _MEASURED and tensor.numel()
                    and tensor.layout == torch.strided and tensor.device.type != "meta"):
                call.layers.append(layer)
                call.numels.append(tensor.numel())
                call.maxes.append(torch.linalg.vector_norm(tensor, math.inf, dtype=torch.float32))
                call.finite.append(torch.isfinite(tensor).sum())

    def _logits(self, path: str) -> Any:
        layer = self.layer_ids[path]

        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if self._call is None:
                return
            named = named_arguments(module, args, kwargs)
            hidden = named.get("hidden_states")
            if not isinstance(hidden, torch.Tensor):  # found by to_q/to_k/heads, called another way: no logit
                if path not in self._unread:
                    self._unread.append(path)
                return
            with torch.no_grad():  # between `_pop` and `_resume`: not recorded as the layer's own operations
                self._call.logits.append((layer, _largest_logit(module, hidden, named.get("encoder_hidden_states"))))
        return hook

    # ---- the result ---------------------------------------------------------------------------------------------

    def result(self) -> Ranges:
        """Each watched block's figures per call, read from the device now (the only wait, after the loop)."""
        names = {layer: path for path, layer in self.layer_ids.items()}
        owners = {layer: self._owners(path) for layer, path in names.items()}
        max_abs = {b: [0.0] * len(self._calls) for b in self.blocks}
        nonfinite = {b: [0] * len(self._calls) for b in self.blocks}
        logit_max: dict[str, list[float | None]] = {b: [None] * len(self._calls) for b in self.blocks}
        first = None
        for index, call in enumerate(self._calls):
            maxes, finite = ([], []) if call.stacked is None else (t.tolist() for t in call.stacked)
            for layer, numel, largest, finite_count in zip(call.layers, call.numels, maxes, finite):
                bad = numel - finite_count
                for block in owners[layer]:
                    max_abs[block][index] = _larger(max_abs[block][index], largest)
                    nonfinite[block][index] += bad
                if bad and first is None:
                    first = FirstNonFinite(owners[layer][0] if owners[layer] else None, index, names[layer])
            values = torch.stack([logit for _, logit in call.logits]).tolist() if call.logits else []
            for (layer, _), value in zip(call.logits, values):
                for block in owners[layer]:
                    current = logit_max[block][index]
                    logit_max[block][index] = value if current is None else _larger(current, value)
        notes = ["largest |x| over every floating tensor the operations inside each block made (float32 "
                 "reductions); non-finite values counted over the same tensors"]
        if self.attention:
            notes.append("attention logits |q·kᵀ·scale| recomputed in float32 from each layer's own inputs and "
                         "projections, before any mask")
        if self._unread:
            notes.append(f"no attention logits for {', '.join(self._unread)}: called without hidden_states, the "
                         "argument of diffusers' Attention the recompute reads")
        return Ranges(len(self._calls), max_abs, nonfinite, logit_max, first, notes)

    def _owners(self, path: str) -> list[str]:
        """The watched blocks a layer is in, outermost first."""
        return [b for b in self.blocks if path == b or path.startswith(b + ".")]


def _larger(a: float, b: float) -> float:
    """The larger of two maxima, a NaN (a tensor that held one: its count says so) not hiding a real maximum."""
    return a if math.isnan(b) else b if math.isnan(a) else max(a, b)


def _largest_logit(module: nn.Module, hidden: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
    """max |q·kᵀ·scale| of one call, in float32, a chunk of queries at a time; a device scalar — NaN where the
    layer's inputs were no longer numbers (0 would read as a layer far from overflowing)."""
    query, key, scale, _, _ = queries_and_keys(module, hidden, context)
    largest = torch.zeros((), device=query.device)
    for start in range(0, query.shape[2], LOGIT_CHUNK):
        scores = query[:, :, start:start + LOGIT_CHUNK] @ key.transpose(-1, -2)
        largest = torch.maximum(largest, torch.linalg.vector_norm(scores, math.inf) * abs(scale))
    return largest
