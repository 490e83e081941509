"""Example inputs for a UNet config: what a pipeline would pass at one denoising step.

Sizes are asked for in pixels, as users think of images, or directly as a latent size (`--latent`). How many
pixels a latent element stands for depends on the family's autoencoder: 8 for the SD/SDXL/Kandinsky VAEs, 4 for
the x4 upscaler's, 1 for pixel-space models (IF, unCLIP decoders). Where it cannot be known, only latent sizes
are shown, rather than a pixel size that would be a guess.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from unetinspect.errors import RunError
from unetinspect.families import Family, FamilyConfig, Sizes, config_from_dict, family_of, is_model_config

DEFAULT_TEXT_LEN = 77
DEFAULT_LATENT = 64  # when a config has no sample_size, as diffusers' pipelines assume
HINT_FACTOR = 8  # Kandinsky's hint encoder halves the hint image three times


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

    def resolve(self, config: FamilyConfig, pixel_factor: int | None, family: Family[Any] | None = None) -> Sizes:
        """The latent size (and pixel size, where `pixel_factor` is known) of this spec for `config`, on the size
        axes of its family (`family`, when the caller has settled it already)."""
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
        # only the video families have a frame axis; an image UNet beside one (`compare sd15 animatediff`) has none
        axes = (family or family_of(config)).axes
        default_frames = axes.default_frames(config)
        frames = None if default_frames is None else self.frames if self.frames is not None else default_frames
        tokens = axes.context_tokens(config)  # SVD: one image-embedding token
        return Sizes(self.batch, (latent_h, latent_w), pixels, tokens or self.text_len, frames,
                     "image embedding" if tokens else "text")


def refuse_unused_frames(spec: InputSpec, sizes: Sizes) -> None:
    """`--frames` on an image UNet: refused rather than silently dropped (the user asked for a video's size)."""
    if spec.frames is not None and sizes.frames is None:
        raise RunError(f"--frames {spec.frames} sizes a video UNet, and this is an image UNet (no frame axis)",
                       "leave out --frames")


def _to_latent(pixels: int, name: str, factor: int) -> int:
    if pixels < factor or pixels % factor:
        raise RunError(f"--{name} {pixels} is not a positive multiple of {factor}",
                       f"sizes are in pixels; this UNet's latent is {factor}x smaller")
    return pixels // factor


def infer_pixel_factor(config: FamilyConfig) -> int | None:
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


def check_sizes(config: FamilyConfig, sizes: Sizes, device: torch.device, dtype: torch.dtype,
                family: Family[Any] | None = None) -> None:
    """Refuse a batch, text length or image size whose largest activation could not fit on `device`.

    The largest activations are a block's feature map (batch × channels × latent height × width, widest at some
    level) and a cross-attention's keys (batch × tokens × channels); anything bigger than the device's memory
    would fail minutes later, or, on the meta device, give numbers for a model no machine can run.
    """
    frames = 1 if sizes.frames is None else sizes.frames
    for name, value in (("batch", sizes.batch), ("text-len", sizes.text_len), ("frames", frames)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise RunError(f"--{name} {value!r} is not a positive integer")
    covered = (family or family_of(config)).axes.max_frames(config)
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
    heads = max(config.heads_per_block or [1])
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


class RandomTensors:
    """The tensors an input maker asks for (`families.Tensors`): random but reproducible from `seed`, made on
    `device` itself in `dtype` — on meta shapes only, no memory anywhere."""

    def __init__(self, device: torch.device, dtype: torch.dtype, seed: int = 0) -> None:
        self.device, self.dtype = device, dtype
        self._generator = None if device.type == "meta" else torch.Generator(device).manual_seed(seed)

    def floats(self, *shape: int) -> torch.Tensor:
        if self.device.type == "meta":  # randn on meta runs a Python reference kernel that imports torch._dynamo
            return torch.empty(shape, dtype=self.dtype, device=self.device)
        return torch.randn(shape, generator=self._generator, device=self.device).to(self.dtype)

    def longs(self, high: int, *shape: int) -> torch.Tensor:
        if self.device.type == "meta":
            return torch.empty(shape, dtype=torch.long, device=self.device)
        return torch.randint(0, high, shape, generator=self._generator, device=self.device)


def make_inputs(
    config: FamilyConfig | Mapping[str, Any],
    sizes: Sizes | InputSpec = InputSpec(),
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    family: Family[Any] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for the forward of `config`'s model (ours or diffusers'), random but reproducible.

    `config` is any family's config, or a diffusers-style mapping: diffusers' own `unet.config` is one. An
    `InputSpec` is resolved with the pixel factor told from the config (`infer_pixel_factor`). Tensors are made on
    `device` itself (on meta: shapes only, no memory anywhere), after `check_sizes`, by the family's input maker
    (`family`, when the caller has settled it already: a session has).
    """
    if isinstance(config, Mapping):
        config = config_from_dict(dict(config), origin=f"{type(config).__name__} config")
    elif family is None and not is_model_config(config):
        raise RunError(f"make_inputs takes a UNet config, not a {type(config).__name__}",
                       "pass unet.config (ours or diffusers')")
    family = family or family_of(config)
    if isinstance(sizes, InputSpec):
        sizes = sizes.resolve(config, infer_pixel_factor(config), family)
    device = torch.device(device)
    check_sizes(config, sizes, device, dtype, family)
    return family.make_inputs(config, RandomTensors(device, dtype, seed), sizes)
