"""The meta-device shortcuts give the shapes and dtypes the real kernels give."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from unetinspect.engine.flops import FlopCounter


def _both(fn, *tensors):
    real = fn(*tensors)
    with FlopCounter():
        fake = fn(*(t.to("meta") for t in tensors))
    return real, fake


def test_shortcuts_match_real_kernels():
    x = torch.randn(2, 8, 6, 5)
    w = torch.randn(4, 8, 3, 3)
    cases = [
        (lambda a, b: F.conv2d(a, b, stride=2, padding=1), x, w),
        (lambda a: F.layer_norm(a, (5,)), x),
        (lambda a: F.group_norm(a, 4), x),
        (lambda a: F.interpolate(a, scale_factor=2.0, mode="nearest"), x),
        (lambda a: F.interpolate(a, size=(13, 11), mode="nearest"), x),
        (lambda a: torch.cat([a, a], dim=1), x),
        (lambda a: (a * -2.5 + 1).sin(), x),
        (lambda a: F.gelu(a).softmax(-1), x),
        (lambda a: torch.nn.functional.linear(a, torch.randn(3, 5, device=a.device)), x),
        (lambda a: a.flatten(0, 1) @ a.flatten(0, 1).transpose(1, 2), x),
    ]
    for fn, *tensors in cases:
        real, fake = _both(fn, *tensors)
        assert fake.shape == real.shape and fake.dtype == real.dtype


def test_shape_errors_still_raise_on_meta():
    a, b = torch.empty(2, 3, device="meta"), torch.empty(4, 5, device="meta")
    with FlopCounter():
        try:
            a @ b
        except RuntimeError as exc:
            assert "cannot be multiplied" in str(exc)
        else:
            raise AssertionError("a shape mismatch passed on meta")
