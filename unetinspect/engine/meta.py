"""Shape-only results for the ops whose meta kernels are slow.

On the meta device torch computes output shapes with Python meta kernels for many ops — layer norm, matmuls,
convolution, softmax, group norm, arithmetic with a Python scalar — at 1-3 ms a call; the first of them imports
torch._dynamo or sympy (1.5-2 s each here). Together that was most of the 5 s an SDXL forward took on meta.
Their output shapes are simple, so we build them directly: contiguous, which any later view or reshape accepts.
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


def _require(condition: bool, message: str) -> None:
    """The shape checks of the real kernels, kept so that a mismatch still fails loudly on meta."""
    if not condition:
        raise RuntimeError(message)


def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    return _mm(a, b)


def _convolution(x: torch.Tensor, weight: torch.Tensor, bias: Any, stride: list[int], padding: list[int],
                 dilation: list[int], transposed: bool, output_padding: list[int], groups: int) -> Any:
    # The meta kernel's shape checks import sympy (1.5 s) on first use.
    if transposed:
        return None
    _require(x.shape[1] == weight.shape[1] * groups,
             f"convolution expected input with {weight.shape[1] * groups} channels, got {tuple(x.shape)}")
    spatial = [
        (size + 2 * pad - dil * (kernel - 1) - 1) // step + 1
        for size, kernel, step, pad, dil in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation)
    ]
    return _empty((x.shape[0], weight.shape[0], *spatial), x)


def _cat(tensors: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    shape = list(tensors[0].shape)
    dim = dim % len(shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.empty(shape, dtype=dtype, device="meta")


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    _require(a.shape[1] == b.shape[0], f"mat1 and mat2 shapes cannot be multiplied ({tuple(a.shape)} and "
                                       f"{tuple(b.shape)})")
    return _empty((a.shape[0], b.shape[1]), a)


def _bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    _require(a.shape[0] == b.shape[0] and a.shape[2] == b.shape[1],
             f"batch1 and batch2 shapes cannot be multiplied ({tuple(a.shape)} and {tuple(b.shape)})")
    return _empty((a.shape[0], a.shape[1], b.shape[2]), a)


def _upsample_nearest(x: torch.Tensor, output_size: Any, *scales: Any) -> torch.Tensor:
    if output_size is None:  # the .vec overload: scale factors instead of a size
        output_size = [int(size * scale) for size, scale in zip(x.shape[2:], scales[0])]
    return _empty((*x.shape[:2], *output_size), x)


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
    aten.mm.default: _mm,
    aten.bmm.default: _bmm,
    aten.convolution.default: _convolution,
    aten.upsample_nearest2d.default: _upsample_nearest,
    aten.upsample_nearest2d.vec: _upsample_nearest,
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
