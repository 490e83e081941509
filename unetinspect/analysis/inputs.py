"""Example inputs for a UNet config: what a pipeline would pass at one denoising step.

Sizes are asked for in pixels, as users think of images, or directly as a latent size (`--latent`). How many
pixels a latent element stands for depends on the family's autoencoder: 8 for the SD/SDXL/Kandinsky VAEs, 4 for
the x4 upscaler's, 1 for pixel-space models (IF, unCLIP decoders). Where it cannot be known, only latent sizes
are shown, rather than a pixel size that would be a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from unetinspect.config import UNetConfig
from unetinspect.errors import RunError

DEFAULT_TEXT_LEN = 77
DEFAULT_LATENT = 64  # when a config has no sample_size, as diffusers' pipelines assume
# The pooled text embedding SDXL adds to its size/crop conditioning (OpenCLIP bigG's projection width).
SDXL_POOLED_DIM = 1280


@dataclass(frozen=True)
class Sizes:
    """The concrete size of one forward pass, resolved once: what every view prints and every input is made at."""

    batch: int
    latent: tuple[int, int]  # (height, width) of `sample`
    pixels: tuple[int, int] | None  # the image's size where the family's pixel factor is known, else None
    text_len: int


@dataclass(frozen=True)
class InputSpec:
    """The size of one forward pass as asked for: `height`/`width` in pixels, or `latent` as (height, width).

    Unset sizes fall back to the config's `sample_size`. `resolve` turns it into `Sizes` for one model.
    """

    batch: int = 1
    height: int | None = None
    width: int | None = None
    text_len: int = DEFAULT_TEXT_LEN
    latent: tuple[int, int] | None = None

    def resolve(self, config: UNetConfig, pixel_factor: int | None) -> Sizes:
        """The latent size (and pixel size, where `pixel_factor` is known) of this spec for `config`."""
        if self.latent is not None and (self.height is not None or self.width is not None):
            raise RunError("give the size either in pixels (--height/--width) or as a latent (--latent), not both")
        size = config.sample_size if config.sample_size is not None else DEFAULT_LATENT
        latent_h, latent_w = (size, size) if isinstance(size, int) else tuple(size)
        if self.latent is not None:
            latent_h, latent_w = self.latent
        elif self.height is not None or self.width is not None:
            if pixel_factor is None:
                raise RunError("this UNet's pixel size is unknown (its autoencoder's factor cannot be told from "
                               "its config)", "give the latent size instead, e.g. --latent 64x64")
            if self.height is not None:
                latent_h = _to_latent(self.height, "height", pixel_factor)
            if self.width is not None:
                latent_w = _to_latent(self.width, "width", pixel_factor)
        pixels = (latent_h * pixel_factor, latent_w * pixel_factor) if pixel_factor else None
        return Sizes(self.batch, (latent_h, latent_w), pixels, self.text_len)


def _to_latent(pixels: int, name: str, factor: int) -> int:
    if pixels < factor or pixels % factor:
        raise RunError(f"--{name} {pixels} is not a positive multiple of {factor}",
                       f"sizes are in pixels; this UNet's latent is {factor}x smaller")
    return pixels // factor


def infer_pixel_factor(config: UNetConfig) -> int | None:
    """Pixels per latent element, told from the channels where a known family fixes them, else None.

    3 or 6 channels in and out (RGB, plus learned variance) is a pixel-space model (IF, unCLIP decoders): 1.
    A 4-channel latent, and SD's 5/8/9-channel variants (depth, instruct-pix2pix, inpainting) that predict a
    4-channel latent, come from an autoencoder of factor 8 (SD, SDXL, Kandinsky's MoVQ). 7 channels in (a
    4-channel latent and the RGB low-resolution image) is the x4 upscaler, whose autoencoder has factor 4.
    """
    c_in, c_out = config.in_channels, config.out_channels
    if c_in in (3, 6) and c_out in (3, 6):
        return 1
    if c_in == 4 or (c_in in (5, 8, 9) and c_out == 4):
        return 8
    if c_in == 7 and c_out == 4:
        return 4
    return None


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
    sizes: Sizes | InputSpec = InputSpec(),
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for `UNet2DConditionModel.forward` (ours or diffusers'), random but reproducible.

    `config` is a `UNetConfig` or a diffusers-style mapping: diffusers' own `unet.config` is one. An `InputSpec`
    is resolved with the pixel factor told from the config (`infer_pixel_factor`).
    """
    if not isinstance(config, UNetConfig):
        if not isinstance(config, Mapping):
            raise RunError(f"make_inputs takes a UNet config, not a {type(config).__name__}",
                           "pass unet.config (ours or diffusers')")
        config = UNetConfig.from_dict(dict(config), origin=f"{type(config).__name__} config")
    if isinstance(sizes, InputSpec):
        sizes = sizes.resolve(config, infer_pixel_factor(config))
    h, w = sizes.latent
    b = sizes.batch
    generator = torch.Generator().manual_seed(seed)

    def floats(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device=device, dtype=dtype)

    def longs(high: int) -> torch.Tensor:
        return torch.randint(0, high, (b,), generator=generator).to(device)

    inputs: dict[str, Any] = {
        "sample": floats(b, config.in_channels, h, w),
        "timestep": torch.full((b,), 999, dtype=torch.long).to(device),
        "encoder_hidden_states": floats(b, sizes.text_len, config.context_dim),
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
        pixels_h, pixels_w = sizes.pixels or (h * 8, w * 8)  # SDXL-style conditioning implies its VAE's factor
        ids = [pixels_h, pixels_w, 0, 0] + ([pixels_h, pixels_w] if n_ids == 6 else [6.0] * max(n_ids - 4, 0))
        time_ids = torch.tensor(ids[:n_ids], dtype=torch.float32).repeat(b, 1)
        inputs["added_cond_kwargs"] = {
            "text_embeds": floats(b, text_dim),
            "time_ids": time_ids.to(device=device, dtype=dtype),
        }
    return inputs
