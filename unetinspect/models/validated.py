"""Optional config fields read where the config's validation has already guaranteed them.

UNetConfig keeps diffusers' optional fields optional (None, or an int-or-list); its validation refuses a config
whose conditioning or blocks need one that is unset. The model code reads such a field through these, so the
guarantee is written once, with the field's name, instead of being re-derived (or ignored) at each use.
"""

from __future__ import annotations

from typing import TypeVar

from unetinspect.configs.unet import UNetConfig

T = TypeVar("T")


def required(value: T | None, name: str) -> T:
    """`value` of the field `name`, which the config's validation guarantees is set where it is read."""
    assert value is not None, f"{name} is None in a validated config"
    return value


def single_cross_attention_dim(config: UNetConfig) -> int:
    """cross_attention_dim as the one number that encoder_hid_proj, the text / text_image additions and GLIGEN
    are built from (validation refuses a per-block list with them, as diffusers cannot build that)."""
    width = config.cross_attention_dim
    assert not isinstance(width, list), f"cross_attention_dim={width!r} is a list in a validated UNetConfig"
    return width
