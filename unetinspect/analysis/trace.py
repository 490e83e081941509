"""Recording every module call of a forward pass: the Trace every view is computed from.

Forward hooks (with kwargs, so `temb` and `encoder_hidden_states` are seen by name) capture, per call: the
module's path and class, its depth in the call tree, the shapes and dtypes of its tensor inputs and outputs,
its parameters and the FLOPs that ran inside it. Each input tensor also remembers which earlier calls output
that very tensor — which is how a view knows that `up_blocks.1` consumes the skips of `down_blocks.2`.
Works on any `nn.Module`, ours or diffusers'; every hook is removed afterwards, also when the forward raises.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from unetinspect.analysis.flops import FlopCounter


@dataclass(frozen=True)
class TensorMeta:
    """One tensor argument or result: where it sits in the call, its shape and dtype.

    `producers` lists the calls (record indices, innermost first) that returned this very tensor; index 0 (the
    root call) means it is an input of the whole model.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    producers: tuple[int, ...] = ()


@dataclass
class CallRecord:
    """One call of one module, in the order the calls began."""

    index: int
    path: str  # dotted name in the model; "" for the model itself
    type: str
    depth: int  # 0 for the model, 1 for its direct callees (conv_in, down_blocks.0, ...), and so on
    parent: int | None
    call: int  # how many times this module had been called before (0 for the first call)
    params: int  # parameters of the module, its children included
    inputs: list[TensorMeta] = field(default_factory=list)
    outputs: list[TensorMeta] = field(default_factory=list)
    flops: int = 0  # FLOPs inside this call, its children's included
    own_flops: int = 0  # FLOPs of ops that ran in this call but in none of its child calls
    children: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The path, with the call number for modules called more than once (`nonlinearity#2`)."""
        label = self.path or "(model)"
        return f"{label}#{self.call + 1}" if self.call else label


@dataclass
class Trace:
    """The ordered calls of one forward pass, and totals of the model."""

    model_type: str
    records: list[CallRecord]
    total_params: int
    trainable_params: int
    param_bytes: int

    @property
    def root(self) -> CallRecord:
        return self.records[0]

    @property
    def flops(self) -> int:
        return self.root.flops

    def at_depth(self, depth: int) -> list[CallRecord]:
        """Calls to show at a depth: every call at that depth, plus shallower leaves (nothing is lost)."""
        return [r for r in self.records[1:] if r.depth == depth or (r.depth < depth and not r.children)]

    def find(self, path: str) -> CallRecord:
        """The first call of the module at `path`."""
        for record in self.records:
            if record.path == path:
                return record
        raise KeyError(path)

    def descendants(self, record: CallRecord) -> Iterator[CallRecord]:
        for child in record.children:
            yield self.records[child]
            yield from self.descendants(self.records[child])

    def producer_at(self, tensor: TensorMeta, depth: int) -> CallRecord | None:
        """The call at `depth` (or the deepest one above it) that returned `tensor`; the root for model inputs."""
        candidates = [self.records[i] for i in tensor.producers]
        shallow_enough = [r for r in candidates if r.depth <= depth]
        return max(shallow_enough, key=lambda r: r.depth) if shallow_enough else None


def trace_model(model: nn.Module, inputs: dict[str, Any], *, count_flops: bool = True) -> Trace:
    """Run `model(**inputs)` once under `torch.no_grad()` and record every module call."""
    recorder = _Recorder(model)
    handles = []
    try:
        for path, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(recorder.pre_hook(path), with_kwargs=True))
            handles.append(module.register_forward_hook(recorder.post_hook(), with_kwargs=True, always_call=True))
        with torch.no_grad(), (FlopCounter() if count_flops else _NoFlops()) as counter:
            recorder.counter = counter
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    for record in recorder.records:
        record.own_flops = record.flops - sum(recorder.records[c].flops for c in record.children)
    params = list(model.parameters())
    return Trace(
        model_type=type(model).__name__,
        records=recorder.records,
        total_params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
    )


class _NoFlops:
    total = 0

    def __enter__(self) -> _NoFlops:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class _Recorder:
    """The hook state during one forward pass: the call stack, call counts, and who produced which tensor."""

    def __init__(self, model: nn.Module) -> None:
        self.records: list[CallRecord] = []
        self.stack: list[tuple[CallRecord, int]] = []  # (record, FLOP total at its start)
        self.calls: dict[str, int] = {}
        self.producers: dict[int, tuple[weakref.ref, list[int]]] = {}
        self.counter: FlopCounter | _NoFlops = _NoFlops()
        self.param_counts = _params_per_path(model)

    def pre_hook(self, path: str):
        def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            parent = self.stack[-1][0] if self.stack else None
            call = self.calls.get(path, 0)
            self.calls[path] = call + 1
            record = CallRecord(
                index=len(self.records), path=path, type=type(module).__name__,
                depth=parent.depth + 1 if parent else 0, parent=parent.index if parent else None, call=call,
                params=self.param_counts.get(path, 0),
            )
            record.inputs = [self._meta(name, t, lookup=True) for name, t in _named_tensors(module, args, kwargs)]
            if parent is None:  # model inputs: produced by the root call
                for tensor in _tensors_of(args, kwargs):
                    self._register(tensor, record.index)
            else:
                parent.children.append(record.index)
            self.records.append(record)
            self.stack.append((record, self.counter.total))

        return hook

    def post_hook(self):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not self.stack:
                return
            record, flops_before = self.stack.pop()
            record.flops = self.counter.total - flops_before
            for name, tensor in _flatten("out", output):
                record.outputs.append(self._meta(name, tensor, lookup=False))
                self._register(tensor, record.index)

        return hook

    def _register(self, tensor: torch.Tensor, index: int) -> None:
        entry = self.producers.get(id(tensor))
        if entry is not None and entry[0]() is tensor:
            if entry[1][-1] != index:  # a tensor returned twice by one call (a block's output and last skip)
                entry[1].append(index)
        else:
            self.producers[id(tensor)] = (weakref.ref(tensor), [index])

    def _meta(self, name: str, tensor: torch.Tensor, lookup: bool) -> TensorMeta:
        producers: tuple[int, ...] = ()
        if lookup:
            entry = self.producers.get(id(tensor))
            if entry is not None and entry[0]() is tensor:
                producers = tuple(entry[1])
        return TensorMeta(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), producers)


def _params_per_path(model: nn.Module) -> dict[str, int]:
    """Parameters under each module path (children included), in one pass over the parameters."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        parts = name.split(".")[:-1]
        for end in range(len(parts) + 1):
            prefix = ".".join(parts[:end])
            counts[prefix] = counts.get(prefix, 0) + param.numel()
    return counts


_SIGNATURES: dict[type, inspect.Signature | None] = {}


def _named_tensors(module: nn.Module, args: tuple, kwargs: dict) -> list[tuple[str, torch.Tensor]]:
    """Tensor arguments with the names the forward gives them (`hidden_states`, `temb`, ...)."""
    cls = type(module)
    if cls not in _SIGNATURES:
        try:
            _SIGNATURES[cls] = inspect.signature(module.forward)
        except (TypeError, ValueError):
            _SIGNATURES[cls] = None
    signature = _SIGNATURES[cls]
    named: dict[str, Any] = {}
    if signature is not None:
        try:
            named = dict(signature.bind_partial(*args, **kwargs).arguments)
        except TypeError:
            named = {}
    if not named:
        named = {**{str(i): a for i, a in enumerate(args)}, **kwargs}
    return [item for name, value in named.items() for item in _flatten(name, value)]


def _flatten(name: str, value: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors inside nested tuples, lists and dicts (diffusers' output classes are dicts), with their paths."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from _flatten(f"{name}[{i}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(f"{name}.{key}", item)


def _tensors_of(args: tuple, kwargs: dict) -> Iterator[torch.Tensor]:
    for _, tensor in _flatten("args", (args, kwargs)):
        yield tensor
