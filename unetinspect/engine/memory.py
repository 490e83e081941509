"""What autograd keeps for backward, module by module: saved-tensor accounting on any `nn.Module`.

One forward pass runs with grad enabled under `torch.autograd.graph.saved_tensors_hooks`; forward pre/post hooks
keep the stack of module calls, so every tensor autograd saves is charged to the call whose code saved it. A
storage is counted once (a tensor saved by two ops, or a view of one already saved, costs nothing more), in the
call that saved it first; storages of parameters are not activations and are left out. Storages are told apart
by their `StorageImpl` (`untyped_storage()._cdata`), which works on the meta device too, where every data
pointer is 0 — so full-size models are measured without memory.

`checkpointed` calls run through `torch.utils.checkpoint` (non-reentrant, as diffusers'
`enable_gradient_checkpointing` does): the segment keeps only its inputs, and what its inside saves when it is
recomputed in backward is measured in a plain pass (`recompute_bytes`).

`lora_adapters` adds PEFT-style low-rank adapters to named `nn.Linear`s through forward hooks, so that the
adapters' own saved tensors are measured too, without changing the model's structure.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from unetinspect.engine.trace import flatten_tensors, params_per_path


@dataclass
class SavedCall:
    """One module call: the bytes autograd saved in it (own code and, in `saved_bytes`, its children's)."""

    index: int
    path: str
    type: str
    depth: int
    parent: int | None
    params: int
    own_bytes: int = 0  # storages first saved by this call's own code, not by a child call
    saved_bytes: int = 0  # own_bytes plus every descendant's
    internal_bytes: int = 0  # saved_bytes less the call's own inputs: what a recompute of it allocates anew
    checkpointed: bool = False
    inputs: set[int] = field(default_factory=set, repr=False)  # storage keys of its tensor arguments
    children: list[int] = field(default_factory=list)


@dataclass
class SavedTensors:
    """The saved tensors of one forward pass, and the timeline the backward walks in reverse.

    `events` are (tick, bytes saved) in forward order, `param_ticks` the last forward tick at which each trainable
    parameter's module ran (its gradient appears when backward reaches that tick), `segments` the tick ranges of
    checkpointed calls with what their recompute saves.
    """

    calls: list[SavedCall]
    total_bytes: int
    events: list[tuple[int, int]]
    param_ticks: dict[int, tuple[int, int]]  # id(param) → (last tick, gradient bytes)
    segments: list[tuple[int, int, int]]  # (first tick, last tick, recompute bytes)
    ticks: int

    def backward_peak(self) -> int:
        """The most activation + gradient bytes live at once while backward runs (see `backward_peak_at`)."""
        return self.backward_peak_at()[0]

    def backward_peak_at(self) -> tuple[int, int]:
        """The most activation + gradient bytes live at once while backward runs, and the tick where (the
        module call that began at it is `calls[tick - 1]`; 0: before the first), ticks taken in reverse: what
        is saved up to a tick is still held, the gradients of parameters last used from that tick on exist, and a
        checkpointed segment's recompute is held while backward is inside it."""
        saved_upto = [0] * (self.ticks + 1)
        for tick, nbytes in self.events:
            saved_upto[tick] += nbytes
        grads_from = [0] * (self.ticks + 2)
        for tick, nbytes in self.param_ticks.values():
            grads_from[tick] += nbytes
        recompute = [0] * (self.ticks + 1)
        for first, last, nbytes in self.segments:
            for tick in range(first, last + 1):
                recompute[tick] = max(recompute[tick], nbytes)
        for tick in range(1, self.ticks + 1):
            saved_upto[tick] += saved_upto[tick - 1]
        for tick in range(self.ticks, -1, -1):
            grads_from[tick] += grads_from[tick + 1]
        return max((saved_upto[t] + grads_from[t] + recompute[t], t) for t in range(self.ticks + 1))


def storage_key(tensor: torch.Tensor) -> int:
    """The identity of a tensor's storage, the same for every view of it, on any device (meta included)."""
    return tensor.untyped_storage()._cdata


def measure_saved(model: nn.Module, inputs: dict[str, Any], *,
                  checkpointed: Callable[[str, nn.Module], bool] | None = None,
                  extra_params: Mapping[str, Sequence[nn.Parameter]] | None = None) -> SavedTensors:
    """Run `model(**inputs)` once with grad enabled and charge every saved storage to the call that saved it.

    `checkpointed(path, module)` picks the calls run through `torch.utils.checkpoint`; their recompute is measured
    in a first, plain pass. `extra_params` are trainable parameters outside the model used at a module's call
    (LoRA adapters held by hooks), for the gradient timeline.
    """
    recompute: dict[str, int] = {}
    if checkpointed is not None:
        plain = _measure(model, inputs, None, extra_params or {})
        recompute = {c.path: c.internal_bytes for c in plain.calls
                     if c.path and checkpointed(c.path, model.get_submodule(c.path))}
    return _measure(model, inputs, checkpointed, extra_params or {}, recompute)


def _measure(model: nn.Module, inputs: dict[str, Any], checkpointed: Callable[[str, nn.Module], bool] | None,
             extra_params: Mapping[str, Sequence[nn.Parameter]], recompute: dict[str, int] | None = None
             ) -> SavedTensors:
    recorder = _SavedRecorder(model, extra_params)
    handles = []
    with contextlib.ExitStack() as stack:
        for path, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(recorder.pre_hook(path), with_kwargs=True))
            handles.append(module.register_forward_hook(recorder.post_hook(), always_call=True))
        if checkpointed is not None:
            recorder.checkpointed = set(stack.enter_context(checkpointing(model, checkpointed)))
        stack.callback(lambda: [handle.remove() for handle in handles])
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(recorder.pack, _unpack):
            model(**inputs)
    for call in reversed(recorder.calls):
        call.saved_bytes = call.own_bytes + sum(recorder.calls[c].saved_bytes for c in call.children)
    segments = [(first, last, (recompute or {}).get(recorder.calls[index].path, 0))
                for index, (first, last) in recorder.segment_ticks.items()]
    return SavedTensors(recorder.calls, sum(recorder.sizes.values()), recorder.events, recorder.param_ticks,
                        segments, recorder.tick)


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@contextlib.contextmanager
def checkpointing(model: nn.Module, checkpointed: Callable[[str, nn.Module], bool]) -> Iterator[list[str]]:
    """The forwards of the modules `checkpointed` picks through `torch.utils.checkpoint(use_reentrant=False)` —
    diffusers' own call — until exit, for a measuring pass or a real training step; yields their paths.

    An instance attribute shadows each class's forward and is deleted afterwards; hooks still run around it (in
    diffusers `checkpoint(module.__call__, ...)` runs them inside, which saves nothing more)."""
    wrapped = [(path, module) for path, module in model.named_modules() if path and checkpointed(path, module)]

    def through_checkpoint(forward: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return run

    for _, module in wrapped:
        module.forward = through_checkpoint(module.forward)
    try:
        yield [path for path, _ in wrapped]
    finally:
        for _, module in wrapped:
            del module.forward


class _SavedRecorder:
    """The hook state: the call stack, the storages seen, and the timeline of saves and parameter uses."""

    def __init__(self, model: nn.Module, extra_params: Mapping[str, Sequence[nn.Parameter]]) -> None:
        self.calls: list[SavedCall] = []
        self.stack: list[SavedCall] = []
        self.sizes: dict[int, int] = {}
        self.kept: list[torch.Tensor] = []  # every saved tensor stays alive, so no storage key is reused
        self.params = {storage_key(p) for p in model.parameters()}
        self.param_counts = params_per_path(model)
        self.extra_params = extra_params
        self.checkpointed: set[str] = set()
        self.segment_ticks: dict[int, tuple[int, int]] = {}
        self.events: list[tuple[int, int]] = []
        self.param_ticks: dict[int, tuple[int, int]] = {}
        self.tick = 0

    def pre_hook(self, path: str) -> Callable[[nn.Module, tuple, dict], None]:
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            parent = self.stack[-1] if self.stack else None
            call = SavedCall(index=len(self.calls), path=path, type=type(module).__name__,
                             depth=parent.depth + 1 if parent else 0, parent=parent.index if parent else None,
                             params=self.param_counts.get(path, 0), checkpointed=path in self.checkpointed)
            call.inputs = {storage_key(t) for _, t in flatten_tensors("in", (args, kwargs))}
            if parent is not None:
                parent.children.append(call.index)
            self.calls.append(call)
            self.stack.append(call)
            self.tick += 1
            own = [*module.parameters(recurse=False), *self.extra_params.get(path, ())]
            for param in own:
                if param.requires_grad:
                    self.param_ticks[id(param)] = (self.tick, param.numel() * param.element_size())
            if call.checkpointed:
                self.segment_ticks[call.index] = (self.tick, self.tick)

        return hook

    def post_hook(self) -> Callable[[nn.Module, tuple, Any], None]:
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if not self.stack:
                return
            call = self.stack.pop()
            if call.index in self.segment_ticks:
                self.segment_ticks[call.index] = (self.segment_ticks[call.index][0], self.tick)

        return hook

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = storage_key(tensor)
        if key in self.params or key in self.sizes:
            return tensor
        nbytes = tensor.untyped_storage().nbytes()
        self.sizes[key] = nbytes
        self.kept.append(tensor)
        self.events.append((self.tick, nbytes))
        if self.stack:
            self.stack[-1].own_bytes += nbytes
        for call in self.stack:
            if key not in call.inputs:
                call.internal_bytes += nbytes
        return tensor


# ---- live tensors of an inference step ------------------------------------------------------------------------------


def peak_live_bytes(model: nn.Module, inputs: dict[str, Any]) -> int:
    """The most bytes of tensors alive at once during `model(**inputs)` under `torch.no_grad()`: the inputs,
    plus every storage an op makes, from the op that makes it until the last tensor on it is freed (weights left
    out). Seen below autograd with a dispatch mode and freed through weak references, so it works on meta too;
    a real device adds its allocator's rounding and kernels' workspaces."""
    live = LiveBytes()
    for _, tensor in flatten_tensors("in", inputs):
        live.add(tensor)
    with torch.no_grad(), live:
        model(**inputs)
    return live.peak


class LiveBytes(TorchDispatchMode):
    """Bytes of the storages alive now, and the most there were; a storage lives while any tensor on it does."""

    def __init__(self) -> None:
        super().__init__()
        self.tensors: dict[int, int] = {}  # storage key → tensors alive on it
        self.sizes: dict[int, int] = {}
        self.now = self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        output = func(*args, **(kwargs or {}))
        for _, tensor in flatten_tensors("out", output):
            self.add(tensor)
        return output

    def add(self, tensor: torch.Tensor) -> None:
        key = storage_key(tensor)
        if key not in self.tensors:
            self.tensors[key], self.sizes[key] = 0, tensor.untyped_storage().nbytes()
            self.now += self.sizes[key]
            self.peak = max(self.peak, self.now)
        self.tensors[key] += 1
        weakref.finalize(tensor, self._release, key)

    def _release(self, key: int) -> None:
        self.tensors[key] -= 1
        if not self.tensors[key]:
            del self.tensors[key]
            self.now -= self.sizes.pop(key)


# ---- LoRA adapters ------------------------------------------------------------------------------------------------


LoraBase = nn.Linear | nn.Conv2d  # the layers an adapter knows how to wrap (its A and B are shaped on them)


def lora_targets(model: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """The modules PEFT's `target_modules` names pick: a path equal to a name or ending in "." + the name."""
    return [(path, module) for path, module in model.named_modules()
            if path and any(path == t or path.endswith("." + t) for t in targets)]


KOHYA_TRANSFORMER = ("Transformer2DModel",)  # kohya's networks/lora.py: UNET_TARGET_REPLACE_MODULE
KOHYA_CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")  # UNET_TARGET_REPLACE_MODULE_CONV2D_3X3


def kohya_targets(model: nn.Module, rank: int, conv_rank: int | None) -> list[tuple[str, LoraBase, int]]:
    """The layers kohya's sd-scripts LoRA adapts, with their ranks: every Linear and 1×1 Conv2d inside a
    Transformer2DModel at `rank`; with `conv_rank` (LoCon, kohya's conv_dim) also those inside the resnets and
    resamplers, their other convolutions at `conv_rank`. Blocks are recognised by class name, as kohya does."""
    kinds = KOHYA_TRANSFORMER + (KOHYA_CONV_BLOCKS if conv_rank is not None else ())
    found: dict[str, tuple[LoraBase, int]] = {}
    for path, block in model.named_modules():
        if type(block).__name__ not in kinds:
            continue
        for name, layer in block.named_modules():
            full = f"{path}.{name}" if path else name
            if isinstance(layer, nn.Linear) or (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1)):
                found.setdefault(full, (layer, rank))
            elif isinstance(layer, nn.Conv2d) and conv_rank is not None:
                found.setdefault(full, (layer, conv_rank))
    return [(path, layer, r) for path, (layer, r) in found.items()]


@contextlib.contextmanager
def lora_adapters(model: nn.Module, targets: Sequence[tuple[str, LoraBase, int]]
                  ) -> Iterator[dict[str, list[nn.Parameter]]]:
    """LoRA on each target (path, Linear or Conv2d, rank) as forward hooks: y = base(x) + B(A(x)) · alpha/rank,
    dropout 0 — PEFT's and kohya's forward alike.

    On a Linear A is (rank × in) and B (out × rank); on a Conv2d A is a convolution like the base's (same kernel,
    stride, padding, dilation) to `rank` channels and B a 1×1 convolution to the output's, as PEFT's and kohya's
    LoCon do. A and B are new trainable parameters in the base's device and dtype, outside the model (its structure
    and state dict stay as they are); yields them by the target's path. The scale does not change memory but is
    applied, as PEFT does, so the saved tensors are those of PEFT's forward."""
    adapters: dict[str, list[nn.Parameter]] = {}
    handles = []
    try:
        for path, base, rank in targets:
            like = base.weight
            if isinstance(base, nn.Conv2d):
                shapes = [(rank, base.in_channels, *base.kernel_size), (base.out_channels, rank, 1, 1)]
            else:
                shapes = [(rank, base.in_features), (base.out_features, rank)]
            down, up = (nn.Parameter(torch.empty(shape, device=like.device, dtype=like.dtype)) for shape in shapes)
            if like.device.type != "meta":
                nn.init.normal_(down, std=1 / rank)
                nn.init.zeros_(up)
            adapters[path] = [down, up]
            handles.append(base.register_forward_hook(_adapter(base, down, up)))
        yield adapters
    finally:
        for handle in handles:
            handle.remove()


def _adapter(base: LoraBase, down: nn.Parameter, up: nn.Parameter) -> Callable[..., torch.Tensor]:
    """The forward hook adding B(A(x)) to the base's output: two matmuls, or two convolutions."""
    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if isinstance(base, nn.Conv2d):
            low = nn.functional.conv2d(args[0], down, None, base.stride, base.padding, base.dilation)
            return output + nn.functional.conv2d(low, up) * 1.0
        return output + nn.functional.linear(nn.functional.linear(args[0], down), up) * 1.0

    return hook


# ---- optimizer state ------------------------------------------------------------------------------------------------

BNB_BLOCK = 256  # bitsandbytes' blockwise optimizers (0.45+): one fp32 absmax per 256 elements per state
BNB_QMAPS = 2 * 256 * 4  # its two quantisation maps (signed, unsigned), 256 fp32 each, shared by every parameter
BNB_MIN_8BIT = 4096  # bitsandbytes keeps 32-bit state for tensors with fewer elements (min_8bit_size)
STEP_BYTES = 4  # torch's optimizers keep `step` as a float32 scalar tensor per parameter


def optimizer_state_bytes(optimizer: str, shapes: Sequence[tuple[torch.Size, int]]) -> int:
    """Bytes of optimizer state for trainable parameters given as (shape, bytes per element of the master copy).

    adamw: exp_avg and exp_avg_sq like the parameter, and `step` (torch.optim.AdamW). adamw-8bit: bitsandbytes'
    AdamW8bit, two uint8 states + one fp32 absmax per 256-element block each, and its two shared quantisation maps;
    small tensors stay 32-bit. sgd:
    torch.optim.SGD's default, no momentum, no state. adafactor: torch.optim.Adafactor, a row and a column
    variance for ≥2-D parameters (the last two dimensions factored), a full one below, and `step`.
    """
    total = BNB_QMAPS if optimizer == "adamw-8bit" and any(math.prod(s) >= BNB_MIN_8BIT for s, _ in shapes) else 0
    for shape, itemsize in shapes:
        n = math.prod(shape)
        if optimizer == "adamw":
            total += 2 * n * itemsize + STEP_BYTES
        elif optimizer == "adamw-8bit":
            total += 2 * (n + 4 * -(-n // BNB_BLOCK)) if n >= BNB_MIN_8BIT else 2 * n * 4
        elif optimizer == "sgd":
            total += 0
        elif optimizer == "adafactor":
            if len(shape) >= 2:
                rows, cols = math.prod(shape[:-1]), math.prod((*shape[:-2], shape[-1]))
                total += (rows + cols) * itemsize + STEP_BYTES
            else:
                total += n * itemsize + STEP_BYTES
        else:
            raise ValueError(optimizer)
    return total
