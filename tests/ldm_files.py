"""Test helpers: original (LDM) single-file checkpoints made from a UNet's state dict, and header-only big files.

The diffusers → LDM conversion here is written independently of `unetinspect.weights.ldm` (key by key with
regular expressions, in the opposite direction) and is itself checked against diffusers' own LDM → diffusers
conversion in test_ldm.py, so a mistake in our key map cannot hide behind the same mistake in the test.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import torch

PREFIX = "model.diffusion_model."

RESNET_LAYERS = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
                 "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
TOP_LEVEL = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
             "time_embedding.linear_2": "time_embed.2", "add_embedding.linear_1": "label_emb.0.0",
             "add_embedding.linear_2": "label_emb.0.2", "class_embedding.linear_1": "label_emb.0.0",
             "class_embedding.linear_2": "label_emb.0.2", "class_embedding": "label_emb",  # the x4's class table
             "conv_norm_out": "out.0", "conv_out": "out.2"}

# A few tensors of the other parts of a full checkpoint, which the UNet loader must leave alone.
OTHER_COMPONENTS = {
    "first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3),
    "first_stage_model.decoder.conv_out.bias": (3,),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 8),
    "conditioner.embedders.1.model.ln_final.weight": (1280,),
    "model_ema.decay": (),
    "alphas_cumprod": (1000,),
}


def _resnet(rest: str) -> str:
    layer, _, tail = rest.partition(".")
    return f"{RESNET_LAYERS[layer]}.{tail}"


def ldm_key(key: str, config: dict) -> str:
    """The LDM name of one diffusers UNet key (configs with one layers_per_block for every level)."""
    per_level = config["layers_per_block"] + 1  # input blocks per level: the resnets and the downsampler
    for ours, theirs in TOP_LEVEL.items():
        if key.startswith(ours + "."):
            return theirs + key[len(ours):]
    if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = 1 + block * per_level + layer
        return f"input_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
        block, kind, layer, rest = int(m[1]), m[2], int(m[3]), m[4]
        index = block * per_level + layer
        return f"output_blocks.{index}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{index}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        block = int(m[1])
        after = 2 if config["up_block_types"][block] == "CrossAttnUpBlock2D" else 1
        return f"output_blocks.{block * per_level + per_level - 1}.{after}.conv.{m[2]}"
    raise KeyError(f"no LDM name for {key}")


def to_ldm(state_dict: dict, config: dict, prefix: str = PREFIX) -> dict:
    """A diffusers UNet state dict (tensors or shapes) under LDM names."""
    return {prefix + ldm_key(key, config): value for key, value in state_dict.items()}


def full_checkpoint(model, config: dict) -> dict[str, torch.Tensor]:
    """A whole SD checkpoint as the original repositories publish it: the UNet plus bits of VAE, text encoder,
    EMA and noise schedule (contiguous copies, as safetensors needs)."""
    tensors = {k: v.detach().clone().contiguous() for k, v in to_ldm(model.state_dict(), config).items()}
    generator = torch.Generator().manual_seed(0)
    tensors.update({name: torch.randn(shape, generator=generator) for name, shape in OTHER_COMPONENTS.items()})
    return tensors


def meta_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes for a config, built on the meta device (no memory, full size is fine). Our model's:
    test_models.py checks that they are diffusers' for every preset."""
    from unetinspect.configs.unet import UNetConfig
    from unetinspect.sources.loading import build_model

    return {k: tuple(v.shape) for k, v in build_model(UNetConfig.from_dict(config)).state_dict().items()}


def write_header_only(path: Path, shapes: dict[str, tuple[int, ...]], dtype: str = "F16",
                      metadata: dict[str, str] | None = None) -> Path:
    """A valid safetensors file of full size with no data written: a hand-made header, then a sparse hole.

    A multi-GB checkpoint costs a few hundred KB of disk this way, and readers that only read headers cannot
    tell it from the real thing.
    """
    item = {"F16": 2, "BF16": 2, "F32": 4}[dtype]
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, shape in shapes.items():
        nbytes = item
        for dim in shape:
            nbytes *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors aligns the data to 8 bytes
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        f.truncate(8 + len(raw) + offset)
    return path


def ldm_controlnet_key(key: str, config: dict) -> str:
    """The original (lllyasviel) name of one diffusers ControlNet key, hint convs numbered 0, 2, 4, ..."""
    if m := re.fullmatch(r"controlnet_cond_embedding\.(conv_in|blocks\.(\d+)|conv_out)\.(weight|bias)", key):
        count = len(config["conditioning_embedding_out_channels"])
        position = 0 if m[1] == "conv_in" else 2 * count - 1 if m[1] == "conv_out" else int(m[2]) + 1
        return f"input_hint_block.{2 * position}.{m[3]}"
    if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(weight|bias)", key):
        return f"zero_convs.{m[1]}.0.{m[2]}"
    if m := re.fullmatch(r"controlnet_mid_block\.(weight|bias)", key):
        return f"middle_block_out.0.{m[1]}"
    return ldm_key(key, config)


def to_ldm_controlnet(state_dict: dict, config: dict, prefix: str = "control_model.") -> dict:
    """A diffusers ControlNet state dict under the names of the original single-file ControlNets."""
    return {prefix + ldm_controlnet_key(key, config): value for key, value in state_dict.items()}
