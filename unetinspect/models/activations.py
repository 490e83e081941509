"""The activation names diffusers configs use, mapped to torch modules."""

from __future__ import annotations

from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "mish": nn.Mish,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
}


def get_activation(name: str) -> nn.Module:
    """A fresh activation module for a config name such as `act_fn` ("silu" and "swish" are the same)."""
    return _ACTIVATIONS[name.lower()]()
