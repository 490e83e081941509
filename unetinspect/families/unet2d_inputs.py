"""The inputs of an image UNet's forward (diffusers' `UNet2DConditionModel`): what a pipeline passes at one
denoising step, for every conditioning its config turns on — class labels, the guidance embedding, Kandinsky's
image embeddings and hint, SDXL's size and crop ids, GLIGEN's boxes.

The UNet family's input maker (`image_unet_inputs`); the ControlNet and AnimateDiff makers build on it. It imports
torch, so the records name it through a wrapper that imports this module on first use (the registry stays
torch-free).
"""

from __future__ import annotations

from typing import Any

import torch

from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import ConfigError
from unetinspect.families.family import Tensors
from unetinspect.families.sizes import Sizes
from unetinspect.models.attention import DualTransformer2DModel

HINT_FACTOR = 8  # Kandinsky's hint encoder halves the hint image three times
# The pooled text embedding SDXL adds to its size/crop conditioning (OpenCLIP bigG's projection width).
SDXL_POOLED_DIM = 1280
SDXL_TIME_IDS = 6  # original size, crop top-left, target size (the base model's; the refiner's 5 pool to 1280)


def image_unet_inputs(config: UNetConfig, tensors: Tensors, sizes: Sizes) -> dict[str, Any]:
    """Keyword arguments of one call of an image UNet of `config` at `sizes`."""
    b, (h, w), floats = sizes.batch, sizes.latent, tensors.floats
    inputs: dict[str, Any] = {
        "sample": floats(b, config.sample_channels, h, w),
        "timestep": torch.full((b,), 999, dtype=torch.long, device=tensors.device),
        "encoder_hidden_states": _context(config, tensors, b, sizes.text_len),
    }
    if config.class_embed_type == "timestep":
        inputs["class_labels"] = tensors.longs(1000, b)
    elif config.class_embed_type is None and config.num_class_embeds:
        inputs["class_labels"] = tensors.longs(config.num_class_embeds, b)
    elif config.class_embed_type in ("projection", "simple_projection"):
        inputs["class_labels"] = floats(b, _required(config.projection_class_embeddings_input_dim,
                                                     "projection_class_embeddings_input_dim"))
    elif config.class_embed_type == "identity":
        inputs["class_labels"] = floats(b, config.time_embed_dim)
    if config.time_cond_proj_dim is not None:
        inputs["timestep_cond"] = floats(b, config.time_cond_proj_dim)
    added = {**_projection_inputs(config, tensors, b), **_addition_inputs(config, tensors, sizes)}
    if added:
        inputs["added_cond_kwargs"] = {k: v.to(device=tensors.device, dtype=tensors.dtype) for k, v in added.items()}
    if config.attention_type in ("gated", "gated-text-image"):
        inputs["cross_attention_kwargs"] = {"gligen": _gligen_inputs(config, tensors, b)}
    return inputs


def sdxl_text_embeds_dim(config: UNetConfig) -> int:
    """Width of `text_embeds` for `text_time` conditioning: the pooled text, with the rest taken by time ids.

    The config only gives the sum (pooled + n_ids × addition_time_embed_dim); SDXL base (6 ids) and refiner
    (5 ids) both pool to 1280, so that is assumed when it fits, else 6 time ids — which must then fit too.
    """
    total, per_id = _text_time_widths(config)
    if total > SDXL_POOLED_DIM and (total - SDXL_POOLED_DIM) % per_id == 0:
        return SDXL_POOLED_DIM
    if total < SDXL_TIME_IDS * per_id:
        raise ConfigError(
            f"addition_embed_type='text_time': projection_class_embeddings_input_dim={total} is narrower than the "
            f"{SDXL_TIME_IDS} time ids SDXL passes ({SDXL_TIME_IDS} × addition_time_embed_dim={per_id})",
            f"make it the pooled text width + {SDXL_TIME_IDS} × {per_id} (SDXL: 1280 + 6 × 256 = 2816)")
    return total - SDXL_TIME_IDS * per_id


def sdxl_inputs(config: UNetConfig, tensors: Tensors, sizes: Sizes) -> dict[str, torch.Tensor]:
    """SDXL's `added_cond_kwargs` (pooled text, size and crop ids) at these sizes; the SDXL AnimateDiff reads
    them too."""
    (total, per_id), text_dim = _text_time_widths(config), sdxl_text_embeds_dim(config)
    n_ids = (total - text_dim) // per_id
    # original size, crop top-left, then target size (base) or aesthetic score (refiner)
    h, w = sizes.latent
    pixels_h, pixels_w = sizes.pixels or (h * 8, w * 8)  # SDXL-style conditioning implies its VAE's factor
    ids = [pixels_h, pixels_w, 0, 0] + ([pixels_h, pixels_w] if n_ids == SDXL_TIME_IDS else [6.0] * max(n_ids - 4, 0))
    return {"text_embeds": tensors.floats(sizes.batch, text_dim),
            "time_ids": torch.tensor(ids[:n_ids], dtype=torch.float32).repeat(sizes.batch, 1)}


