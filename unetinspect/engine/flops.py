"""Counting FLOPs of whatever runs, on any device, attention included.

We use the formulas of `torch.utils.flop_counter` (matmuls, convolutions, the fused attention kernels: 2 FLOPs
per multiply-add) in a minimal dispatch mode that only keeps a running total, so that trace hooks can read the
total before and after each module call and attribute the difference to it.

One gap is filled: on the CPU, `scaled_dot_product_attention` runs `_scaled_dot_product_flash_attention_for_cpu`,
for which torch registers no formula, so `FlopCounterMode` silently counts attention as zero there (677 G instead
of 803 G for SD 1.5 at 512²). We count it with the same formula as the GPU kernels; on the meta device SDPA
decomposes into two `bmm`s, which are counted as such. Elementwise work (norms, activations, softmax) is not
counted, as in every FLOP counter that reports model FLOPs.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry, sdpa_flop_count

from unetinspect.engine import meta

aten = torch.ops.aten


def _cpu_flash_attention_flops(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *args: Any,
                               out_val: Any = None, **kwargs: Any) -> int:
    return sdpa_flop_count(query.shape, key.shape, value.shape)


def _mm_flops(a: torch.Tensor, b: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    return 2 * a.shape[0] * a.shape[1] * b.shape[1]


def _addmm_flops(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    return _mm_flops(a, b)


def _bmm_flops(a: torch.Tensor, b: torch.Tensor, *args: Any, **kwargs: Any) -> int:
    return 2 * a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _convolution_flops(x: torch.Tensor, weight: torch.Tensor, *args: Any, out_val: torch.Tensor, **kwargs: Any) -> int:
    """2 × output elements × multiply-adds per output (in_channels/groups × kernel area), as torch counts it."""
    return 2 * out_val.numel() * weight[0].numel()


# packet → formula(*args, out_val=output, **kwargs): torch's registry plus the CPU attention kernel it lacks,
# with the hot formulas written on tensors directly (torch's wrap every call in a pytree map of shapes).
FORMULAS = {
    **flop_registry,
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
    aten.mm: _mm_flops,
    aten.addmm: _addmm_flops,
    aten.bmm: _bmm_flops,
    aten.convolution: _convolution_flops,
}


@functools.cache
def _composite(func: torch._ops.OpOverload) -> bool:
    """Whether an op is made of others (CompositeImplicitAutograd), which is how it can reach a dispatch mode whole."""
    return func is not torch.ops.prim.device.default and torch._C._dispatch_has_kernel_for_dispatch_key(
        func.name(), "CompositeImplicitAutograd")


class FlopCounter(TorchDispatchMode):
    """Keeps `total`, the FLOPs of every op dispatched while it is active.

    On the meta device it also answers the ops whose meta kernels are slow from their shapes (`meta.shortcut`).
    """

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo.disable by default, and the first call then imports
        # torch._dynamo: 1-2 s of start-up for a mode that never runs under torch.compile.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func._overloadpacket not in FORMULAS and _composite(func):
            # Under inference_mode composite ops arrive whole (aten.linear, not t + addmm): run their decomposition
            # with this mode active, so the parts that carry the FLOPs come through here one by one.
            with self:
                return func.decompose(*args, **kwargs)
        out = meta.shortcut(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        formula = FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out
