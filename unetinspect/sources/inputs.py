"""Example inputs for a UNet config: what a pipeline would pass at one denoising step.

Sizes are asked for in pixels, as users think of images, or directly as a latent size (`--latent`). How many
pixels a latent element stands for depends on the family's autoencoder: 8 for the SD/SDXL/Kandinsky VAEs, 4 for
the x4 upscaler's, 1 for pixel-space models (IF, unCLIP decoders). Where it cannot be known, only latent sizes
are shown, rather than a pixel size that would be a guess.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import RunError
from unetinspect.families import config_from_dict, family_of, is_model_config
from unetinspect.families.unet2d import sdxl_inputs
from unetinspect.models.attention import DualTransformer2DModel

DEFAULT_TEXT_LEN = 77
DEFAULT_LATENT = 64  # when a config has no sample_size, as diffusers' pipelines assume
HINT_FACTOR = 8  # Kandinsky's hint encoder halves the hint image three times


@dataclass(frozen=True)
class Sizes:
    """The concrete size of one forward pass, resolved once: what every view prints and every input is made at."""

    batch: int
    latent: tuple[int, int]  # (height, width) of `sample`
    pixels: tuple[int, int] | None  # the image's size where the family's pixel factor is known, else None
    text_len: int
    frames: int | None = None  # a video UNet's frame count (a size like the others); None for image UNets


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
    frames: int | None = None  # None: the video family's own default (SVD 14, SVD-XT 25, AnimateDiff 16)

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
        # only the video configs have a frame axis; an image UNet beside one (`compare sd15 animatediff`) has none
        default_frames = getattr(config, "default_frames", None)
        frames = None if default_frames is None else self.frames if self.frames is not None else default_frames
        text_len = getattr(config, "context_tokens", None) or self.text_len  # SVD: one image-embedding token
        return Sizes(self.batch, (latent_h, latent_w), pixels, text_len, frames)


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


# No single device holds more (the largest accelerators have under 300 GB; hosts rarely over a few TB): a size
# whose activations need more is a typo, refused before any tensor is made, even on the meta device.
MAX_ACTIVATION_BYTES = 1 << 40


def check_sizes(config: UNetConfig, sizes: Sizes, device: torch.device, dtype: torch.dtype) -> None:
    """Refuse a batch, text length or image size whose largest activation could not fit on `device`.

    The largest activations are a block's feature map (batch × channels × latent height × width, widest at some
    level) and a cross-attention's keys (batch × tokens × channels); anything bigger than the device's memory
    would fail minutes later, or, on the meta device, give numbers for a model no machine can run.
    """
    frames = 1 if sizes.frames is None else sizes.frames
    for name, value in (("batch", sizes.batch), ("text-len", sizes.text_len), ("frames", frames)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RunError(f"--{name} {value!r} is not a positive integer")
    covered = getattr(config, "motion_max_seq_length", None)
    if covered is not None and frames > covered:
        raise RunError(f"--frames {frames}: this UNet's motion modules cover at most {covered} frames "
                       "(motion_max_seq_length)", f"use --frames {covered} or fewer")
    h, w = sizes.latent
    for name, value in (("latent height", h), ("latent width", w)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RunError(f"{name} {value!r} is not a positive integer")
    channels = config.block_out_channels
    feature_map = max(c * -(-h // 2**i) * -(-w // 2**i) for i, c in enumerate(channels))
    keys = sizes.text_len * max(config.context_dim, *channels)
    # a video UNet runs every frame as an image: its activations are batch × frames images'
    largest = sizes.batch * frames * max(feature_map, keys) * torch.empty(0, dtype=dtype).element_size()
    limit, where = _memory_limit(device)
    if largest > limit:
        size = f"{sizes.pixels[0]}×{sizes.pixels[1]} px" if sizes.pixels else f"latent {h}×{w}"
        video = f" × {frames} frames" if sizes.frames is not None else ""
        raise RunError(f"batch {sizes.batch}{video} at {size} with {sizes.text_len} text tokens needs "
                       f"{_gib(largest)} for one activation, more than {where} ({_gib(limit)})",
                       "lower --batch, --frames, the size or --text-len")
    # A self-attention's scores (tokens² per head) are never stored by SDPA, but a tensor's size must still be
    # addressable: past 2⁶³ bytes torch fails with "Storage size calculation overflowed" (an absurd size, not a bug).
    heads = max(getattr(config, "heads_per_block", None) or [1])
    scores = sizes.batch * frames * heads * (h * w) ** 2 * torch.empty(0, dtype=dtype).element_size()
    if scores >= 2**63:
        raise RunError(f"latent {h}×{w} gives a self-attention over {h * w:,} tokens, whose scores need more than "
                       "2⁶³ bytes: no tensor can address them", "lower the size")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


def _memory_limit(device: torch.device) -> tuple[int, str]:
    """The most one tensor could take on `device`, and what that limit is, in words."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory, f"the memory of {device}"
    if device.type == "cpu":
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        if pages > 0 and page_size > 0:
            return min(pages * page_size, MAX_ACTIVATION_BYTES), "this machine's memory"
    return MAX_ACTIVATION_BYTES, "any single device has"


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
    is resolved with the pixel factor told from the config (`infer_pixel_factor`). Tensors are made on `device`
    itself (on meta: shapes only, no memory anywhere), after `check_sizes`. The config's family adds what its
    forward reads beyond a UNet's (a ControlNet: `controlnet_cond`, the conditioning image at pixel size).
    """
    if not is_model_config(config):
        if not isinstance(config, Mapping):
            raise RunError(f"make_inputs takes a UNet config, not a {type(config).__name__}",
                           "pass unet.config (ours or diffusers')")
        config = config_from_dict(dict(config), origin=f"{type(config).__name__} config")
    if isinstance(sizes, InputSpec):
        sizes = sizes.resolve(config, infer_pixel_factor(config))
    device = torch.device(device)
    check_sizes(config, sizes, device, dtype)
    h, w = sizes.latent
    b = sizes.batch
    generator = None if device.type == "meta" else torch.Generator(device).manual_seed(seed)

    def floats(*shape: int) -> torch.Tensor:
        if device.type == "meta":  # randn on meta runs a Python reference kernel that imports torch._dynamo (~1.3 s)
            return torch.empty(shape, dtype=dtype, device=device)
        return torch.randn(shape, generator=generator, device=device).to(dtype)

    family = family_of(config)
    if family.make_inputs is not None:  # a forward unlike a UNet's (the video UNets)
        return family.make_inputs(config, floats, sizes)

    def longs(high: int) -> torch.Tensor:
        if device.type == "meta":
            return torch.empty((b,), dtype=torch.long, device=device)
        return torch.randint(0, high, (b,), generator=generator, device=device)

    inputs: dict[str, Any] = {
        "sample": floats(b, config.sample_channels, h, w),
        "timestep": torch.full((b,), 999, dtype=torch.long, device=device),
        "encoder_hidden_states": _context(config, floats, b, sizes.text_len),
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
    added = {**_projection_inputs(config, floats, b), **_addition_inputs(config, floats, sizes)}
    if added:
        inputs["added_cond_kwargs"] = {k: v.to(device=device, dtype=dtype) for k, v in added.items()}
    if config.attention_type in ("gated", "gated-text-image"):
        inputs["cross_attention_kwargs"] = {"gligen": _gligen_inputs(config, floats, b)}
    inputs.update(family_of(config).extra_inputs(config, floats, b, (h, w)))  # a ControlNet's image
    return inputs


def _context(config: UNetConfig, floats: Callable[..., torch.Tensor], batch: int, text_len: int
             ) -> torch.Tensor | None:
    """The text tokens; None for image_proj UNets (Kandinsky 2.2), which read only the image embedding and whose
    pipeline passes None. A dual cross-attention UNet reads two fixed-length slices of the context."""
    if not config.reads_encoder_hidden_states:
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


def _addition_inputs(config: UNetConfig, floats: Callable[..., torch.Tensor], sizes: Sizes) -> dict[str, torch.Tensor]:
    """added_cond_kwargs for addition_embed_type (IF's 'text' pools the context and needs none)."""
    kind, batch, (h, w) = config.addition_embed_type, sizes.batch, sizes.latent
    if kind == "text_time":
        return sdxl_inputs(config, floats, sizes)
    if kind == "text_image":  # Kandinsky 2.1: pooled text and image embeddings, both cross_attention_dim wide
        return {"text_embeds": floats(batch, config.cross_attention_dim),
                "image_embeds": floats(batch, config.cross_attention_dim)}
    if kind == "image":
        return {"image_embeds": floats(batch, config.encoder_hid_dim)}
    if kind == "image_hint":  # an RGB image that the hint encoder's three stride-2 convs bring to the latent size
        return {"image_embeds": floats(batch, config.encoder_hid_dim),
                "hint": floats(batch, 3, h * HINT_FACTOR, w * HINT_FACTOR)}
    return {}


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
