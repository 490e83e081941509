"""A UNet session turned into the step of a ControlNet pipeline: the ControlNets loaded as the UNet was, checked to
fit it, and wrapped with it in one `ControlledUNet`, with one conditioning image per ControlNet at pixel size."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import RunError
from unetinspect.families import Sizes
from unetinspect.models.controlled import ControlledUNet
from unetinspect.models.controlnet import ControlNetModel
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.sources.inputs import make_inputs
from unetinspect.sources.loading import load_model
from unetinspect.sources.resolve import Source

# What a ControlNet's residuals must agree on with the UNet they are added to.
MUST_MATCH = ("block_out_channels", "layers_per_block", "cross_attention_dim", "in_channels")


def with_controlnets(unet: nn.Module, inputs: dict[str, Any], base: Source, controlnets: tuple[Source, ...],
                     sizes: Sizes, device: torch.device, dtype: torch.dtype) -> tuple[ControlledUNet, dict[str, Any]]:
    """The step model and its inputs (the UNet's, plus `controlnet_cond`: one image per ControlNet). The base's
    family says, in its own words, when it cannot take a ControlNet."""
    reason = base.family.refusals.get("controlnet")
    if reason is not None:
        raise RunError(f"--controlnet goes with an image UNet, not with {base.label} ({base.family.label}): {reason}",
                       "give the UNet the ControlNet was made for")
    config = base.config
    # every family that takes a ControlNet reads a UNet's config and builds a UNet2DConditionModel (or its kin)
    assert isinstance(config, UNetConfig) and isinstance(unet, UNet2DConditionModel)
    models: list[ControlNetModel] = []
    images: list[torch.Tensor] = []
    for source in controlnets:
        if not isinstance(source.config, ControlNetConfig):
            raise RunError(f"--controlnet {source.spec}: not a ControlNet (its config is a {source.family.label}'s)",
                           "give a ControlNet folder, config.json or single file")
        for field in MUST_MATCH:
            theirs, ours = getattr(source.config.unet, field), getattr(config, field)
            if theirs != ours:
                raise RunError(f"--controlnet {source.spec}: {field} is {theirs!r}, the UNet's is {ours!r}",
                               "the ControlNet was made for another base model")
        model = load_model(source, device, dtype)
        assert isinstance(model, ControlNetModel)  # a ControlNetConfig's family builds one
        models.append(model)
        images.append(make_inputs(source.config, sizes, device=device, dtype=dtype, family=source.family)
                      ["controlnet_cond"])
    return ControlledUNet(unet, models).eval(), {**inputs, "controlnet_cond": images}
