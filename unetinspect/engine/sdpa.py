"""Which attention kernel a memory measurement runs, and running exactly that one — on meta too.

What autograd keeps for an attention call depends on the kernel: the math kernel saves the attention probabilities
(batch × heads × queries × keys), flash and memory-efficient kernels save only q, k, v, the output and the
log-sum-exp. So a measurement has to run the kernel the trainer's machine will run:

- on the CPU and CUDA the kernel is torch's own, picked with `torch.nn.attention.sdpa_kernel`;
- on meta (which stands for a CUDA GPU) every `scaled_dot_product_attention` call is routed, by a
  `TorchFunctionMode`, to the aten op a CUDA GPU runs — `_scaled_dot_product_flash_attention` or
  `_scaled_dot_product_efficient_attention` — whose meta functions give the shapes of its real outputs and what its
  backward node saves, with the inputs prepared as torch's CUDA dispatch prepares them (head dims padded to 8 for
  flash, an additive bias padded to 16 keys for the efficient kernel; flash takes no mask, so a masked call runs the
  efficient kernel, as torch does).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.overrides import TorchFunctionMode

from unetinspect.errors import RunError

KERNELS = ("flash", "efficient", "math")
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
            "math": SDPBackend.MATH}
HALF = (torch.float16, torch.bfloat16)


def training_kernel(device_type: str, dtype: torch.dtype) -> tuple[str, str]:
    """The kernel torch runs for a training step on this device and dtype, and the rule, as a sentence."""
    if device_type == "cpu":
        return "flash", "the CPU's training kernel (torch's flash attention for the CPU)"
    if device_type in ("cuda", "meta"):
        gpu = "a CUDA GPU's" if device_type == "meta" else "this GPU's"
        if dtype in HALF:
            return "flash", f"{gpu} training kernel in fp16/bf16"
        return "efficient", f"{gpu} training kernel in fp32 (flash needs fp16/bf16)"
    return "math", f"the only kernel torch has on {device_type}"


def describe(kernel: str, device_type: str) -> str:
    """What the kernel keeps for backward and how it was run, for the note under the table."""
    keeps = ("keeps q, k, v, the output and the log-sum-exp, no attention matrix" if kernel != "math"
             else "keeps the attention probabilities (batch × heads × queries × keys)")
    how = {"meta": "through its CUDA op's meta function" if kernel != "math" else "on meta",
           "cpu": "torch's CPU kernel", "cuda": "torch's CUDA kernel"}.get(device_type, device_type)
    return f"{kernel} ({how}): {keeps}"


def check(kernel: str, device_type: str) -> None:
    """Refuse a kernel that does not exist, or that torch has not on this device, before anything runs."""
    if kernel not in KERNELS:
        raise RunError(f"unknown --attention {kernel!r}", f"use one of {', '.join(KERNELS)}")
    if device_type == "cpu" and kernel == "efficient":
        raise RunError("the memory-efficient attention kernel has no CPU implementation",
                       "measure it on meta (leave out --device) or use --attention flash")


@contextlib.contextmanager
def attention_kernel(kernel: str, device_type: str) -> Iterator[None]:
    """Every `scaled_dot_product_attention` inside runs `kernel` as `device_type` would run it."""
    check(kernel, device_type)
    if device_type == "meta" and kernel != "math":
        with _OnMeta(kernel):
            yield
        return
    with sdpa_kernel(BACKENDS[kernel]):
        try:
            yield
        except RuntimeError as error:
            if "No viable backend" not in str(error):
                raise
            raise RunError(f"torch cannot run the {kernel} attention kernel here ({str(error).splitlines()[0]})",
                           "pick another --attention, or --dtype fp16/bf16 for flash on CUDA") from None


class _OnMeta(TorchFunctionMode):
    """Routes `F.scaled_dot_product_attention` to the CUDA op of `kernel`; everything else runs as it is."""

    def __init__(self, kernel: str) -> None:
        super().__init__()
        self.kernel = kernel

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        return _cuda_sdpa(self.kernel, *args, **kwargs)


def _cuda_sdpa(kernel: str, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0, is_causal: bool = False,
               scale: float | None = None, enable_gqa: bool = False) -> torch.Tensor:
    """One attention call as torch's CUDA dispatch (aten/src/ATen/native/transformers/attention.cpp) runs it."""
    if enable_gqa:
        key = key.repeat_interleave(query.shape[-3] // key.shape[-3], -3)
        value = value.repeat_interleave(query.shape[-3] // value.shape[-3], -3)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    if kernel == "flash" and attn_mask is None:
        head_dim = query.shape[-1]
        pad = -head_dim % 8
        if pad:
            query, key, value = (F.pad(t, (0, pad)) for t in (query, key, value))
        out = torch.ops.aten._scaled_dot_product_flash_attention(
            query, key, value, dropout_p, is_causal, False, scale=scale or 1 / math.sqrt(head_dim))[0]
        return out[..., :head_dim] if pad else out
    bias = _efficient_bias(attn_mask, query, key) if attn_mask is not None else None
    return torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, needs_grad, dropout_p, is_causal, scale=scale)[0]


def _efficient_bias(mask: torch.Tensor, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """A mask as the efficient kernel takes it: additive, its last dim padded to a multiple of 16 and sliced back,
    broadcast to (batch, heads, queries, keys) — torch's `preprocess_mask`."""
    if mask.dtype == torch.bool:
        mask = torch.zeros(mask.shape, dtype=query.dtype, device=mask.device).masked_fill(~mask, -math.inf)
    keys = key.shape[-2]
    pad = -keys % 16
    if pad:
        mask = F.pad(mask, (0, pad))[..., :keys]
    return mask.expand(query.shape[0], query.shape[-3], query.shape[-2], keys)
