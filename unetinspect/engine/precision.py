"""One module run in a lower precision while the rest of the model stays as it is: the number formats, and the
context that puts a module in one and takes it back out exactly.

Two kinds of format, each with its convention stated in `FORMATS` (every output names it):
- real dtypes (fp16, bf16): the module's floating parameters and buffers are cast, its floating inputs are cast
  on the way in and its outputs cast back to float32 on the way out, so it runs the device's own half kernels;
- fake quantisation (fp8 e4m3, int8): numbers rounded through the format and kept in float32 — the weights of
  every Linear and convolution inside (int8: symmetric, one scale per output channel; fp8: one scale per tensor,
  its absmax mapped to 448) and the activations entering them (one scale per tensor, from each call's own absmax,
  i.e. dynamic); biases and norms stay float32. int8 goes through torch's own `fake_quantize_per_*` kernels.

A parameter keeps its identity throughout: only its `.data` is swapped, and the very tensor it held is put back,
so values, dtypes, devices and anything holding the parameter object are as they were; every hook added is
removed — also when the forward raised.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from unetinspect.errors import RunError

FP8_MAX = 448.0  # the largest float8 e4m3 number
INT8_MAX = 127  # symmetric int8: -127..127 (no -128, so that the scale is the same both ways)
_QUANTISED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass(frozen=True)
class Format:
    """A number format a module can be put in: its name, the dtype it runs in (None: fake-quantised in
    float32), and the convention a figure measured in it follows."""

    name: str
    dtype: torch.dtype | None
    convention: str


FORMATS = {
    "fp16": Format("fp16", torch.float16, "float16: the block's floating parameters, buffers and inputs cast, its "
                   "outputs cast back to float32; the device's own float16 kernels"),
    "bf16": Format("bf16", torch.bfloat16, "bfloat16: the block's floating parameters, buffers and inputs cast, "
                   "its outputs cast back to float32; the device's own bfloat16 kernels"),
    "fp8": Format("fp8", None, "fp8 e4m3 fake quantisation: Linear/conv weights and their input activations "
                  "scaled per tensor so that the absmax is 448, rounded to float8_e4m3fn and scaled back "
                  "(activation scales dynamic, per call); biases and norms float32"),
    "int8": Format("int8", None, "int8 symmetric fake quantisation: Linear/conv weights per output channel, "
                   "their input activations per tensor (dynamic, per call), scale absmax/127, round to nearest "
                   "even, -127..127 (torch.fake_quantize_per_*); biases and norms float32"),
}
ALIASES = {"float16": "fp16", "half": "fp16", "bfloat16": "bf16", "fp8-e4m3": "fp8", "e4m3": "fp8",
           "float8": "fp8", "float8_e4m3fn": "fp8"}


def parse_format(name: str) -> Format:
    """"fp16", "bf16", "fp8", "int8" (or float16, bfloat16, e4m3…) → its `Format`; anything else is refused."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in FORMATS:
        raise RunError(f"unknown precision {name!r}", f"use any of {', '.join(FORMATS)}")
    return FORMATS[key]


@contextlib.contextmanager
def in_format(module: nn.Module, fmt: Format) -> Iterator[None]:
    """Run `module` (and what is inside it) in `fmt` while the block is open; then put it back exactly."""
    swapped: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles: list[Any] = []
    try:
        if fmt.dtype is not None:
            dtype = fmt.dtype
            for tensor in [*module.parameters(), *module.buffers()]:
                if tensor.is_floating_point():
                    swapped.append((tensor, tensor.data))
                    tensor.data = tensor.data.to(dtype)
            handles.append(module.register_forward_pre_hook(_cast_inputs(dtype), with_kwargs=True))
            handles.append(module.register_forward_hook(_cast_outputs))
        else:
            weights, activations = _QUANTISERS[fmt.name]
            for layer in [m for m in module.modules() if isinstance(m, _QUANTISED)]:
                swapped.append((layer.weight, layer.weight.data))
                layer.weight.data = weights(layer.weight.data)
                handles.append(layer.register_forward_pre_hook(_quantise_input(activations)))
        yield
    finally:
        for handle in handles:
            handle.remove()
        for tensor, data in reversed(swapped):
            tensor.data = data


# ---- real dtypes --------------------------------------------------------------------------------------------------


def _converted(value: Any, convert: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Every floating tensor in a nested value converted; the rest as it is. A dataclass output (a model's
    `...Output`) keeps its class."""
    if isinstance(value, torch.Tensor):
        return convert(value) if value.is_floating_point() else value
    if isinstance(value, dict):
        return type(value)((key, _converted(item, convert)) for key, item in value.items())
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(_converted(item, convert) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _converted(getattr(value, f.name), convert)
                                             for f in dataclasses.fields(value) if f.init})
    return value


def _cast_inputs(dtype: torch.dtype) -> Callable[..., tuple[tuple, dict]]:
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        cast = lambda t: t.to(dtype)  # noqa: E731
        return _converted(args, cast), _converted(kwargs, cast)
    return hook


def _cast_outputs(module: nn.Module, args: tuple, output: Any) -> Any:
    return _converted(output, lambda t: t.float())


# ---- fake quantisation --------------------------------------------------------------------------------------------


def fp8_fake_quant(tensor: torch.Tensor) -> torch.Tensor:
    """Scaled so that its absmax is 448, rounded to float8 e4m3 (nearest), scaled back; one scale per tensor."""
    scale = FP8_MAX / tensor.detach().abs().amax().float().clamp(min=torch.finfo(torch.float32).tiny)
    return ((tensor.float() * scale).to(torch.float8_e4m3fn).float() / scale).to(tensor.dtype)


def int8_fake_quant_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 with one scale for the whole tensor: absmax/127, round to nearest even, -127..127."""
    scale = (tensor.detach().abs().amax().float() / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    zero = torch.zeros((), dtype=torch.int32, device=tensor.device)
    return torch.fake_quantize_per_tensor_affine(tensor.float(), scale.reshape(1), zero.reshape(1), -INT8_MAX,
                                                 INT8_MAX).to(tensor.dtype)


def int8_fake_quant_channels(weight: torch.Tensor) -> torch.Tensor:
    """Symmetric int8 with one scale per output channel (dim 0): absmax/127 of each, as `..._tensor` does."""
    absmax = weight.detach().abs().flatten(1).amax(1).float()
    scale = (absmax / INT8_MAX).clamp(min=torch.finfo(torch.float32).tiny)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight.float(), scale, zero, 0, -INT8_MAX, INT8_MAX
                                                  ).to(weight.dtype)


_QUANTISERS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "fp8": (fp8_fake_quant, fp8_fake_quant),  # (weights, activations)
    "int8": (int8_fake_quant_channels, int8_fake_quant_tensor),
}


def _quantise_input(quantise: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., tuple | None]:
    def hook(module: nn.Module, args: tuple) -> tuple | None:
        if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            return (quantise(args[0]), *args[1:])
        return None
    return hook
