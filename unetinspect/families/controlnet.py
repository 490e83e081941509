"""ControlNet (diffusers' `ControlNetModel`): a trainable copy of a UNet's encoder that reads a conditioning image."""

from __future__ import annotations

from typing import Any

from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.families.family import DiagramKind, Family, Tensors
from unetinspect.families.sizes import Sizes
from unetinspect.families.unet2d import unet2d_inputs
from unetinspect.weights import controlnet_ldm


def controlnet_inputs(config: ControlNetConfig, tensors: Tensors, sizes: Sizes) -> dict[str, Any]:
    """The inputs of the UNet it copies, and `controlnet_cond`: the conditioning image at pixel size, which its
    encoder brings down to the latent's."""
    scale = 2 ** (len(config.conditioning_embedding_out_channels) - 1)  # the encoder's downsampling (8 for SD)
    h, w = sizes.latent
    inputs = unet2d_inputs(config.unet, tensors, sizes)
    return {**inputs, "controlnet_cond": tensors.floats(sizes.batch, config.conditioning_channels, h * scale,
                                                        w * scale)}


CONTROLNET: Family[ControlNetConfig] = Family(
    name="controlnet",
    kind="controlnet",
    label="ControlNet",
    class_name="ControlNetModel",
    config_class=ControlNetConfig,
    model_path="unetinspect.models.controlnet:ControlNetModel",
    layout="ldm-controlnet",
    looks_like_original=controlnet_ldm.looks_like_ldm_controlnet,
    infer_original_config=controlnet_ldm.infer_controlnet_config,
    original_key_map=controlnet_ldm.diffusers_key_map,
    diffusers_roots=frozenset({"controlnet_cond_embedding", "controlnet_down_blocks", "controlnet_mid_block"}),
    min_roots=1,  # no other model has any of them
    make_inputs=controlnet_inputs,
    diagram_kinds=(DiagramKind("ControlNet", "controlnet",
                               "ControlNet: its residuals are added to the skips and the mid block",
                               light="#f4d7e9", dark="#6a2f55"),),
    refusals={"controlnet": "a ControlNet is an add-on itself; its residuals go into the UNet it was copied from",
              "lora": "a ControlNet's LoRAs are not mapped yet",
              "motion-adapter": "a motion adapter animates an image UNet, not a ControlNet"},
)
