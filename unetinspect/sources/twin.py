"""diffusers' twin of our model: the same source run by the other implementation (`--impl diffusers`).

Each family names its diffusers class; the twin is built from our model's config on the meta device and then
handed our very weight tensors, so the two run the same numbers with no copy. diffusers is imported only here,
and only when a twin is asked for.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from unetinspect.errors import RunError
from unetinspect.families import Family, family_of_object

IMPLS = ("ours", "diffusers")


def as_diffusers(model: nn.Module, family: Family[Any] | None = None) -> nn.Module:
    """diffusers' own model of our `model`'s config, holding the very same weight tensors (no copy): the same
    source run by the other implementation. On the meta device it is the structure alone. `family`: the model's,
    when the caller has settled it."""
    family = family or family_of_object(model)
    if family is None or family.is_diffusers_object(model):
        raise RunError(f"--impl diffusers rebuilds one of our models; a {type(model).__name__} is not one",
                       "leave --impl at ours for this model")
    twin_class = family.diffusers_class()
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        twin = twin_class.from_config(family.config_of(model).to_dict()).eval()
    twin.load_state_dict(model.state_dict(), assign=True, strict=True)
    return twin
