"""The conditional UNet of Stable Diffusion and its kin: diffusers' `UNet2DConditionModel`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from unetinspect.configs.unet import UNetConfig
from unetinspect.families.family import Family
from unetinspect.weights import ldm

# The pooled text embedding SDXL adds to its size/crop conditioning (OpenCLIP bigG's projection width).
SDXL_POOLED_DIM = 1280


def sdxl_text_embeds_dim(config: UNetConfig) -> int:
    """Width of `text_embeds` for `text_time` conditioning: the pooled text, with the rest taken by time ids.

    The config only gives the sum (pooled + n_ids × addition_time_embed_dim); SDXL base (6 ids) and refiner
    (5 ids) both pool to 1280, so that is assumed when it fits, else 6 time ids.
    """
    total, per_id = config.projection_class_embeddings_input_dim, config.addition_time_embed_dim
    if total > SDXL_POOLED_DIM and (total - SDXL_POOLED_DIM) % per_id == 0:
        return SDXL_POOLED_DIM
    return total - 6 * per_id


def sdxl_inputs(config: UNetConfig, floats: Callable[..., Any], sizes: Any) -> dict[str, Any]:
    """SDXL's `added_cond_kwargs` (pooled text, size and crop ids) at these sizes; the SDXL AnimateDiff reads
    them too. torch is imported here, not at the top: the registry stays torch-free."""
    import torch

    text_dim = sdxl_text_embeds_dim(config)
    n_ids = (config.projection_class_embeddings_input_dim - text_dim) // config.addition_time_embed_dim
    # original size, crop top-left, then target size (base) or aesthetic score (refiner)
    h, w = sizes.latent
    pixels_h, pixels_w = sizes.pixels or (h * 8, w * 8)  # SDXL-style conditioning implies its VAE's factor
    ids = [pixels_h, pixels_w, 0, 0] + ([pixels_h, pixels_w] if n_ids == 6 else [6.0] * max(n_ids - 4, 0))
    return {"text_embeds": floats(sizes.batch, text_dim),
            "time_ids": torch.tensor(ids[:n_ids], dtype=torch.float32).repeat(sizes.batch, 1)}


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
