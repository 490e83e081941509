"""Shape-only results for the ops whose meta kernels are slow.

On the meta device torch computes output shapes with Python reference implementations for some ops — layer norm,
addmm, softmax, group norm, arithmetic with a Python scalar — at 1-3 ms a call, and the first of them imports
torch._dynamo (2 s here). Together that was most of the 5 s an SDXL forward took on meta. Their output shapes are
trivial, so we build them directly: contiguous, which any later view or reshape accepts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten


def _empty(shape: Any, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device="meta")


def _layer_norm(x: torch.Tensor, normalized_shape: list[int], *args: Any) -> tuple[torch.Tensor, ...]:
    stats = (*x.shape[: x.dim() - len(normalized_shape)], *([1] * len(normalized_shape)))
    return _empty(x.shape, x), _empty(stats, x), _empty(stats, x)


def _group_norm(x: torch.Tensor, weight: Any, bias: Any, n: int, c: int, hw: int, groups: int,
                eps: float) -> tuple[torch.Tensor, ...]:
    return _empty(x.shape, x), _empty((n, groups), x), _empty((n, groups), x)


def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return _empty((a.shape[0], b.shape[1]), a)


def _cat(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    shape = list(tensors[0].shape)
    dim = dim % len(shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.empty(shape, dtype=dtype, device="meta")


def _same_shape(x: torch.Tensor, *args: Any, dtype: torch.dtype | None = None, **kwargs: Any) -> torch.Tensor:
    return _empty(x.shape, x, dtype)


def _arange(*args: Any, device: Any = None, **kwargs: Any) -> torch.Tensor:
    # The meta arange is a Python reference that imports torch._dynamo (seconds) on first use; the values are
    # tiny, so make them on the CPU and keep only the shape.
    kwargs.pop("pin_memory", None)
    return torch.arange(*args, **kwargs).to("meta")


SHORTCUTS: dict[Any, Callable[..., Any]] = {
    aten.native_layer_norm.default: _layer_norm,
    aten.native_group_norm.default: _group_norm,
    aten.addmm.default: _addmm,
    aten._safe_softmax.default: _same_shape,
    aten.gelu.default: _same_shape,
}
# ops whose first argument is a list of tensors
LIST_SHORTCUTS: dict[Any, Callable[..., Any]] = {aten.cat.default: _cat}
FACTORY_SHORTCUTS: dict[Any, Callable[..., Any]] = {
    aten.arange.default: _arange,
    aten.arange.start: _arange,
    aten.arange.start_step: _arange,
}


def _pointwise(func: Any, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """Out-of-place pointwise float arithmetic: the broadcast shape in the promoted dtype."""
    if func._schema.name.endswith("_") or kwargs or func._schema.returns[0].type != torch._C.TensorType.get():
        return None
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    if not tensors or not all(t.is_meta and t.is_floating_point() for t in tensors):
        return None
    if not all(isinstance(a, (torch.Tensor, int, float)) for a in args):
        return None
    dtype = tensors[0].dtype
    for operand in args[1:]:
        dtype = torch.result_type(torch.empty((), dtype=dtype, device="meta"), operand) \
            if not isinstance(operand, torch.Tensor) or operand.dim() == 0 else torch.promote_types(dtype, operand.dtype)
    return torch.empty(_broadcast(t.shape for t in tensors), dtype=dtype, device="meta")


def _broadcast(shapes: Any) -> tuple[int, ...]:
    """NumPy broadcasting of plain shapes (torch.broadcast_shapes imports sympy on first use: 0.5 s)."""
    result: list[int] = []
    for shape in shapes:
        shape = list(shape)
        if len(shape) > len(result):
            result = [1] * (len(shape) - len(result)) + result
        offset = len(result) - len(shape)
        for i, size in enumerate(shape):
            if size != 1:
                result[offset + i] = size
    return tuple(result)


BOOLEAN_RESULTS = {"eq", "ne", "lt", "le", "gt", "ge", "isnan", "isinf", "isfinite", "logical_and", "logical_or",
                   "logical_not", "logical_xor", "signbit", "where"}


def shortcut(func: Any, args: tuple, kwargs: dict) -> Any:
    """The op's result built from shapes alone, or None when the op has no shortcut or runs on real data."""
    if torch.Tag.pointwise in func.tags and func._overloadpacket.__name__ not in BOOLEAN_RESULTS:
        return _pointwise(func, args, kwargs)
    factory = FACTORY_SHORTCUTS.get(func)
    if factory is not None:
        return factory(*args, **kwargs) if torch.device(kwargs.get("device") or "cpu").type == "meta" else None
    if func in LIST_SHORTCUTS:
        tensors = args[0]
        return LIST_SHORTCUTS[func](*args, **kwargs) if all(t.is_meta and t.dim() for t in tensors) else None
    handler = SHORTCUTS.get(func)
    if handler is None or not (isinstance(args[0], torch.Tensor) and args[0].is_meta):
        return None
    return handler(*args, **kwargs)
