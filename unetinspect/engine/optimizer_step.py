"""What an optimizer's step allocates beyond its state, measured by running torch's own optimizer on meta tensors.

The step's temporaries depend on how torch runs it: the for-loop implementation of AdamW makes two tensors like
the parameter it updates (`exp_avg_sq.sqrt()` and its quotient) and keeps the last one until the next parameter's
are made; the `foreach` one makes `_foreach_sqrt` of every parameter of a device and dtype at once — a temporary as
large as all of them; the fused kernel updates in place (nothing to measure, and torch refuses it on meta; a test
checks it on the CPU). Rather than write these rules down, the real `torch.optim` class runs a warm-up step (its
state made) and then a second step under a dispatch mode that adds every storage an op makes and removes it when
its last tensor is freed; the most bytes alive above what existed before is the answer.

The for-loop implementations handle each parameter with the same code and keep only the last iteration's locals
into the next, so their step is run on each distinct pair of consecutive parameters and the most of those is the
whole step's. AdamW's and SGD's ops are all elementwise, so their parameters are run as 1-D tensors of the same
sizes (fewer distinct pairs), and their foreach step — whose every op allocates, over a list, what it would over
the list's tensors laid end to end — as one flat tensor per dtype; a test checks both against the plain run.

Parameters, gradients and states are meta tensors, so SDXL's step takes no memory. A scalar read back with
`.item()` (Adafactor's norms) reads 1.0 on meta, which changes no shape. The first step imports torch._dynamo
(torch.optim's steps are wrapped to disable it): a second or two, once per process.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from unetinspect.engine.memory import LiveBytes

STEPS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": lambda params, **impl: torch.optim.AdamW(params, **impl),
    "sgd": lambda params, **impl: torch.optim.SGD(params, lr=0.1, **impl),
    "adafactor": lambda params, **impl: torch.optim.Adafactor(params, **impl),
}
FUSED = ("adamw", "sgd")  # the torch.optim classes with a fused kernel (CUDA and the CPU)
ELEMENTWISE = ("adamw", "sgd")  # every op of their step is elementwise: a parameter's shape does not matter
FOREACH_DEVICES = ("cuda", "xpu", "meta")  # torch's default is foreach on these (meta stands for a CUDA GPU)


def default_foreach(device_type: str) -> bool:
    """torch.optim's own default (`_default_to_fused_or_foreach`): foreach where it has foreach kernels."""
    return device_type in FOREACH_DEVICES


def step_temporary_bytes(optimizer: str, params: Sequence[tuple[torch.Size, torch.dtype]], *,
                         foreach: bool, fused: bool = False) -> int:
    """The most bytes a steady step of `optimizer` (torch.optim, as named in views.memory) holds beyond the
    parameters, gradients and state, for trainable parameters of these shapes and dtypes, in this order."""
    if optimizer not in STEPS or fused:
        return 0  # fused kernels, and bitsandbytes' 8-bit AdamW, update in place in one kernel per parameter
    if optimizer in ELEMENTWISE:  # as 1-D tensors of the same sizes: the same allocations, fewer distinct pairs
        params = [(torch.Size((math.prod(shape),)), dtype) for shape, dtype in params]
    if foreach:
        if optimizer in ELEMENTWISE:  # a foreach op over a list allocates as it would over one flat tensor
            dtypes = dict.fromkeys(dtype for _, dtype in params)
            params = [(torch.Size((sum(math.prod(s) for s, d in params if d == dtype),)), dtype) for dtype in dtypes]
        return _measured_step(optimizer, tuple(params), foreach=True)
    pairs = {tuple(params[max(i - 1, 0):i + 1]) for i in range(len(params))}
    return max((_measured_step(optimizer, pair, foreach=False) for pair in pairs), default=0)


@functools.lru_cache(maxsize=256)
def _measured_step(optimizer: str, params: tuple[tuple[torch.Size, torch.dtype], ...], *, foreach: bool) -> int:
    """The most bytes beyond parameters, gradients and state a second step of the real optimizer holds."""
    tensors = [torch.nn.Parameter(torch.empty(shape, dtype=dtype, device="meta")) for shape, dtype in params]
    grads = [torch.empty_like(param) for param in tensors]
    for param, grad in zip(tensors, grads):
        param.grad = grad
    step = STEPS[optimizer](tensors, foreach=foreach)
    with _MetaStep():
        step.step()  # the warm-up step: the state is made
    live = _MetaStep()
    for param, grad in zip(tensors, grads):  # the same gradients: step() never replaces a .grad
        live.add(param)
        live.add(grad)
    for state in step.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                live.add(value)
    held = live.now
    with live:
        step.step()
    return live.peak - held


class _MetaStep(LiveBytes):
    """`LiveBytes` under no_grad, where a scalar read from a meta tensor reads 1.0."""

    def __enter__(self) -> _MetaStep:
        self._no_grad = torch.no_grad()
        self._no_grad.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._no_grad.__exit__(*exc)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
            return 1.0
        return super().__torch_dispatch__(func, types, args, kwargs)
