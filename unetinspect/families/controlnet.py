"""ControlNet (diffusers' `ControlNetModel`): a trainable copy of a UNet's encoder that reads a conditioning image."""

from collections.abc import Callable
from typing import Any

from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.families.family import Family
from unetinspect.weights import controlnet_ldm


def conditioning_image(config: ControlNetConfig, floats: Callable[..., Any], batch: int, latent: tuple[int, int]
                       ) -> dict[str, Any]:
    """`controlnet_cond`: the conditioning image at pixel size, which its encoder brings down to the latent's."""
    scale = 2 ** (len(config.conditioning_embedding_out_channels) - 1)  # the encoder's downsampling (8 for SD)
    h, w = latent
    return {"controlnet_cond": floats(batch, config.conditioning_channels, h * scale, w * scale)}


CONTROLNET = Family(
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
    extra_inputs=conditioning_image,
    diagram_kinds=(("ControlNet", "controlnet", "ControlNet: its residuals are added to the skips and the mid block"),),
)
