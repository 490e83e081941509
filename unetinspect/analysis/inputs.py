"""Example inputs for a UNet config: what a pipeline would pass at one denoising step.

Sizes are given in pixels, as users think of images; the latent is 8x smaller (the SD VAE's factor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from unetinspect.config import UNetConfig
from unetinspect.errors import RunError

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
    config: UNetConfig | Mapping[str, Any],
    spec: InputSpec = InputSpec(),
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for `UNet2DConditionModel.forward` (ours or diffusers'), random but reproducible.

    `config` is a `UNetConfig` or a diffusers-style mapping: diffusers' own `unet.config` is one."""
    if not isinstance(config, UNetConfig):
        if not isinstance(config, Mapping):
            raise RunError(f"make_inputs takes a UNet config, not a {type(config).__name__}",
                           "pass unet.config (ours or diffusers')")
        config = UNetConfig.from_dict(dict(config), origin=f"{type(config).__name__} config")
    h, w = spec.latent_size(config)
    b = spec.batch
    generator = torch.Generator().manual_seed(seed)

    def floats(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def longs(high: int) -> torch.Tensor:
        return torch.randint(0, high, (b,), generator=generator).to(device)

    inputs: dict[str, Any] = {
        "sample": floats(b, config.in_channels, h, w),
        "timestep": torch.full((b,), 999, dtype=torch.long).to(device),
        "encoder_hidden_states": floats(b, spec.text_len, config.context_dim),
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
    if config.addition_embed_type == "text_time":
        text_dim = sdxl_text_embeds_dim(config)
        n_ids = (config.projection_class_embeddings_input_dim - text_dim) // config.addition_time_embed_dim
        # original size, crop top-left, then target size (base) or aesthetic score (refiner)
        pixels_h, pixels_w = h * VAE_SCALE, w * VAE_SCALE
        ids = [pixels_h, pixels_w, 0, 0] + ([pixels_h, pixels_w] if n_ids == 6 else [6.0] * max(n_ids - 4, 0))
        time_ids = torch.tensor(ids[:n_ids], dtype=torch.float32).repeat(b, 1)
        inputs["added_cond_kwargs"] = {
            "text_embeds": floats(b, text_dim),
            "time_ids": time_ids.to(device=device, dtype=dtype),
        }
    return inputs
