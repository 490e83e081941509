"""Original single-file ControlNets (lllyasviel's SD 1.5 `control_v11*` files and SDXL ones in the same naming).

They are the LDM UNet's encoder under `control_model.` (or bare), plus three parts of their own:

    input_hint_block.{0,2,...,2k}   the conditioning image's convs (SiLU between) → controlnet_cond_embedding.
                                    conv_in, blocks.0 ... blocks.{2k-3}, conv_out
    zero_convs.N.0                  one 1x1 zero conv per skip                 → controlnet_down_blocks.N
    middle_block_out.0              the zero conv after the mid block          → controlnet_mid_block

Everything else (time_embed, label_emb, input_blocks, middle_block) is named as in an LDM UNet and renamed by
`ldm`'s table; the config is inferred from the shapes with `ldm`'s readers (the same conventions, documented
on `ldm.infer_config`), the decoder mirrored from the encoder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.errors import ConfigError, WeightsError
from unetinspect.weights import ldm

PREFIX = "control_model."
# Key roots only an original ControlNet has.
OWN_ROOTS = ("input_hint_block", "zero_convs", "middle_block_out")


def looks_like_ldm_controlnet(names: Iterable[str]) -> bool:
    """Keys of an original ControlNet: its hint block or zero convs, with or without `control_model.`."""
    return any(name.removeprefix(PREFIX).split(".", 1)[0] in OWN_ROOTS for name in names)


def controlnet_keys(names: Iterable[str]) -> dict[str, str]:
    """Name without `control_model.` → name in the file, for the ControlNet's tensors (nothing else)."""
    names = list(names)
    prefixed = any(n.startswith(PREFIX) for n in names)
    return {n.removeprefix(PREFIX): n for n in names
            if (n.startswith(PREFIX) or not prefixed)
            and n.removeprefix(PREFIX).split(".", 1)[0] in (*OWN_ROOTS, *ldm.UNET_ROOTS)}


def _hint_convs(shapes: Mapping[str, tuple[int, ...]], origin: str) -> list[int]:
    """The indices of the hint block's convolutions, in order (0, 2, 4, ... in the released files)."""
    indices = sorted({int(m[1]) for k in shapes if (m := re.fullmatch(r"input_hint_block\.(\d+)\.weight", k))})
    if len(indices) < 2 or len(indices) % 2:
        raise WeightsError(f"{origin}: input_hint_block has {len(indices)} convolutions; a ControlNet's has an "
                           "even number, 2 or more (conv_in, pairs of blocks, conv_out)")
    return indices


def infer_controlnet_config(shapes: Mapping[str, tuple[int, ...]], origin: str = "checkpoint") -> ControlNetConfig:
    """The config of an original ControlNet, from its tensor shapes (see `ldm.infer_config` for the conventions)."""
    mine = {short: tuple(shapes[full]) for short, full in controlnet_keys(shapes).items()}
    reader = ldm._ShapeReader(mine, origin)
    try:
        unet = _infer_encoder(reader)
        hints = _hint_convs(mine, origin)
        convs = [mine[f"input_hint_block.{i}.weight"] for i in hints]
        # conv_in's output, then the output of every second conv (the stride-2 ones), the last being conv_out
        embedding = (convs[0][0], *(convs[i][0] for i in range(2, len(convs) - 1, 2)))
        return ControlNetConfig.from_unet(unet, conditioning_channels=convs[0][1],
                                          conditioning_embedding_out_channels=embedding)
    except ConfigError as exc:
        raise WeightsError(f"{origin}: the tensor shapes imply an invalid ControlNet config: {exc.message}",
                           "pass --config with the ControlNet's config.json") from None


def _infer_encoder(reader: ldm._ShapeReader):
    """The UNet config whose encoder the ControlNet copies (its decoder mirrored), inferred as `ldm` does."""
    first_channels, in_channels = reader.shape("input_blocks.0.0.weight", ndim=4)[:2]
    levels = ldm._down_levels(reader)
    if len({level.layers for level in levels}) > 1:
        reader.fail("a ControlNet has the same number of resnets at every level")
    channels = [level.channels for level in levels]
    if channels[0] != first_channels:
        reader.fail(f"input_blocks.1 has {channels[0]} channels but input_blocks.0.0 makes {first_channels}")
    mid_type, mid_depth = ldm._middle(reader)
    if mid_type != "UNetMidBlock2DCrossAttn":
        reader.fail("a ControlNet's middle_block is resnet, transformer, resnet")
    linear = ldm._uses_linear_projection(reader)
    down_depths = [level.depth for level in levels]
    mirrored_up = [[depth] * (level.layers + 1) for depth, level in zip(reversed(down_depths), reversed(levels))]
    attended = [d is not None for d in down_depths]
    attended[-1] = True  # the mid block always attends
    cross_attention = ldm._cross_attention_dim(reader)
    embedding = ldm._label_embedding(reader, cross_attention.get("cross_attention_dim"))
    preset = ldm.image_preset(ldm._family(embedding, linear))
    structure = dict(
        in_channels=in_channels, block_out_channels=channels, layers_per_block=levels[0].layers,
        down_block_types=["CrossAttnDownBlock2D" if d else "DownBlock2D" for d in down_depths],
        up_block_types=["CrossAttnUpBlock2D" if d else "UpBlock2D" for d in reversed(down_depths)],
        mid_block_type=mid_type,
        **ldm._transformer_depths(reader, levels, mirrored_up, mid_depth),
        use_linear_projection=linear,
        attention_head_dim=(preset.attention_head_dim if isinstance(preset.attention_head_dim, int)
                            else ldm._heads(reader, channels, attended)),
        num_attention_heads=None, **cross_attention, **embedding,
    )
    return preset.replace(**structure)


def diffusers_key_map(shapes: Mapping[str, tuple[int, ...]], config: ControlNetConfig) -> dict[str, str]:
    """Our (diffusers') key → the file's key, for every tensor of an original ControlNet laid out by `config`."""
    keys = controlnet_keys(shapes)
    renamed: dict[str, str] = {}
    hints = _hint_convs({k: shapes[v] for k, v in keys.items()}, "checkpoint")
    hint_names = ["conv_in", *(f"blocks.{i}" for i in range(len(hints) - 2)), "conv_out"]
    for index, ours in zip(hints, hint_names):
        for param in ("weight", "bias"):
            if (theirs := keys.get(f"input_hint_block.{index}.{param}")) is not None:
                renamed[f"controlnet_cond_embedding.{ours}.{param}"] = theirs
    unet_part: dict[str, tuple[int, ...]] = {}
    for short, full in keys.items():
        if m := re.fullmatch(r"zero_convs\.(\d+)\.0\.(weight|bias)", short):
            renamed[f"controlnet_down_blocks.{m[1]}.{m[2]}"] = full
        elif m := re.fullmatch(r"middle_block_out\.0\.(weight|bias)", short):
            renamed[f"controlnet_mid_block.{m[1]}"] = full
        elif short.split(".", 1)[0] in ldm.UNET_ROOTS:
            unet_part[short] = shapes[full]
    for ours, short in ldm.diffusers_key_map(unet_part, config.unet).items():
        renamed[ours] = keys[short]
    return renamed
