"""Recording every module call of a forward pass: the Trace every view is computed from.

Forward hooks (with kwargs, so `temb` and `encoder_hidden_states` are seen by name) capture, per call: the
module's path and class, its depth in the call tree, the shapes and dtypes of its tensor inputs and outputs,
its parameters and the FLOPs that ran inside it. Each input tensor also remembers which earlier calls output
that very tensor — which is how a view knows that `up_blocks.1` consumes the skips of `down_blocks.2`.
Works on any `nn.Module`, ours or diffusers'; every hook is removed afterwards, also when the forward raises.

On request (`record_ops=True`) the tensor operations that modules run in their own code, between their child
calls, are recorded too (`Trace.ops`): the `torch.cat` that feeds a skip into an up block's resnet, a resnet's
residual `+`. Hooks cannot see them, and a diagram needs them to follow the data from call to call.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from unetinspect.engine.flops import FlopCounter


@dataclass(frozen=True)
class TensorMeta:
    """One tensor argument or result: where it sits in the call, its shape and dtype.

    `producers` lists the calls (record indices, innermost first) that returned this very tensor; index 0 (the
    root call) means it is an input of the whole model. `key` is the same number wherever the same tensor object
    appears in one trace; `op` is the recorded op (index into `Trace.ops`) that computed it, if any.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    producers: tuple[int, ...] = ()
    key: int | None = None
    op: int | None = None


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
        return call_name(self.path, self.call)


def call_name(path: str, call: int) -> str:
    """How a view names the `call`-th call (from 0) of the module at `path`: `conv_in`, `nonlinearity#2`."""
    label = path or "(model)"
    return f"{label}#{call + 1}" if call else label


@dataclass
class OpRecord:
    """One tensor operation a module ran in its own code, not inside a child module (`+`, `torch.cat`, a view).

    `parent` is the call whose code ran it; `position` the index of the next call to begin, so the op ran after
    every call with a smaller index had begun. Operations inside leaf modules are their call's and not recorded.
    """

    index: int
    name: str  # the function's name: "add", "cat", "getitem", "scaled_dot_product_attention"
    parent: int
    position: int
    inputs: list[TensorMeta]
    outputs: list[TensorMeta]


@dataclass
class Trace:
    """The ordered calls of one forward pass, and totals of the model (and, when recorded, the glue ops)."""

    model_type: str
    records: list[CallRecord]
    total_params: int
    trainable_params: int
    param_bytes: int
    ops: list[OpRecord] = field(default_factory=list)

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
        """The call at `depth` (or the deepest one above it) that returned `tensor`; the root for model inputs.

        Among calls at the same depth the latest wins: an identity (Dropout in eval) returns its input tensor.
        """
        candidates = [self.records[i] for i in tensor.producers]
        shallow_enough = [r for r in candidates if r.depth <= depth]
        return max(shallow_enough, key=lambda r: (r.depth, r.index)) if shallow_enough else None


def trace_model(model: nn.Module, inputs: dict[str, Any], *, count_flops: bool = True,
                record_ops: bool = False) -> Trace:
    """Run `model(**inputs)` once under `torch.no_grad()` and record every module call (and op, if asked)."""
    recorder = _Recorder(model)
    handles = []
    try:
        for path, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(recorder.pre_hook(path), with_kwargs=True))
            handles.append(module.register_forward_hook(recorder.post_hook(), with_kwargs=True, always_call=True))
        with torch.no_grad(), (FlopCounter() if count_flops else _NoFlops()) as counter, \
                (_OpRecorder(recorder) if record_ops else _NoFlops()):
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
        ops=recorder.ops,
    )


