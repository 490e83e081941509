"""The inputs of `UNet2DConditionModel.forward`, checked against its config before any layer runs.

Library users call forward directly. Without these checks a wrong text width surfaces as torch's
`mat1 and mat2 shapes cannot be multiplied (77x768 and 48x32)`, and a text batch other than the sample's, or a
2-D text tensor, is silently broadcast into a wrong result. Each check compares shapes only (no data is read,
so it costs nothing, on the meta device too) and names the argument, its shape and the shape expected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from unetinspect.errors import InputError
from unetinspect.models.validated import required

if TYPE_CHECKING:
    from unetinspect.configs.unet import UNetConfig
    from unetinspect.configs.video import MotionConfig, SVDConfig


def check_inputs(
    config: UNetConfig,
    sample: Any,
    timestep: Any,
    encoder_hidden_states: Any,
    class_labels: Any = None,
    timestep_cond: Any = None,
    added_cond_kwargs: dict[str, Any] | None = None,
    num_skips: int | None = None,
    down_block_additional_residuals: Sequence[Any] | None = None,
    mid_block_additional_residual: Any = None,
) -> None:
    """Raise `InputError` for the first input whose type or shape does not fit the UNet of `config`."""
    _expect("sample", sample, 4, {1: config.sample_channels}, "(batch, {1}, height, width)")
    batch = sample.shape[0]
    _check_timestep(timestep, batch)
    if config.reads_encoder_hidden_states:
        _expect("encoder_hidden_states", encoder_hidden_states, 3, {0: batch, 2: config.context_dim},
                "(batch={0}, tokens, {2})")
    _check_class_labels(config, class_labels, batch)
    if timestep_cond is not None and config.time_cond_proj_dim is None:
        raise InputError("timestep_cond was passed, but this UNet has no time_cond_proj_dim to read it",
                         "leave it out (only LCM-style UNets take a guidance embedding)")
    if timestep_cond is not None and config.time_cond_proj_dim is not None:
        _expect("timestep_cond", timestep_cond, 2, {0: batch, 1: config.time_cond_proj_dim}, "(batch={0}, {1})")
    if config.addition_embed_type == "text_time":
        _check_text_time(config, added_cond_kwargs or {}, batch)
    # down residuals alone are T2I-Adapter features (diffusers' deprecated way of passing them)
    if mid_block_additional_residual is not None and down_block_additional_residuals is None:
        raise InputError("ControlNet residuals need both down_block_additional_residuals and "
                         "mid_block_additional_residual")
    if mid_block_additional_residual is not None and down_block_additional_residuals is not None \
            and num_skips is not None:
        count = len(down_block_additional_residuals)
        if count != num_skips:
            raise InputError(f"down_block_additional_residuals has {count} tensors; this UNet has {num_skips} skips",
                             "pass the residuals of a ControlNet made for this UNet")


def _expect(name: str, value: Any, ndim: int, sizes: dict[int, int], pattern: str) -> None:
    """`value` must be a tensor of `ndim` dimensions whose dimension i is `sizes[i]`; `pattern` shows the shape
    expected, with {i} standing for sizes[i]."""
    expected = pattern.format(*[sizes.get(i, "") for i in range(ndim)])
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} is a {type(value).__name__}; this UNet expects a tensor {expected}")
    if value.ndim != ndim or any(value.shape[i] != size for i, size in sizes.items()):
        raise InputError(f"{name} has shape {_shape(value)}; this UNet expects {expected}")


def _check_timestep(timestep: Any, batch: int) -> None:
    if isinstance(timestep, (int, float)) and not isinstance(timestep, bool):
        return
    if not isinstance(timestep, torch.Tensor):
        raise InputError(f"timestep is a {type(timestep).__name__}; this UNet expects a number or a tensor")
    if timestep.ndim > 1 or (timestep.ndim == 1 and timestep.shape[0] not in (1, batch)):
        raise InputError(f"timestep has shape {_shape(timestep)}; this UNet expects a number, shape (), (1,) "
                         f"or (batch={batch},)")


def _check_class_labels(config: UNetConfig, class_labels: Any, batch: int) -> None:
    kind = config.class_embed_type
    if kind is None and config.num_class_embeds is None:
        return
    if class_labels is None:
        raise InputError("this UNet has a class embedding: pass class_labels")
    if kind in (None, "timestep"):
        _expect("class_labels", class_labels, 1, {0: batch}, "(batch={0},)")
    elif kind in ("projection", "simple_projection"):
        width = required(config.projection_class_embeddings_input_dim, "projection_class_embeddings_input_dim")
        _expect("class_labels", class_labels, 2, {0: batch, 1: width}, "(batch={0}, {1})")
    elif kind == "identity":
        _expect("class_labels", class_labels, 2, {0: batch, 1: config.time_embed_dim}, "(batch={0}, {1})")


def _check_text_time(config: UNetConfig, added: dict[str, Any], batch: int) -> None:
    """SDXL's size/crop conditioning: pooled text plus time ids, which together must fill the projection."""
    if not isinstance(added, dict):
        raise InputError(f"added_cond_kwargs is a {type(added).__name__}; this UNet expects a dict with "
                         "text_embeds and time_ids")
    missing = {"text_embeds", "time_ids"} - set(added)
    if missing:
        raise InputError(f"this SDXL-style UNet needs added_cond_kwargs {', '.join(sorted(missing))}")
    text, ids = added["text_embeds"], added["time_ids"]
    _expect("added_cond_kwargs['text_embeds']", text, 2, {0: batch}, "(batch={0}, features)")
    if not isinstance(ids, torch.Tensor) or ids.ndim > 2 or ids.numel() % batch:
        raise InputError(f"added_cond_kwargs['time_ids'] has shape {_shape(ids)}; this UNet expects "
                         f"(batch={batch}, ids)")
    per_sample = ids.numel() // batch
    width = text.shape[1] + per_sample * required(config.addition_time_embed_dim, "addition_time_embed_dim")
    if width != config.projection_class_embeddings_input_dim:
        raise InputError(
            f"added_cond_kwargs text_embeds {_shape(text)} and time_ids {_shape(ids)} give {text.shape[1]} + "
            f"{per_sample}×{config.addition_time_embed_dim} = {width} features; this UNet expects "
            f"{config.projection_class_embeddings_input_dim} (projection_class_embeddings_input_dim)")


