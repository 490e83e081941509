"""The video UNets: Stable Video Diffusion (`UNetSpatioTemporalConditionModel`) and AnimateDiff (`UNetMotionModel`).

Their forward differs from a UNet's in the frame axis of every input: each family makes all its inputs and names
its frame axis (`SizeAxes`). Their original single-file layouts (sgm's svd.safetensors, AnimateDiff's
mm_sd_v15_v2.ckpt) are not read yet: such a file is not recognised as one of these families.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NoReturn

from unetinspect.configs.video import MOTION_CLASS, SVD_CLASS, MotionConfig, SVDConfig
from unetinspect.errors import UnsupportedConfigError
from unetinspect.families.family import DiagramKind, Family, Shapes, Tensors
from unetinspect.families.sizes import SizeAxes, Sizes

# What the SVD pipeline passes by default: fps 7 (given as fps - 1), motion bucket 127, noise augmentation 0.02.
SVD_TIME_IDS = (6.0, 127.0, 0.02)


def svd_inputs(config: SVDConfig, tensors: Tensors, sizes: Sizes) -> dict[str, Any]:
    """sample (b, frames, 8, h, w): noise and the image's latent; the CLIP image embedding as a 1-token
    context; [fps - 1, motion bucket, noise augmentation] as added time ids."""
    import torch

    batch, (h, w), frames = sizes.batch, sizes.latent, sizes.frames or config.default_frames
    sample = tensors.floats(batch, frames, config.in_channels, h, w)
    return {
        "sample": sample,
        "timestep": torch.full((batch,), 999, dtype=torch.long, device=sample.device),
        "encoder_hidden_states": tensors.floats(batch, sizes.text_len, config.context_dim),  # 1 token
        "added_time_ids": torch.tensor([SVD_TIME_IDS], device=sample.device).repeat(batch, 1).to(sample.dtype),
    }


def motion_inputs(config: MotionConfig, tensors: Tensors, sizes: Sizes) -> dict[str, Any]:
    """sample (b, 4, frames, h, w); the text once per frame (b·frames, tokens, dim), as AnimateDiff's pipelines
    repeat it; SDXL's size conditioning once per video."""
    import torch

    from unetinspect.families.unet2d_inputs import sdxl_inputs  # torch: on first use

    batch, (h, w), frames = sizes.batch, sizes.latent, sizes.frames or config.default_frames
    sample = tensors.floats(batch, config.in_channels, frames, h, w)
    inputs: dict[str, Any] = {
        "sample": sample,
        "timestep": torch.full((batch,), 999, dtype=torch.long, device=sample.device),
        "encoder_hidden_states": tensors.floats(batch * frames, sizes.text_len, config.context_dim),
    }
    if config.unet.time_cond_proj_dim is not None:
        inputs["timestep_cond"] = tensors.floats(batch, config.unet.time_cond_proj_dim)
    if config.unet.addition_embed_type == "text_time":
        added = sdxl_inputs(config.unet, tensors, sizes)
        inputs["added_cond_kwargs"] = {k: v.to(device=sample.device, dtype=sample.dtype) for k, v in added.items()}
    return inputs


def _no_original(names: Iterable[str]) -> bool:
    return False


def _unsupported_original(shapes: Shapes, *args: Any) -> NoReturn:
    raise UnsupportedConfigError("layout", "original video checkpoint", "convert it to a diffusers folder first")


_NO_CONTROLNET = "{}: ControlNets are added to an image UNet's skips; this tool builds none for a video UNet yet"
_NO_LORA = "{}: its LoRAs (motion LoRAs) are not mapped yet"

SVD: Family[SVDConfig] = Family(
    name="svd", kind="svd", label="video UNet", class_name=SVD_CLASS, config_class=SVDConfig,
    model_path="unetinspect.models.svd:UNetSpatioTemporalConditionModel",
    layout="svd-original", looks_like_original=_no_original, infer_original_config=_unsupported_original,
    original_key_map=_unsupported_original,
    # their diffusers keys are a UNet's plus temporal ones; files are told by their config.json, not keys
    diffusers_roots=frozenset(), min_roots=1,
    make_inputs=svd_inputs,
    axes=SizeAxes(default_frames=lambda config: config.default_frames,
                  context_tokens=lambda config: config.context_tokens),
    diagram_kinds=(DiagramKind("SpatioTemporal", "temporal", "spatio-temporal: image layers per frame, blended "
                               "with layers across frames", light="#9ed3d6", dark="#2a6a6e"),),
    refusals={"controlnet": _NO_CONTROLNET.format("Stable Video Diffusion"),
              "lora": _NO_LORA.format("Stable Video Diffusion"),
              "motion-adapter": "Stable Video Diffusion is a video UNet already: a motion adapter animates an "
                                "image UNet"},
)
MOTION: Family[MotionConfig] = Family(
    name="motion", kind="motion", label="AnimateDiff UNet", class_name=MOTION_CLASS, config_class=MotionConfig,
    model_path="unetinspect.models.motion:UNetMotionModel",
    layout="motion-original", looks_like_original=_no_original, infer_original_config=_unsupported_original,
    original_key_map=_unsupported_original, diffusers_roots=frozenset(), min_roots=1,
    make_inputs=motion_inputs,
    # motion modules' position code covers motion_max_seq_length frames: a run may not have more
    axes=SizeAxes(default_frames=lambda config: config.default_frames,
                  max_frames=lambda config: config.motion_max_seq_length),
    # SD's blocks with motion modules inside: the image kinds' hues, a shade warmer (the longest fragment first)
    diagram_kinds=(DiagramKind("AnimateDiff", "motion", "motion module: attention across frames at every pixel",
                               light="#f0a8a0", dark="#8a3c34"),
                   *(DiagramKind(fragment, "motion_attn_block", "resnets + transformers + motion modules",
                                 light="#e98e6a", dark="#9a5030")
                     for fragment in ("CrossAttnDownBlockMotion", "CrossAttnUpBlockMotion")),
                   DiagramKind("CrossAttnMotion", "motion_mid_block", "middle: resnets + cross-attention "
                               "(+ a motion module)", light="#b48cb0", dark="#70486e"),
                   DiagramKind("BlockMotion", "motion_block", "resnets + motion modules", light="#c4cdea",
                               dark="#3c5080")),
    refusals={"controlnet": _NO_CONTROLNET.format("AnimateDiff"), "lora": _NO_LORA.format("AnimateDiff"),
              "motion-adapter": "this UNet has motion modules already: give the image UNet it was made from"},
)