class _NoFlops:
    """Stands in for an optional context (FLOP counting, op recording) that is switched off."""

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
        self.keys: dict[int, tuple[weakref.ref, int]] = {}
        self.next_key = 0
        self.op_of: dict[int, tuple[weakref.ref, int]] = {}
        self.ops: list[OpRecord] = []
        self.leaf_calls: set[int] = set()
        self.counter: FlopCounter | _NoFlops = _NoFlops()
        self.param_counts = params_per_path(model)

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
            if next(module.children(), None) is None:
                self.leaf_calls.add(record.index)
            self.records.append(record)
            self.stack.append((record, self.counter.total))

        return hook

    def post_hook(self):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not self.stack:
                return
            record, flops_before = self.stack.pop()
            record.flops = self.counter.total - flops_before
            for name, tensor in flatten_tensors("out", output):
                record.outputs.append(self._meta(name, tensor, lookup=False))
                self._register(tensor, record.index)

        return hook

    def record_op(self, func: Any, args: tuple, kwargs: dict, output: Any) -> None:
        """Keep an op run in a non-leaf module's own code that made new tensors (not shape queries, not no-ops)."""
        if not self.stack or self.stack[-1][0].index in self.leaf_calls:
            return
        outputs = list(flatten_tensors("out", output))
        if not outputs:  # most calls: shape and dtype queries
            return
        inputs = list(flatten_tensors("in", (args, kwargs)))
        seen = {id(t) for _, t in inputs}
        made = [(name, t) for name, t in outputs if id(t) not in seen]
        if not made:
            return
        op = OpRecord(
            index=len(self.ops), name=getattr(func, "__name__", str(func)).strip("_"),
            parent=self.stack[-1][0].index, position=len(self.records),
            inputs=[self._meta(f"{i}", t, lookup=True) for i, (_, t) in enumerate(inputs)], outputs=[],
        )
        for name, tensor in made:
            self.op_of[id(tensor)] = (weakref.ref(tensor), op.index)
            op.outputs.append(self._meta(name, tensor, lookup=False))
        self.ops.append(op)

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
        made_by = self.op_of.get(id(tensor))
        op = made_by[1] if made_by is not None and made_by[0]() is tensor else None
        return TensorMeta(name, tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), producers,
                          key=self._key(tensor), op=op)

    def _key(self, tensor: torch.Tensor) -> int:
        """The tensor's number in this trace: the same object always gets the same one (ids are reused)."""
        entry = self.keys.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            entry = (weakref.ref(tensor), self.next_key)
            self.keys[id(tensor)] = entry
            self.next_key += 1
        return entry[1]


class _OpRecorder(TorchFunctionMode):
    """Hands every torch function call made during the forward to the recorder, after running it."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        self.recorder.record_op(func, args, kwargs, output)
        return output


def params_per_path(model: nn.Module) -> dict[str, int]:
    """Parameters under each module path (children included), in one pass over the parameters."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        parts = name.split(".")[:-1]
        for end in range(len(parts) + 1):
            prefix = ".".join(parts[:end])
            counts[prefix] = counts.get(prefix, 0) + param.numel()
    return counts


_SIGNATURES: dict[type, inspect.Signature | None] = {}


def named_arguments(module: nn.Module, args: tuple, kwargs: dict) -> dict[str, Any]:
    """A call's arguments by the names its forward gives them (`sample`, `timestep`, ...); by position ("0",
    "1", ...) when the signature cannot be read or does not fit."""
    cls = type(module)
    if cls not in _SIGNATURES:
        try:
            _SIGNATURES[cls] = inspect.signature(module.forward)
        except (TypeError, ValueError):
            _SIGNATURES[cls] = None
    signature = _SIGNATURES[cls]
    if signature is not None:
        try:
            named = dict(signature.bind_partial(*args, **kwargs).arguments)
        except TypeError:
            named = {}
        if named:
            return named
    return {**{str(i): a for i, a in enumerate(args)}, **kwargs}


def _named_tensors(module: nn.Module, args: tuple, kwargs: dict) -> list[tuple[str, torch.Tensor]]:
    """Tensor arguments with the names the forward gives them (`hidden_states`, `temb`, ...)."""
    return [item for name, value in named_arguments(module, args, kwargs).items()
            for item in flatten_tensors(name, value)]


def flatten_tensors(name: str, value: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors inside nested tuples, lists and dicts (diffusers' output classes are dicts), with their paths."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from flatten_tensors(f"{name}[{i}]", item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from flatten_tensors(f"{name}.{key}", item)


def _tensors_of(args: tuple, kwargs: dict) -> Iterator[torch.Tensor]:
    for _, tensor in flatten_tensors("args", (args, kwargs)):
        yield tensor