def _text_time_widths(config: UNetConfig) -> tuple[int, int]:
    """text_time's (projection_class_embeddings_input_dim, addition_time_embed_dim): its embedding's whole input
    width and one time id's share of it."""
    return (_required(config.projection_class_embeddings_input_dim, "projection_class_embeddings_input_dim"),
            _required(config.addition_time_embed_dim, "addition_time_embed_dim"))


def _context(config: UNetConfig, tensors: Tensors, batch: int, text_len: int
             ) -> torch.Tensor | None:
    """The text tokens; None for image_proj UNets (Kandinsky 2.2), which read only the image embedding and whose
    pipeline passes None. A dual cross-attention UNet reads two fixed-length slices of the context."""
    floats = tensors.floats
    if not config.reads_encoder_hidden_states:
        return None
    if config.dual_cross_attention:  # Versatile Diffusion: 77 text tokens, then 257 image tokens
        text_len = sum(DualTransformer2DModel.condition_lengths)
    return floats(batch, text_len, config.context_dim)


def _projection_inputs(config: UNetConfig, tensors: Tensors, batch: int) -> dict[str, torch.Tensor]:
    """What encoder_hid_proj reads beside the text: the CLIP image embedding (Kandinsky)."""
    floats = tensors.floats
    if config.encoder_projection == "image_proj":
        return {"image_embeds": floats(batch, _required(config.encoder_hid_dim, "encoder_hid_dim"))}
    if config.encoder_projection == "text_image_proj":
        return {"image_embeds": floats(batch, _single_cross_dim(config))}
    return {}


def _addition_inputs(config: UNetConfig, tensors: Tensors, sizes: Sizes) -> dict[str, torch.Tensor]:
    """added_cond_kwargs for addition_embed_type (IF's 'text' pools the context and needs none)."""
    kind, batch, (h, w), floats = config.addition_embed_type, sizes.batch, sizes.latent, tensors.floats
    if kind == "text_time":
        return sdxl_inputs(config, tensors, sizes)
    if kind == "text_image":  # Kandinsky 2.1: pooled text and image embeddings, both cross_attention_dim wide
        return {"text_embeds": floats(batch, _single_cross_dim(config)),
                "image_embeds": floats(batch, _single_cross_dim(config))}
    if kind == "image":
        return {"image_embeds": floats(batch, _required(config.encoder_hid_dim, "encoder_hid_dim"))}
    if kind == "image_hint":  # an RGB image that the hint encoder's three stride-2 convs bring to the latent size
        return {"image_embeds": floats(batch, _required(config.encoder_hid_dim, "encoder_hid_dim")),
                "hint": floats(batch, 3, h * HINT_FACTOR, w * HINT_FACTOR)}
    return {}


GLIGEN_MAX_OBJECTS = 30  # the GLIGEN pipelines always pass 30 box slots, the unused ones masked out
GLIGEN_BOXES = 3


def _gligen_inputs(config: UNetConfig, tensors: Tensors, batch: int) -> dict[str, torch.Tensor]:
    """GLIGEN's grounding: boxes (x0, y0, x1, y1 in 0..1) with a phrase (and for gated-text-image an image)
    embedding each, in 30 slots of which the first 3 are used."""
    slots, width, floats = GLIGEN_MAX_OBJECTS, _single_cross_dim(config), tensors.floats
    corners = floats(batch, slots, 4).sigmoid()
    boxes = torch.cat([torch.minimum(corners[..., :2], corners[..., 2:]),
                       torch.maximum(corners[..., :2], corners[..., 2:])], dim=-1)
    masks = torch.zeros(batch, slots, dtype=boxes.dtype, device=boxes.device)
    masks[:, :GLIGEN_BOXES] = 1
    if config.attention_type == "gated":
        return {"boxes": boxes, "masks": masks, "positive_embeddings": floats(batch, slots, width)}
    return {"boxes": boxes, "masks": masks, "phrases_masks": masks.clone(), "image_masks": masks.clone(),
            "phrases_embeddings": floats(batch, slots, width), "image_embeddings": floats(batch, slots, width)}


# The optional fields below are narrowed by asserts, not checked again: the conditioning that reads each is refused
# by UNetConfig's own validation (`_check_conditioning`, configs/unet.py) when the field is missing or, for
# cross_attention_dim, a per-block list; a config is validated whenever it is made, so a failure here is our bug.

def _required(value: int | None, name: str) -> int:
    """An optional width that the conditioning being made reads (validation guarantees it is set)."""
    assert value is not None, f"{name} is None in a validated UNetConfig"
    return value


def _single_cross_dim(config: UNetConfig) -> int:
    """cross_attention_dim as the one number that text_image_proj, text_image and GLIGEN are built from
    (validation refuses a per-block list with them, as diffusers cannot build that)."""
    width = config.cross_attention_dim
    assert not isinstance(width, list), f"cross_attention_dim={width!r} is a list in a validated UNetConfig"
    return width
