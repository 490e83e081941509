"""Example inputs for a UNet config: what a pipeline would pass at one denoising step.

Sizes are given in pixels, as users think of images; the latent is 8x smaller (the SD VAE's factor).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from unetinspect.config import UNetConfig
from unetinspect.errors import RunError
from unetinspect.models.attention import DualTransformer2DModel

VAE_SCALE = 8
DEFAULT_TEXT_LEN = 77
# The pooled text embedding SDXL adds to its size/crop conditioning (OpenCLIP bigG's projection width).
SDXL_POOLED_DIM = 1280


@dataclass(frozen=True)
class InputSpec:
    """The size of one forward pass; `height`/`width` in pixels (None: the config's `sample_size` × 8)."""

    batch: int = 1
    height: int | None = None
    width: int | None = None
    text_len: int = DEFAULT_TEXT_LEN

    def latent_size(self, config: UNetConfig) -> tuple[int, int]:
        size = config.sample_size if config.sample_size is not None else 64
        default_h, default_w = (size, size) if isinstance(size, int) else tuple(size)
        height = _to_latent(self.height, "height") if self.height is not None else default_h
        width = _to_latent(self.width, "width") if self.width is not None else default_w
        return height, width

    def pixel_size(self, config: UNetConfig) -> tuple[int, int]:
        h, w = self.latent_size(config)
        return h * VAE_SCALE, w * VAE_SCALE


def _to_latent(pixels: int, name: str) -> int:
    if pixels < VAE_SCALE or pixels % VAE_SCALE:
        raise RunError(f"--{name} {pixels} is not a positive multiple of {VAE_SCALE}",
                       f"sizes are in pixels; the latent is {VAE_SCALE}x smaller")
    return pixels // VAE_SCALE


def sdxl_text_embeds_dim(config: UNetConfig) -> int:
    """Width of `text_embeds` for `text_time` conditioning: the pooled text, with the rest taken by time ids.

    The config only gives the sum (pooled + n_ids × addition_time_embed_dim); SDXL base (6 ids) and refiner
    (5 ids) both pool to 1280, so that is assumed when it fits, else 6 time ids.
    """
    total, per_id = config.projection_class_embeddings_input_dim, config.addition_time_embed_dim
    if total > SDXL_POOLED_DIM and (total - SDXL_POOLED_DIM) % per_id == 0:
        return SDXL_POOLED_DIM
    return total - 6 * per_id


def make_inputs(
    config: UNetConfig,
    spec: InputSpec = InputSpec(),
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for `UNet2DConditionModel.forward` (ours or diffusers'), random but reproducible."""
    h, w = spec.latent_size(config)
    b = spec.batch
    generator = torch.Generator().manual_seed(seed)

    def floats(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def longs(high: int) -> torch.Tensor:
        return torch.randint(0, high, (b,), generator=generator).to(device)

    inputs: dict[str, Any] = {
        # an image_hint UNet's in_channels counts the 4 channels of the encoded hint it concatenates itself
        "sample": floats(b, config.in_channels - (4 if config.addition_embed_type == "image_hint" else 0), h, w),
        "timestep": torch.full((b,), 999, dtype=torch.long).to(device),
        "encoder_hidden_states": _context(config, floats, b, spec.text_len),
    }
    if config.class_embed_type == "timestep":
        inputs["class_labels"] = longs(1000)
    elif config.class_embed_type is None and config.num_class_embeds:
        inputs["class_labels"] = longs(config.num_class_embeds)
    elif config.class_embed_type in ("projection", "simple_projection"):
        inputs["class_labels"] = floats(b, config.projection_class_embeddings_input_dim)
    elif config.class_embed_type == "identity":
        inputs["class_labels"] = floats(b, config.time_embed_dim)
    if config.time_cond_proj_dim is not None:
        inputs["timestep_cond"] = floats(b, config.time_cond_proj_dim)
    added = {**_projection_inputs(config, floats, b), **_addition_inputs(config, floats, b, h, w)}
    if added:
        inputs["added_cond_kwargs"] = {k: v.to(device=device, dtype=dtype) for k, v in added.items()}
    if config.attention_type in ("gated", "gated-text-image"):
        inputs["cross_attention_kwargs"] = {"gligen": _gligen_inputs(config, floats, b)}
    return inputs


def _context(config: UNetConfig, floats: Callable[..., torch.Tensor], batch: int, text_len: int
             ) -> torch.Tensor | None:
    """The text tokens; None for image_proj UNets (Kandinsky 2.2), which read only the image embedding and whose
    pipeline passes None. A dual cross-attention UNet reads two fixed-length slices of the context."""
    if config.encoder_projection == "image_proj" and config.addition_embed_type != "text":
        return None
    if config.dual_cross_attention:  # Versatile Diffusion: 77 text tokens, then 257 image tokens
        text_len = sum(DualTransformer2DModel.condition_lengths)
    return floats(batch, text_len, config.context_dim)


def _projection_inputs(config: UNetConfig, floats: Callable[..., torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
    """What encoder_hid_proj reads beside the text: the CLIP image embedding (Kandinsky)."""
    if config.encoder_projection == "image_proj":
        return {"image_embeds": floats(batch, config.encoder_hid_dim)}
    if config.encoder_projection == "text_image_proj":
        return {"image_embeds": floats(batch, config.cross_attention_dim)}
    return {}


def _addition_inputs(config: UNetConfig, floats: Callable[..., torch.Tensor], batch: int, h: int, w: int
                     ) -> dict[str, torch.Tensor]:
    """added_cond_kwargs for addition_embed_type (IF's 'text' pools the context and needs none)."""
    kind = config.addition_embed_type
    if kind == "text_time":
        return _sdxl_inputs(config, floats, batch, h, w)
    if kind == "text_image":  # Kandinsky 2.1: pooled text and image embeddings, both cross_attention_dim wide
        return {"text_embeds": floats(batch, config.cross_attention_dim),
                "image_embeds": floats(batch, config.cross_attention_dim)}
    if kind == "image":
        return {"image_embeds": floats(batch, config.encoder_hid_dim)}
    if kind == "image_hint":  # the hint is an RGB image at pixel size: its encoder lands on the latent size
        return {"image_embeds": floats(batch, config.encoder_hid_dim),
                "hint": floats(batch, 3, h * VAE_SCALE, w * VAE_SCALE)}
    return {}


def _sdxl_inputs(config: UNetConfig, floats: Callable[..., torch.Tensor], batch: int, h: int, w: int
                 ) -> dict[str, torch.Tensor]:
    text_dim = sdxl_text_embeds_dim(config)
    n_ids = (config.projection_class_embeddings_input_dim - text_dim) // config.addition_time_embed_dim
    # original size, crop top-left, then target size (base) or aesthetic score (refiner)
    pixels_h, pixels_w = h * VAE_SCALE, w * VAE_SCALE
    ids = [pixels_h, pixels_w, 0, 0] + ([pixels_h, pixels_w] if n_ids == 6 else [6.0] * max(n_ids - 4, 0))
    return {"text_embeds": floats(batch, text_dim),
            "time_ids": torch.tensor(ids[:n_ids], dtype=torch.float32).repeat(batch, 1)}


GLIGEN_MAX_OBJECTS = 30  # the GLIGEN pipelines always pass 30 box slots, the unused ones masked out
GLIGEN_BOXES = 3


def _gligen_inputs(config: UNetConfig, floats: Callable[..., torch.Tensor], batch: int) -> dict[str, torch.Tensor]:
    """GLIGEN's grounding: boxes (x0, y0, x1, y1 in 0..1) with a phrase (and for gated-text-image an image)
    embedding each, in 30 slots of which the first 3 are used."""
    slots, width = GLIGEN_MAX_OBJECTS, config.cross_attention_dim
    corners = floats(batch, slots, 4).sigmoid()
    boxes = torch.cat([torch.minimum(corners[..., :2], corners[..., 2:]),
                       torch.maximum(corners[..., :2], corners[..., 2:])], dim=-1)
    masks = torch.zeros(batch, slots, dtype=boxes.dtype, device=boxes.device)
    masks[:, :GLIGEN_BOXES] = 1
    if config.attention_type == "gated":
        return {"boxes": boxes, "masks": masks, "positive_embeddings": floats(batch, slots, width)}
    return {"boxes": boxes, "masks": masks, "phrases_masks": masks.clone(), "image_masks": masks.clone(),
            "phrases_embeddings": floats(batch, slots, width), "image_embeddings": floats(batch, slots, width)}
