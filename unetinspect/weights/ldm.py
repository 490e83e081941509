"""Original (CompVis / LDM) single-file checkpoints: recognising them, renaming keys, inferring the config.

Most Stable Diffusion weights on disk are in this layout: a flat list of numbered blocks rather than diffusers'
nested levels. The UNet (under `model.diffusion_model.`, or bare in a UNet-only state dict) reads

    time_embed.{0,2}                      the timestep MLP                → time_embedding.linear_{1,2}
    label_emb.0.{0,2}                     SDXL's size/crop/pool MLP       → add_embedding.linear_{1,2}
    input_blocks.0.0                      the first conv                  → conv_in
    input_blocks.N.0 [+ input_blocks.N.1] a resnet [+ its transformer]    → down_blocks.b.resnets.l [.attentions.l]
    input_blocks.N.0.op                   a downsampler, closing a level  → down_blocks.b.downsamplers.0.conv
    middle_block.{0,1,2}                  resnet, transformer, resnet     → mid_block.resnets.0/attentions.0/resnets.1
    output_blocks.N.0 [+ .1] [+ .K.conv]  resnet [+ transformer] [+ upsampler] → up_blocks.b.resnets.l ...
    out.{0,2}                             the final norm and conv         → conv_norm_out, conv_out

Resnets name their layers by position (`in_layers.0` is the first norm, `out_layers.3` the second conv); the
transformers already use diffusers' names. Every tensor has the same shape on both sides.

The config is inferred from the tensor shapes alone, which show channels, levels, layers, where attention is,
transformer depths, the text width and the kind of projection. They do not show four things, for which the
conventions of the released models are assumed (documented on `infer_config`); `--config` overrides them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import NoReturn

from unetinspect.configs.block_types import BLOCK_TYPES
from unetinspect.configs.unet import UNET_CLASS, UNetConfig
from unetinspect.errors import ConfigError, WeightsError
from unetinspect.presets import PRESETS, load_preset_dict

UNET_PREFIX = "model.diffusion_model."
# The top-level names of a bare LDM UNet state dict.
UNET_ROOTS = ("input_blocks", "middle_block", "output_blocks", "time_embed", "label_emb", "out")
# What else a full checkpoint carries, by key prefix.
COMPONENT_PREFIXES = (
    ("first_stage_model.", "VAE"),
    ("cond_stage_model.", "text encoder"),
    ("conditioner.embedders.0.", "text encoder"),
    ("conditioner.embedders.1.", "text encoder 2"),
    ("model_ema.", "EMA weights"),
)

# SD 2.x and SDXL (linear projections) have 64-channel heads; SD 1.x and the x4 upscaler 8 heads at every level.
SD2_HEAD_CHANNELS = 64
# SDXL embeds each of its size/crop (or aesthetic-score) numbers sinusoidally in 256 channels.
SDXL_TIME_ID_CHANNELS = 256
# Stable unCLIP's `label_emb` is an MLP like SDXL's; its text is SD 2.x's (OpenCLIP-H, 1024 wide), SDXL's is
# 2048 (base) or 1280 (refiner).
UNCLIP_TEXT_WIDTH = 1024

# Resnet layers by position in LDM → by name in diffusers.
RESNET_NAMES = {
    "in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
    "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut",
}


def looks_like_ldm(names: Iterable[str]) -> bool:
    """True for a full SD checkpoint (`model.diffusion_model.*`) or a bare LDM UNet state dict."""
    return any(n.startswith(UNET_PREFIX) or n.startswith("input_blocks.") for n in names)


def unet_keys(names: Iterable[str]) -> dict[str, str]:
    """The UNet's tensors of an LDM checkpoint: name without the prefix → name in the file.

    With `model.diffusion_model.` keys present only those count (the rest is VAE, text encoders, EMA, the noise
    schedule); a bare state dict counts the keys under the LDM UNet's own top-level names.
    """
    names = list(names)
    if any(n.startswith(UNET_PREFIX) for n in names):
        return {n[len(UNET_PREFIX):]: n for n in names if n.startswith(UNET_PREFIX)}
    return {n: n for n in names if n.split(".", 1)[0] in UNET_ROOTS}


def component_of(name: str) -> str:
    """Which part of an LDM checkpoint a key belongs to: "UNet", "VAE", "text encoder", ... or "other"."""
    if name.startswith(UNET_PREFIX) or name.split(".", 1)[0] in UNET_ROOTS:
        return "UNet"
    return next((label for prefix, label in COMPONENT_PREFIXES if name.startswith(prefix)), "other")


# ---- config inference ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Level:
    """One resolution level of the down path as the input blocks show it."""

    channels: int
    layers: int
    depth: int | None  # transformer blocks after each resnet; None: no attention at this level


def infer_config(shapes: Mapping[str, tuple[int, ...]], origin: str = "checkpoint") -> UNetConfig:
    """The UNet config of an LDM checkpoint, from the shapes of its tensors alone.

    Read from the shapes: in/out channels and kernels (inpainting 9, instruct-pix2pix 8, depth 5, x4 upscaler 7),
    channels per level, resnets per level, which levels have attention (down and up separately), transformer
    depth per level, per up layer (SSD-1B's up path differs from its down path) and in the middle (none: one
    resnet, UNetMidBlock2D, as in SSD-1B and Vega), the text width (`cross_attention_dim`), transformers that
    attend only to the text (the x4 upscaler's), linear vs 1x1-conv projections, the timestep MLP width, and
    what `label_emb` is: SDXL's size/crop MLP, stable unCLIP's image-embedding MLP (told apart by the text
    width: 1024 is SD 2.x's, which unCLIP keeps) or the x4 upscaler's noise-level class table.

    Not in the shapes, so taken from the released models of the family (the preset sd15 for conv projections,
    sd21 for linear, sdxl, sd21-unclip or sd-x4-upscaler by `label_emb`):
    - heads: a fixed head count where the family has one (SD 1.x and the x4 upscaler: 8 per transformer,
      `attention_head_dim=8`, diffusers' historical name for the head count); else 64-channel heads, written as
      heads per level (`attention_head_dim=[5, 10, 20, 20]` for SD 2.x), as SD 2.x's and SDXL's configs write them;
    - `norm_num_groups` 32 and every other non-structural field, and `only_cross_attention` where the shapes
      cannot tell (no attention at a level, or text as wide as the level);
    - SDXL's `addition_time_embed_dim` is 256;
    - `sample_size` and `upcast_attention` (SD 2.x 768-v vs 512-base, v vs epsilon prediction cannot be told
      apart): those of the matching preset. A checkpoint whose structure is exactly a preset's gets exactly that
      preset's config (SSD-1B's, Vega's, the x4 upscaler's, ...).

    Raises `WeightsError` naming the keys that fit no supported structure.
    """
    unet = {short: tuple(shapes[full]) for short, full in unet_keys(shapes).items()}
    if not unet:
        raise WeightsError(f"{origin}: no UNet tensors found (no model.diffusion_model.* or input_blocks.* keys)")
    reader = _ShapeReader(unet, origin)
    try:
        return _infer(reader)
    except ConfigError as exc:
        raise WeightsError(f"{origin}: the tensor shapes imply an invalid config: {exc.message}",
                           "pass --config FILE or --config PRESET") from None


def _infer(reader: _ShapeReader) -> UNetConfig:
    first_channels, in_channels, conv_in_kernel = reader.shape("input_blocks.0.0.weight", ndim=4)[:3]
    out_channels, _, conv_out_kernel = reader.shape("out.2.weight", ndim=4)[:3]
    time_embed_dim = reader.shape("time_embed.0.weight", ndim=2)[0]
    levels = _down_levels(reader)
    channels = [level.channels for level in levels]
    if channels[0] != first_channels:
        reader.fail(f"input_blocks.1 has {channels[0]} channels but input_blocks.0.0 makes {first_channels}")
    up_depths = _up_depths(reader, levels)
    mid_type, mid_depth = _middle(reader) if reader.has("middle_block") else (None, None)
    linear = _uses_linear_projection(reader)
    attended = [level.depth is not None or any(up) for level, up in zip(levels, reversed(up_depths))]
    attended[-1] = attended[-1] or mid_depth is not None
    cross_attention = _cross_attention_dim(reader)
    text_width = cross_attention.get("cross_attention_dim")
    embedding = _label_embedding(reader, text_width)
    family = _family(embedding, linear)
    preset = image_preset(family)

    structure = dict(
        in_channels=in_channels, out_channels=out_channels, conv_in_kernel=conv_in_kernel,
        conv_out_kernel=conv_out_kernel, block_out_channels=channels,
        layers_per_block=_one_or_list([level.layers for level in levels]),
        down_block_types=["CrossAttnDownBlock2D" if lv.depth else "DownBlock2D" for lv in levels],
        up_block_types=["CrossAttnUpBlock2D" if any(d) else "UpBlock2D" for d in up_depths],
        mid_block_type=mid_type,
        **_transformer_depths(reader, levels, up_depths, mid_depth),
        time_embedding_dim=None if time_embed_dim == 4 * first_channels else time_embed_dim,
        use_linear_projection=linear,
        attention_head_dim=(preset.attention_head_dim if isinstance(preset.attention_head_dim, int)
                            else _heads(reader, channels, attended)),
        num_attention_heads=None,
        only_cross_attention=_only_cross_attention(reader, levels, text_width, preset.only_cross_attention),
        **cross_attention,
        **embedding,
    )
    config = preset.replace(**structure)
    return next((preset for preset in map(image_preset, _image_presets()) if preset == config), config)


def image_preset(name: str) -> UNetConfig:
    """An image UNet's preset as its config: what an original checkpoint's shapes do not tell is taken from the
    preset of its family (the original layout is an image UNet's, so no other family's config is read here)."""
    return UNetConfig.from_dict(load_preset_dict(name), origin=f"preset {name}")


def _image_presets() -> list[str]:
    return [name for name in PRESETS if load_preset_dict(name).get("_class_name", UNET_CLASS) == UNET_CLASS]


class _ShapeReader:
    """The UNet's shapes (without prefix) and errors that name the keys that did not fit."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], origin: str) -> None:
        self.shapes = shapes
        self.origin = origin
        # Every module path that holds tensors, and the transformer blocks under each transformer: indexed once,
        # so that reading the ~2,000 keys of SDXL stays a few milliseconds.
        self.modules = {".".join(parts[:i]) for parts in (k.split(".") for k in shapes) for i in range(1, len(parts))}
        self.blocks: dict[str, set[int]] = {}
        for key in shapes:
            if m := re.match(r"(.+)\.transformer_blocks\.(\d+)\.", key):
                self.blocks.setdefault(m[1], set()).add(int(m[2]))

    def fail(self, what: str) -> NoReturn:
        raise WeightsError(f"{self.origin}: not a supported SD UNet checkpoint: {what}",
                           "if it is one, pass --config FILE or --config PRESET to say which")

    def shape(self, key: str, ndim: int | None = None) -> tuple[int, ...]:
        if key not in self.shapes:
            self.fail(f"tensor {key!r} is missing")
        shape = self.shapes[key]
        if ndim is not None and len(shape) != ndim:
            self.fail(f"tensor {key!r} has shape {list(shape)}, expected {ndim} dimensions")
        return shape

    def has(self, module: str) -> bool:
        """Whether the checkpoint holds tensors under this module path."""
        return module in self.modules

    def indices(self, root: str) -> list[int]:
        """The block numbers under `root` (input_blocks / output_blocks), checked to run 0, 1, 2, ... with no gap."""
        found = sorted({int(m.group(1)) for k in self.shapes if (m := re.match(rf"{root}\.(\d+)\.", k))})
        if found != list(range(len(found))):
            missing = sorted(set(range(max(found, default=0) + 1)) - set(found))
            self.fail(f"{root} are not numbered 0..{len(found) - 1}: {root}.{missing[0]} is missing")
        return found

    def depth(self, prefix: str) -> int | None:
        """Transformer blocks of the transformer at `prefix` (None if there is none)."""
        if not self.has(prefix):
            return None
        blocks = self.blocks.get(prefix)
        if not blocks:
            self.fail(f"{prefix} is not a transformer (it has no transformer_blocks)")
        return len(blocks)

    def resnet_channels(self, prefix: str) -> int:
        return self.shape(f"{prefix}.out_layers.3.weight", ndim=4)[0]


def _down_levels(reader: _ShapeReader) -> list[_Level]:
    """Group input_blocks 1.. into levels: resnets (each maybe with a transformer), closed by a downsampler."""
    levels: list[_Level] = []
    resnets: list[tuple[int, int | None]] = []  # (channels, depth) of the current level's layers
    indices = reader.indices("input_blocks")

    def close(at: str) -> None:
        if not resnets:
            reader.fail(f"{at} closes a level that has no resnet")
        if len(set(resnets)) > 1:
            found = ", ".join(f"{c} channels/{'no attention' if d is None else f'depth {d}'}" for c, d in resnets)
            reader.fail(f"the resnets of one level (before {at}) differ in channels or attention: {found}")
        levels.append(_Level(resnets[0][0], len(resnets), resnets[0][1]))
        resnets.clear()

    for i in indices[1:]:
        if reader.has(f"input_blocks.{i}.0.op"):
            close(f"input_blocks.{i}.0.op")
            if reader.has(f"input_blocks.{i}.1"):
                reader.fail(f"input_blocks.{i} holds a downsampler and something else")
        elif reader.has(f"input_blocks.{i}.0.in_layers"):
            resnets.append((reader.resnet_channels(f"input_blocks.{i}.0"), reader.depth(f"input_blocks.{i}.1")))
        else:
            reader.fail(f"input_blocks.{i}.0 is neither a resnet (in_layers) nor a downsampler (op)")
    if not resnets:
        reader.fail("the last input block is a downsampler (or there are no input blocks)")
    close("the middle block")
    return levels


def _up_depths(reader: _ShapeReader, levels: list[_Level]) -> list[list[int | None]]:
    """Transformer depth of each layer of each up block (None: no attention), checking the output blocks mirror
    the levels. Depths may differ from layer to layer (SSD-1B), attention may not."""
    n = len(levels)
    expected = sum(level.layers + 1 for level in levels)
    found = len(reader.indices("output_blocks"))
    if found != expected:
        reader.fail(f"{found} output_blocks, but {n} levels of {[lv.layers for lv in levels]} resnets need {expected}")
    depths: list[list[int | None]] = []
    index = 0
    for i, level in enumerate(reversed(levels)):
        block: list[int | None] = []
        for layer in range(level.layers + 1):
            prefix = f"output_blocks.{index}"
            if reader.resnet_channels(f"{prefix}.0") != level.channels:
                reader.fail(f"{prefix}.0 has {reader.resnet_channels(prefix + '.0')} channels, "
                            f"its level has {level.channels}")
            has_transformer = reader.has(f"{prefix}.1") and not reader.has(f"{prefix}.1.conv")
            block.append(reader.depth(f"{prefix}.1") if has_transformer else None)
            last_upsamples = layer == level.layers and i < n - 1
            upsampler = f"{prefix}.{2 if has_transformer else 1}.conv.weight"
            if last_upsamples != (upsampler in reader.shapes):
                reader.fail(f"{prefix}: expected {'an' if last_upsamples else 'no'} upsampler ({upsampler})")
            index += 1
        if len({depth is None for depth in block}) > 1:
            reader.fail(f"the output blocks of up block {i} differ in attention")
        depths.append(block)
    return depths


def _middle(reader: _ShapeReader) -> tuple[str, int | None]:
    """The mid block's type and transformer depth: resnet, transformer, resnet (UNetMidBlock2DCrossAttn), or one
    resnet alone (UNetMidBlock2D, as SSD-1B and Vega have it)."""
    reader.shape("middle_block.0.in_layers.0.weight")
    if not reader.has("middle_block.1") and not reader.has("middle_block.2"):
        return "UNetMidBlock2D", None
    reader.shape("middle_block.2.in_layers.0.weight")
    depth = reader.depth("middle_block.1")
    if depth is None or reader.has("middle_block.3"):
        reader.fail("middle_block is neither resnet, transformer, resnet (UNetMidBlock2DCrossAttn) nor one resnet "
                    "(UNetMidBlock2D)")
    return "UNetMidBlock2DCrossAttn", depth


def _transformers(reader: _ShapeReader) -> list[str]:
    """Prefixes of every transformer (they are the modules with a proj_in)."""
    return sorted(k.removesuffix(".proj_in.weight") for k in reader.shapes if k.endswith(".proj_in.weight"))


def _uses_linear_projection(reader: _ShapeReader) -> bool:
    kinds = {len(reader.shapes[f"{t}.proj_in.weight"]) for t in _transformers(reader)}
    if len(kinds) > 1:
        reader.fail("some transformers project with linear layers and some with 1x1 convolutions")
    return kinds == {2}


def _cross_attention_dim(reader: _ShapeReader) -> dict[str, int]:
    widths = {reader.shapes[k][1] for k in reader.shapes if k.endswith(".attn2.to_k.weight")}
    if len(widths) > 1:
        reader.fail(f"the cross-attentions read text of different widths {sorted(widths)}")
    return {"cross_attention_dim": widths.pop()} if widths else {}


def _heads(reader: _ShapeReader, channels: list[int], attended: list[bool]) -> list[int]:
    """64-channel heads per level (SD 2.x / SDXL); every level with attention must divide into them."""
    for i, (width, has_attention) in enumerate(zip(channels, attended)):
        if has_attention and width % SD2_HEAD_CHANNELS:
            reader.fail(f"level {i} has {width} channels, not a multiple of the {SD2_HEAD_CHANNELS}-channel heads "
                        "of linear-projection (SD 2.x / SDXL) UNets")
    return [max(width // SD2_HEAD_CHANNELS, 1) for width in channels]


def _transformer_depths(reader: _ShapeReader, levels: list[_Level], up_depths: list[list[int | None]],
                        mid_depth: int | None) -> dict[str, object]:
    """`transformer_layers_per_block` as the released configs write it: one int when all depths agree
    (SD 1.x/2.x: 1, SDXL refiner: 4), else one per level, 1 where a level has no attention (SDXL: [1, 2, 10]).

    diffusers gives the up blocks the reversed down depths unless `reverse_transformer_layers_per_block` lists
    them layer by layer: that list is written only when the file's up path differs, with 1 for an up block
    without attention, as SSD-1B's config has it ([[4, 4, 10], [2, 1, 1], 1]).
    The mid block has the last level's depth, so those must agree.
    """
    down = [level.depth for level in levels]
    mirrored = list(reversed(up_depths))
    depths = [d if d is not None else next((u for u in up if u is not None), None) for d, up in zip(down, mirrored)]
    if mid_depth is not None and down[-1] is not None and down[-1] != mid_depth:
        reader.fail(f"the middle block has {mid_depth} transformer blocks but the last level {down[-1]}")
    if mid_depth is not None and depths[-1] is None:
        depths[-1] = mid_depth
    symmetric = all(u is None or u == d for d, up in zip(depths, mirrored) for u in up)
    if not symmetric:
        return {"transformer_layers_per_block": [d if d is not None else 1 for d in depths],
                "reverse_transformer_layers_per_block": [[u for u in up] if any(up) else 1 for up in up_depths]}
    values = {d for d in depths if d is not None}
    if len(values) <= 1:
        return {"transformer_layers_per_block": values.pop() if values else 1,
                "reverse_transformer_layers_per_block": None}
    return {"transformer_layers_per_block": [d if d is not None else 1 for d in depths],
            "reverse_transformer_layers_per_block": None}


def _only_cross_attention(reader: _ShapeReader, levels: list[_Level], text_width: int | None,
                          convention: bool | list[bool]) -> bool | list[bool]:
    """Which levels' transformers attend only to the text (the x4 upscaler's): their first attention reads keys
    of the text's width instead of the pixels'. Where the shapes cannot tell (no attention, or text as wide as
    the level) the family's convention holds."""
    n = len(levels)
    known = dict(enumerate(convention)) if isinstance(convention, list) and len(convention) == n else {}
    found: dict[int, set[bool]] = {}
    for prefix, level in _transformer_levels(levels).items():
        key = f"{prefix}.transformer_blocks.0.attn1.to_k.weight"
        if key in reader.shapes and text_width is not None:
            width = reader.shapes[key][1]
            if width != levels[level].channels or width != text_width:
                found.setdefault(level, set()).add(width != levels[level].channels)
    for level, kinds in found.items():
        if len(kinds) > 1:
            reader.fail(f"the transformers of level {level} differ in attending to the pixels")
    only = [found[i].pop() if i in found else known.get(i, False) for i in range(n)]
    return only if any(only) else False


def _transformer_levels(levels: list[_Level]) -> dict[str, int]:
    """The LDM module path of every place a transformer can sit → the level (down index) it belongs to."""
    where: dict[str, int] = {}
    index = 1
    for i, level in enumerate(levels):
        for _ in range(level.layers):
            where[f"input_blocks.{index}.1"] = i
            index += 1
        index += 1  # the downsampler (a place past the last level is never looked up)
    index = 0
    for i in reversed(range(len(levels))):
        for _ in range(levels[i].layers + 1):
            where[f"output_blocks.{index}.1"] = i
            index += 1
    return where


def _label_embedding(reader: _ShapeReader, text_width: int | None) -> dict[str, object]:
    """What `label_emb` is: SDXL's size/crop embedding (an MLP on pooled text + time ids, added to the time
    embedding), stable unCLIP's image-embedding projection (the same MLP, where the text is SD 2.x's), or the
    x4 upscaler's noise-level class table."""
    none: dict[str, object] = {"addition_embed_type": None, "addition_time_embed_dim": None,
                               "projection_class_embeddings_input_dim": None, "class_embed_type": None,
                               "num_class_embeds": None}
    if not reader.has("label_emb"):
        return none
    if "label_emb.weight" in reader.shapes:
        return none | {"num_class_embeds": reader.shape("label_emb.weight", ndim=2)[0]}
    if "label_emb.0.0.weight" not in reader.shapes:
        reader.fail(f"label_emb is neither a class table (label_emb.weight) nor an MLP (label_emb.0.0); it has "
                    f"{next(k for k in reader.shapes if k.startswith('label_emb.'))!r}")
    width = reader.shape("label_emb.0.0.weight", ndim=2)[1]
    if text_width == UNCLIP_TEXT_WIDTH:
        return none | {"class_embed_type": "projection", "projection_class_embeddings_input_dim": width}
    return none | {"addition_embed_type": "text_time", "addition_time_embed_dim": SDXL_TIME_ID_CHANNELS,
                   "projection_class_embeddings_input_dim": width}


def _family(embedding: dict[str, object], linear: bool) -> str:
    """The preset whose conventions fill in what the shapes do not show."""
    if embedding["addition_embed_type"] == "text_time":
        return "sdxl"
    if embedding["num_class_embeds"] is not None:
        return "sd-x4-upscaler"
    if embedding["class_embed_type"] == "projection":
        return "sd21-unclip"
    return "sd21" if linear else "sd15"


def _one_or_list(values: list[int]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else values


# ---- key renaming -------------------------------------------------------------------------------------------------


def diffusers_key_map(shapes: Mapping[str, tuple[int, ...]], config: UNetConfig) -> dict[str, str]:
    """Our (diffusers') key → the file's key, for every UNet tensor of an LDM checkpoint, laid out by `config`.

    Only UNet keys are mapped; VAE, text encoders, EMA copies and the noise schedule are left alone. A UNet key
    with no place in the config is an error naming it (a missing one is reported by the loader, in our names).
    """
    modules = module_table(config)
    renamed: dict[str, str] = {}
    unplaced: list[str] = []
    for short, full in unet_keys(shapes).items():
        ours = _rename(short, modules)
        if ours is None:
            unplaced.append(full)
        else:
            renamed[ours] = full
    if unplaced:
        raise WeightsError(f"{len(unplaced)} UNet tensor(s) of the checkpoint have no place in this config, "
                           f"e.g. {unplaced[0]!r}", "the checkpoint has another structure: check --config")
    return renamed


def _rename(key: str, modules: dict[str, tuple[str, dict[str, str]]]) -> str | None:
    """One key through the module table: the longest known module prefix, then the layer inside it."""
    parts = key.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        entry = modules.get(".".join(parts[:cut]))
        if entry is None:
            continue
        ours, layers = entry
        rest = parts[cut:]
        if not layers:
            return ".".join([ours, *rest])
        for width in (2, 1):
            layer = layers.get(".".join(rest[:width]))
            if layer is not None:
                return ".".join([ours, layer, *rest[width:]])
        return None
    return None


def module_table(config: UNetConfig) -> dict[str, tuple[str, dict[str, str]]]:
    """LDM module → (our module, renames of the layers inside it; empty: same names), walked from the config."""
    same: dict[str, str] = {}
    table = {
        "input_blocks.0.0": ("conv_in", same),
        "time_embed.0": ("time_embedding.linear_1", same),
        "time_embed.2": ("time_embedding.linear_2", same),
        "out.0": ("conv_norm_out", same),
        "out.2": ("conv_out", same),
    }
    if config.addition_embed_type == "text_time":
        table["label_emb.0.0"] = ("add_embedding.linear_1", same)
        table["label_emb.0.2"] = ("add_embedding.linear_2", same)
    if config.class_embed_type == "projection":
        table["label_emb.0.0"] = ("class_embedding.linear_1", same)
        table["label_emb.0.2"] = ("class_embedding.linear_2", same)
    if config.num_class_embeds is not None:
        table["label_emb"] = ("class_embedding", same)

    n = config.num_blocks
    layers = config.layers_per_block_list
    index = 1
    for b, block_type in enumerate(config.down_block_classes):
        for layer in range(layers[b]):
            table[f"input_blocks.{index}.0"] = (f"down_blocks.{b}.resnets.{layer}", RESNET_NAMES)
            if BLOCK_TYPES[block_type].attention == "transformer":  # the only attention LDM files hold
                table[f"input_blocks.{index}.1"] = (f"down_blocks.{b}.attentions.{layer}", same)
            index += 1
        if b < n - 1:
            table[f"input_blocks.{index}.0.op"] = (f"down_blocks.{b}.downsamplers.0.conv", same)
            index += 1

    if config.mid_block_type is not None:
        table["middle_block.0"] = ("mid_block.resnets.0", RESNET_NAMES)
    if config.mid_block_type is not None and BLOCK_TYPES[config.mid_block_type].attention == "transformer":
        table["middle_block.1"] = ("mid_block.attentions.0", same)
        table["middle_block.2"] = ("mid_block.resnets.1", RESNET_NAMES)

    index = 0
    for i, block_type in enumerate(config.up_block_classes):
        attention = BLOCK_TYPES[block_type].attention == "transformer"
        count = layers[n - 1 - i] + 1
        for layer in range(count):
            table[f"output_blocks.{index}.0"] = (f"up_blocks.{i}.resnets.{layer}", RESNET_NAMES)
            if attention:
                table[f"output_blocks.{index}.1"] = (f"up_blocks.{i}.attentions.{layer}", same)
            if layer == count - 1 and i < n - 1:
                upsampler = f"output_blocks.{index}.{2 if attention else 1}.conv"
                table[upsampler] = (f"up_blocks.{i}.upsamplers.0.conv", same)
            index += 1
    return table
