"""The conditional UNet of Stable Diffusion and its kin: diffusers' `UNet2DConditionModel`."""

from __future__ import annotations

from typing import Any

from unetinspect.configs.unet import UNetConfig
from unetinspect.families.family import Family, Tensors
from unetinspect.families.sizes import Sizes
from unetinspect.weights import ldm


def unet2d_inputs(config: UNetConfig, tensors: Tensors, sizes: Sizes) -> dict[str, Any]:
    """The image UNet's inputs (`families.unet2d_inputs`, which imports torch: read on first use)."""
    from unetinspect.families.unet2d_inputs import image_unet_inputs

    return image_unet_inputs(config, tensors, sizes)


UNET2D: Family[UNetConfig] = Family(
    name="unet2d",
    kind="unet",
    label="UNet",
    class_name="UNet2DConditionModel",
    config_class=UNetConfig,
    model_path="unetinspect.models.unet:UNet2DConditionModel",
    layout="ldm",
    looks_like_original=ldm.looks_like_ldm,
    infer_original_config=ldm.infer_config,
    original_key_map=ldm.diffusers_key_map,
    # three of these: a LoRA or an IP-Adapter names one or two UNet modules, never the whole skeleton
    diffusers_roots=frozenset({"down_blocks", "up_blocks", "mid_block", "conv_in", "time_embedding"}),
    min_roots=3,
    make_inputs=unet2d_inputs,
)
