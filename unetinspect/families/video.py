"""The video UNets: Stable Video Diffusion (`UNetSpatioTemporalConditionModel`) and AnimateDiff (`UNetMotionModel`).

Their forward differs from a UNet's in the frame axis of every input, so each family makes all its inputs
(`make_inputs`). Their original single-file layouts (sgm's svd.safetensors, AnimateDiff's mm_sd_v15_v2.ckpt) are
not read yet: such a file is not recognised as one of these families.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from unetinspect.configs.video import MOTION_CLASS, SVD_CLASS, MotionConfig, SVDConfig
from unetinspect.errors import UnsupportedConfigError
from unetinspect.families.family import Family
from unetinspect.families.unet2d import sdxl_inputs

# What the SVD pipeline passes by default: fps 7 (given as fps - 1), motion bucket 127, noise augmentation 0.02.
SVD_TIME_IDS = (6.0, 127.0, 0.02)


def svd_inputs(config: SVDConfig, floats: Callable[..., Any], sizes: Any) -> dict[str, Any]:
    """sample (b, frames, 8, h, w): noise and the image's latent; the CLIP image embedding as a 1-token
    context; [fps - 1, motion bucket, noise augmentation] as added time ids."""
    import torch

    batch, (h, w), frames = sizes.batch, sizes.latent, sizes.frames
    sample = floats(batch, frames, config.in_channels, h, w)
    return {
        "sample": sample,
        "timestep": torch.full((batch,), 999, dtype=torch.long, device=sample.device),
        "encoder_hidden_states": floats(batch, sizes.text_len, config.context_dim),  # 1 token
        "added_time_ids": torch.tensor([SVD_TIME_IDS], device=sample.device).repeat(batch, 1).to(sample.dtype),
    }


def motion_inputs(config: MotionConfig, floats: Callable[..., Any], sizes: Any) -> dict[str, Any]:
    """sample (b, 4, frames, h, w); the text once per frame (b·frames, tokens, dim), as AnimateDiff's pipelines
    repeat it; SDXL's size conditioning once per video."""
    import torch

    batch, (h, w), frames = sizes.batch, sizes.latent, sizes.frames
    sample = floats(batch, config.in_channels, frames, h, w)
    inputs: dict[str, Any] = {
        "sample": sample,
        "timestep": torch.full((batch,), 999, dtype=torch.long, device=sample.device),
        "encoder_hidden_states": floats(batch * frames, sizes.text_len, config.context_dim),
    }
    if config.time_cond_proj_dim is not None:
        inputs["timestep_cond"] = floats(batch, config.time_cond_proj_dim)
    if config.addition_embed_type == "text_time":
        added = sdxl_inputs(config, floats, sizes)
        inputs["added_cond_kwargs"] = {k: v.to(device=sample.device, dtype=sample.dtype) for k, v in added.items()}
    return inputs


def _no_original(names: Iterable[str]) -> bool:
    return False


def _unsupported_original(*args: Any, **kwargs: Any) -> Any:
    raise UnsupportedConfigError("layout", "original video checkpoint", "convert it to a diffusers folder first")


def _video_family(name: str, label: str, class_name: str, config_class: type, model_path: str,
                  make_inputs: Callable[..., dict[str, Any]], diagram_kind: tuple[str, str, str]) -> Family:
    return Family(
        name=name, kind=name, label=label, class_name=class_name, config_class=config_class, model_path=model_path,
        layout=f"{name}-original", looks_like_original=_no_original, infer_original_config=_unsupported_original,
        original_key_map=_unsupported_original,
        # their diffusers keys are a UNet's plus temporal ones; files are told by their config.json, not keys
        diffusers_roots=frozenset(), min_roots=1, make_inputs=make_inputs, diagram_kinds=(diagram_kind,),
    )


SVD = _video_family("svd", "video UNet", SVD_CLASS, SVDConfig,
                    "unetinspect.models.svd:UNetSpatioTemporalConditionModel", svd_inputs,
                    ("SpatioTemporal", "temporal", "spatio-temporal: image layers per frame, blended with layers "
                     "across frames"))
MOTION = _video_family("motion", "AnimateDiff UNet", MOTION_CLASS, MotionConfig,
                       "unetinspect.models.motion:UNetMotionModel", motion_inputs,
                       ("AnimateDiff", "motion", "motion module: attention across frames at every pixel"))