def _shape(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"(a {type(value).__name__})"


def _check_frames(sample: Any, frames_axis: int, channels: int, pattern: str, max_frames: int | None) -> int:
    """A video sample: 5-D, its channels right, at least one frame (and no more than the model's position code
    covers). Returns the batch."""
    if isinstance(sample, torch.Tensor) and sample.ndim == 4:
        raise InputError(f"sample has shape {_shape(sample)}, one image; this video UNet expects {pattern}",
                         "add the frame axis")
    sizes = {2 if frames_axis == 1 else 1: channels}
    _expect("sample", sample, 5, sizes, pattern)
    frames = sample.shape[frames_axis]
    if frames < 1:
        raise InputError(f"sample has {frames} frames; a video needs at least one")
    if max_frames is not None and frames > max_frames:
        raise InputError(f"sample has {frames} frames; this UNet's motion modules cover at most {max_frames} "
                         "(motion_max_seq_length)", "lower the frame count")
    return sample.shape[0]


def check_svd_inputs(config: SVDConfig, sample: Any, timestep: Any, encoder_hidden_states: Any,
                     added_time_ids: Any) -> None:
    """Stable Video Diffusion: sample (batch, frames, channels, h, w), the image embedding (batch, tokens, dim)
    and one row of added time ids per video."""
    batch = _check_frames(sample, 1, config.in_channels, f"(batch, frames, {config.in_channels}, height, width)",
                          None)
    _check_timestep(timestep, batch)
    _expect("encoder_hidden_states", encoder_hidden_states, 3, {0: batch, 2: config.context_dim},
            "(batch={0}, tokens, {2})")
    ids = config.projection_class_embeddings_input_dim // config.addition_time_embed_dim  # SVD's own fields
    _expect("added_time_ids", added_time_ids, 2, {0: batch, 1: ids}, "(batch={0}, {1}): fps, motion bucket, noise")


def check_motion_inputs(config: MotionConfig, sample: Any, timestep: Any, encoder_hidden_states: Any,
                        added_cond_kwargs: dict[str, Any] | None) -> None:
    """AnimateDiff: sample (batch, channels, frames, h, w), the text one row per frame (batch·frames, ...)."""
    batch = _check_frames(sample, 2, config.in_channels, f"(batch, {config.in_channels}, frames, height, width)",
                          config.motion_max_seq_length)
    frames = sample.shape[2]
    _check_timestep(timestep, batch)
    _expect("encoder_hidden_states", encoder_hidden_states, 3, {0: batch * frames, 2: config.context_dim},
            "(batch·frames={0}, tokens, {2})")
    if config.unet.addition_embed_type == "text_time":
        _check_text_time(config.unet, added_cond_kwargs or {}, batch)
