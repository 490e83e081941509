"""The conditional UNet of Stable Diffusion and its kin: diffusers' `UNet2DConditionModel`."""

from unetinspect.config import UNetConfig
from unetinspect.families.family import Family
from unetinspect.weights import ldm

UNET2D = Family(
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
)
