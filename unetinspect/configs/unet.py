"""`UNetConfig`: the fields of diffusers' `UNet2DConditionModel` config.json, with the same names and defaults.

diffusers lets many fields be an int *or* a per-block list; the `per_block` helpers here turn them into one list
per down block so the model code never has to ask "is this a list?". Validation runs when a config is made and
catches what would otherwise fail deep inside torch with a shape error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetinspect.configs.block_types import BLOCK_TYPES, names_on
from unetinspect.configs.values import check_field_values
from unetinspect.errors import ConfigError, ConfigWarning, UnsupportedConfigError
from unetinspect.files import read_capped

DOWN_BLOCK_TYPES = names_on("down")
UP_BLOCK_TYPES = names_on("up")
MID_BLOCK_TYPES = (*names_on("mid"), None)
ACTIVATIONS = ("silu", "swish", "mish", "gelu", "relu")
# diffusers reads "UNetResCrossAttnDownBlock2D" as "CrossAttnDownBlock2D" (an old naming, still accepted)
BLOCK_PREFIX_ALIAS = "UNetRes"

# Blocks diffusers' get_down_block/get_up_block can make but a UNet2DConditionModel cannot run (they belong to
# the VAE or to the unconditional score-SDE UNet: no timestep input, or a third skip output).
NOT_CONDITIONAL_BLOCKS = {
    "SkipDownBlock2D", "AttnSkipDownBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D",
    "SkipUpBlock2D", "AttnSkipUpBlock2D", "UpDecoderBlock2D", "AttnUpDecoderBlock2D",
}
TIME_EMBEDDING_TYPES = ("positional", "fourier")
CLASS_EMBED_TYPES = (None, "timestep", "identity", "projection", "simple_projection")
ADDITION_EMBED_TYPES = (None, "text", "text_image", "text_time", "image", "image_hint")
ENCODER_HID_DIM_TYPES = (None, "text_proj", "text_image_proj", "image_proj")
ATTENTION_TYPES = ("default", "gated", "gated-text-image")
CROSS_ATTENTION_NORMS = (None, "layer_norm", "group_norm")

# A diffusers config.json is 1-3 KB; anything this big is not one (and may be /dev/zero).
MAX_CONFIG_BYTES = 1 << 20

# Metadata diffusers writes beside the architecture; kept, never warned about.
METADATA_FIELDS = ("_class_name", "_diffusers_version", "_name_or_path", "_use_default_values")
UNET_CLASS = "UNet2DConditionModel"


@dataclass(frozen=True)
class UNetConfig:
    """The architecture of a conditional UNet, field for field as diffusers' config.json names it."""

    sample_size: int | list[int] | None = None
    in_channels: int = 4
    out_channels: int = 4
    center_input_sample: bool = False
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    down_block_types: list[str] = field(
        default_factory=lambda: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]
    )
    mid_block_type: str | None = "UNetMidBlock2DCrossAttn"
    up_block_types: list[str] = field(
        default_factory=lambda: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
    )
    only_cross_attention: bool | list[bool] = False
    block_out_channels: list[int] = field(default_factory=lambda: [320, 640, 1280, 1280])
    layers_per_block: int | list[int] = 2
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    dropout: float = 0.0
    act_fn: str = "silu"
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    cross_attention_dim: int | list[int] = 1280
    transformer_layers_per_block: int | list[int] | list[list[int]] = 1
    reverse_transformer_layers_per_block: list[list[int]] | None = None
    encoder_hid_dim: int | None = None
    encoder_hid_dim_type: str | None = None
    attention_head_dim: int | list[int] = 8
    num_attention_heads: int | list[int] | None = None
    dual_cross_attention: bool = False
    use_linear_projection: bool = False
    class_embed_type: str | None = None
    addition_embed_type: str | None = None
    addition_time_embed_dim: int | None = None
    num_class_embeds: int | None = None
    upcast_attention: bool = False
    resnet_time_scale_shift: str = "default"
    resnet_skip_time_act: bool = False
    resnet_out_scale_factor: float = 1.0
    time_embedding_type: str = "positional"
    time_embedding_dim: int | None = None
    time_embedding_act_fn: str | None = None
    timestep_post_act: str | None = None
    time_cond_proj_dim: int | None = None
    conv_in_kernel: int = 3
    conv_out_kernel: int = 3
    projection_class_embeddings_input_dim: int | None = None
    attention_type: str = "default"
    class_embeddings_concat: bool = False
    mid_block_only_cross_attention: bool | None = None
    cross_attention_norm: str | None = None
    addition_embed_type_num_heads: int = 64
    # Fields we do not know, kept so that a config round-trips; named in a warning when read.
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        _validate(self)

    # ---- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> UNetConfig:
        """Build from a diffusers-style dict; unknown fields are kept in `extra` and named in a warning."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        unknown = sorted(k for k in extra if k not in METADATA_FIELDS)
        class_name = data.get("_class_name")
        if class_name not in (None, UNET_CLASS):
            raise UnsupportedConfigError("_class_name", class_name, "unetinspect builds UNet2DConditionModel only")
        if unknown:
            warnings.warn(f"{origin}: unknown config fields kept but ignored: {', '.join(unknown)}", ConfigWarning,
                          stacklevel=2)
        try:
            return cls(**kwargs, extra=extra)
        except TypeError as exc:  # a field of the wrong JSON type deep in a comparison
            raise ConfigError(f"{origin}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> UNetConfig:
        """Read a diffusers config.json."""
        return cls.from_dict(read_json_config(path), origin=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The config as diffusers writes it (metadata and unknown fields included)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        data.update(self.extra)
        return data

    def replace(self, **changes: Any) -> UNetConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ---- derived, per block -----------------------------------------------------------------------------------

    @property
    def num_blocks(self) -> int:
        return len(self.down_block_types)

    @property
    def down_block_classes(self) -> list[str]:
        """down_block_types as class names (diffusers' "UNetRes" prefix dropped)."""
        return [_block_class(name) for name in self.down_block_types]

    @property
    def up_block_classes(self) -> list[str]:
        return [_block_class(name) for name in self.up_block_types]

    def per_block(self, value: Any) -> list[Any]:
        """An int/bool-or-list field as one value per down block."""
        return list(value) if isinstance(value, (list, tuple)) else [value] * self.num_blocks

    @property
    def heads_per_block(self) -> list[int]:
        """Attention heads per down block.

        diffusers' historical naming: when `num_attention_heads` is null, `attention_head_dim` holds the number
        of *heads* (SD 1.5's 8 means 8 heads of 40 channels, not heads of 8 channels).
        """
        return self.per_block(self.num_attention_heads or self.attention_head_dim)

    @property
    def cross_attention_dims(self) -> list[int]:
        return self.per_block(self.cross_attention_dim)

    @property
    def layers_per_block_list(self) -> list[int]:
        return self.per_block(self.layers_per_block)

    @property
    def only_cross_attention_list(self) -> list[bool]:
        return self.per_block(self.only_cross_attention)

    @property
    def transformer_layers_list(self) -> list[int | list[int]]:
        """Transformer depth per down block (an int, or one int per resnet layer in asymmetric UNets)."""
        return self.per_block(self.transformer_layers_per_block)

    @property
    def up_transformer_layers_list(self) -> list[int | list[int]]:
        """Transformer depth per up block: reversed down depths unless the config gives them explicitly.

        As diffusers reads them: a list longer than the blocks is reversed whole (its extra entries come first),
        and `reverse_transformer_layers_per_block` is read from its start.
        """
        if self.reverse_transformer_layers_per_block is not None:
            return list(self.reverse_transformer_layers_per_block)
        return list(reversed(self.transformer_layers_list))

    @property
    def mid_transformer_layers(self) -> int | list[int]:
        """The mid block's depth: the *last* entry of transformer_layers_per_block, however long the list."""
        return self.transformer_layers_list[-1]

    @property
    def mid_only_cross_attention(self) -> bool:
        """`mid_block_only_cross_attention`, which defaults to a single-bool `only_cross_attention` (diffusers)."""
        if self.mid_block_only_cross_attention is not None:
            return self.mid_block_only_cross_attention
        return self.only_cross_attention if isinstance(self.only_cross_attention, bool) else False

    @property
    def encoder_projection(self) -> str | None:
        """encoder_hid_dim_type, which is text_proj when only encoder_hid_dim is set (diffusers sets it so)."""
        if self.encoder_hid_dim_type is None and self.encoder_hid_dim is not None:
            return "text_proj"
        return self.encoder_hid_dim_type

    @property
    def time_embed_dim(self) -> int:
        """Width of the timestep embedding MLP (4x the first block's channels unless set; 2x for fourier)."""
        factor = 2 if self.time_embedding_type == "fourier" else 4
        return self.time_embedding_dim or self.block_out_channels[0] * factor

    @property
    def blocks_time_embed_dim(self) -> int:
        """Width of the embedding the resnets receive: doubled when the class embedding is concatenated."""
        return self.time_embed_dim * 2 if self.class_embeddings_concat else self.time_embed_dim

    @property
    def sample_channels(self) -> int:
        """Channels of `sample` as the caller passes it: an image_hint UNet's in_channels also count the 4 of
        the encoded hint it concatenates itself."""
        return self.in_channels - 4 if self.addition_embed_type == "image_hint" else self.in_channels

    @property
    def reads_encoder_hidden_states(self) -> bool:
        """False for image_proj UNets (Kandinsky 2.2): their context is made from the image embedding alone."""
        return self.encoder_projection != "image_proj" or self.addition_embed_type == "text"

    @property
    def context_dim(self) -> int:
        """Last dimension of `encoder_hidden_states` as the caller passes it (before `encoder_hid_proj`)."""
        return self.encoder_hid_dim or self.cross_attention_dims[0]

    @property
    def num_downsamples(self) -> int:
        return self.num_blocks - 1

    @property
    def latent_multiple(self) -> int:
        """What the latent's height and width must be a multiple of. SD's conv upsamplers can land on any skip
        size; the resnet, attention-only and k-diffusion up blocks always double (in diffusers too), so a UNet
        that upsamples with one of them runs only on multiples of 2^downsamples."""
        upsampling = self.up_block_classes[:-1]  # the last up block does not upsample
        return 2 ** self.num_downsamples if any(BLOCK_TYPES[name].doubles_only for name in upsampling) else 1


def read_json_config(path: str | os.PathLike[str]) -> Any:
    """The JSON of a config file, read capped (a regular file of at most 1 MiB); one clear error otherwise."""
    path = Path(path)
    raw = read_capped(path, MAX_CONFIG_BYTES, ConfigError, "a config.json")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file", "give a diffusers config.json") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})",
            "fix the file or pass a preset name",
        ) from None
    except RecursionError:
        raise ConfigError(f"{path} nests its JSON too deeply to be a config", "give a diffusers config.json") \
            from None


def _check(condition: bool, message: str, hint: str | None = None) -> None:
    if not condition:
        raise ConfigError(message, hint)


def _validate(cfg: UNetConfig) -> None:
    """Catch configs that would fail deep in torch (or that diffusers refuses), naming the field."""
    check_field_values(cfg)  # types and bounds first: the checks below may then compare and divide
    _refuse_unsupported(cfg)
    _check_choices(cfg)
    n = cfg.num_blocks
    _check(n >= 1, "down_block_types is empty")
    for name in ("down_block_types", "up_block_types", "block_out_channels"):
        _check(isinstance(getattr(cfg, name), (list, tuple)), f"{name} must be a list")
    _check(
        len(cfg.up_block_types) == n,
        f"up_block_types has {len(cfg.up_block_types)} entries but down_block_types has {n}",
    )
    for kind, names, allowed in (
        ("down_block_types", cfg.down_block_types, DOWN_BLOCK_TYPES),
        ("up_block_types", cfg.up_block_types, UP_BLOCK_TYPES),
    ):
        for i, name in enumerate(names):
            if _block_class(name) not in allowed:
                raise ConfigError(f"unknown block type {kind}[{i}]={name!r}", f"expected one of {', '.join(allowed)}")
    if cfg.mid_block_type not in MID_BLOCK_TYPES:
        raise ConfigError(f"unknown block type mid_block_type={cfg.mid_block_type!r}",
                          f"expected one of {', '.join(str(t) for t in MID_BLOCK_TYPES if t)} or null")

    for name in ("block_out_channels", "layers_per_block", "attention_head_dim", "num_attention_heads",
                 "cross_attention_dim", "only_cross_attention"):
        value = getattr(cfg, name)
        if isinstance(value, (list, tuple)):
            _check(len(value) == n, f"{name} has {len(value)} entries but there are {n} down blocks",
                   "give one value per block or a single value")
    _check_transformer_depths(cfg)

    for name in ("in_channels", "out_channels", "norm_num_groups", "conv_in_kernel", "conv_out_kernel"):
        value = getattr(cfg, name)
        if name == "norm_num_groups" and value is None:
            continue
        _check(isinstance(value, int) and not isinstance(value, bool) and value > 0,
               f"{name} must be a positive integer, got {value!r}")
    for name in ("conv_in_kernel", "conv_out_kernel"):
        _check(getattr(cfg, name) % 2 == 1, f"{name} must be odd to keep the spatial size, got {getattr(cfg, name)}")
    for name in ("act_fn", "time_embedding_act_fn", "timestep_post_act"):
        value = getattr(cfg, name)
        if value is not None and value not in ACTIVATIONS:
            raise ConfigError(f"unknown activation {name}={value!r}", f"expected one of {', '.join(ACTIVATIONS)}")
    _check(cfg.resnet_time_scale_shift in ("default", "scale_shift"),
           f"resnet_time_scale_shift={cfg.resnet_time_scale_shift!r} is unknown", "expected 'default' or 'scale_shift'")

    for i, channels in enumerate(cfg.block_out_channels):
        _check(isinstance(channels, int) and channels > 0, f"block_out_channels[{i}] must be a positive integer")
    _check_groups_and_heads(cfg)
    _check_conditioning(cfg)


def _block_class(name: str) -> str:
    """A block type as its class name: diffusers drops a leading "UNetRes" (every name is a string by now:
    check_field_values runs first in _validate)."""
    if name.startswith(BLOCK_PREFIX_ALIAS):
        return name[len(BLOCK_PREFIX_ALIAS):]
    return name


def _refuse_unsupported(cfg: UNetConfig) -> None:
    """Blocks diffusers' block factories know but a UNet2DConditionModel cannot run, named for what they are."""
    for kind, names in (("down_block_types", cfg.down_block_types), ("up_block_types", cfg.up_block_types)):
        for i, name in enumerate(names if isinstance(names, (list, tuple)) else ()):
            if _block_class(name) in NOT_CONDITIONAL_BLOCKS:
                raise UnsupportedConfigError(
                    f"{kind}[{i}]", name,
                    "a VAE / unconditional-UNet block: diffusers' UNet2DConditionModel builds it but cannot call it "
                    "(no timestep input, or a third skip output)")


def _check_choices(cfg: UNetConfig) -> None:
    """Fields with a fixed set of values, refused as diffusers refuses them (or would fail later)."""
    choices = {
        "time_embedding_type": (cfg.time_embedding_type, TIME_EMBEDDING_TYPES),
        "class_embed_type": (cfg.class_embed_type, CLASS_EMBED_TYPES),
        "addition_embed_type": (cfg.addition_embed_type, ADDITION_EMBED_TYPES),
        "encoder_hid_dim_type": (cfg.encoder_hid_dim_type, ENCODER_HID_DIM_TYPES),
        "attention_type": (cfg.attention_type, ATTENTION_TYPES),
        "cross_attention_norm": (cfg.cross_attention_norm, CROSS_ATTENTION_NORMS),
    }
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"unknown {name}={value!r}",
                              f"expected one of {', '.join('null' if a is None else a for a in allowed)}")


def _check_transformer_depths(cfg: UNetConfig) -> None:
    """transformer_layers_per_block and its reverse, read as diffusers reads them: by index, so a longer list is
    fine (extra entries unread, or read by the mid block and the reversed up path) and a shorter one is not."""
    n = cfg.num_blocks
    depths = cfg.transformer_layers_per_block
    if isinstance(depths, (list, tuple)):
        _check(len(depths) >= n, f"transformer_layers_per_block has {len(depths)} entries but there are {n} blocks",
               "give at least one depth per block, or a single depth")
    reverse = cfg.reverse_transformer_layers_per_block
    if reverse is not None:
        _check(isinstance(reverse, (list, tuple)) and len(reverse) >= n,
               f"reverse_transformer_layers_per_block needs at least {n} entries (one per up block)")
    elif any(isinstance(t, (list, tuple)) for t in cfg.transformer_layers_list):
        raise ConfigError("transformer_layers_per_block gives per-layer depths (an asymmetric UNet)",
                          "set reverse_transformer_layers_per_block too, as diffusers requires")
    layers = cfg.layers_per_block_list
    uses = [(f"transformer_layers_per_block[{i}]", cfg.transformer_layers_list[i], layers[i])
            for i, name in enumerate(cfg.down_block_classes) if BLOCK_TYPES[name].heads_from_head_dim]
    uses += [(f"up depths [{i}]", cfg.up_transformer_layers_list[i], layers[n - 1 - i] + 1)
             for i, name in enumerate(cfg.up_block_classes) if BLOCK_TYPES[name].heads_from_head_dim]
    for where, depth, needed in uses:
        if isinstance(depth, (list, tuple)):
            _check(len(depth) >= needed, f"{where} lists {len(depth)} depths for a block of {needed} layers",
                   "give one depth per resnet layer")


def _check_groups_and_heads(cfg: UNetConfig) -> None:
    """Norm groups and attention heads must divide the channels they split, per block kind."""
    n = cfg.num_blocks
    groups = cfg.norm_num_groups
    heads, head_dims = cfg.heads_per_block, cfg.per_block(cfg.attention_head_dim)
    kinds = [(cfg.down_block_classes[i], cfg.up_block_classes[n - 1 - i]) for i in range(n)]
    uses_groups = (any(not BLOCK_TYPES[kind].k_diffusion for pair in kinds for kind in pair)
                   or cfg.mid_block_type is not None)
    if groups is None:
        _check(not uses_groups, "norm_num_groups is null, which only k-diffusion blocks (K*Block2D) can take",
               "set norm_num_groups, or use only K blocks and no mid block")
    for i, channels in enumerate(cfg.block_out_channels):
        if uses_groups:
            _check(channels % groups == 0,
                   f"block_out_channels[{i}]={channels} is not divisible by norm_num_groups={groups}")
        if any(BLOCK_TYPES[kind].heads_from_head_dim for kind in kinds[i]):
            _check(channels % heads[i] == 0,
                   f"block_out_channels[{i}]={channels} is not divisible by its {heads[i]} attention heads",
                   "check attention_head_dim / num_attention_heads")
        down_kind, up_kind = kinds[i]
        # diffusers reads an up block's head width at the up block's own index (n-1-i), not the level's
        widths = [head_dims[i]] * BLOCK_TYPES[down_kind].head_width_from_head_dim \
            + [head_dims[n - 1 - i]] * BLOCK_TYPES[up_kind].head_width_from_head_dim
        for width in widths:
            _check(channels % width == 0,
                   f"block_out_channels[{i}]={channels} is not divisible by attention_head_dim={width}",
                   "SimpleCrossAttn / Attn / K blocks read attention_head_dim as the width of one head")
        if any(BLOCK_TYPES[kind].k_diffusion for kind in kinds[i]):
            for width in (channels, 2 * channels):
                _check(width >= 32 and width % (width // 32) == 0,
                       f"block_out_channels[{i}]={channels} does not split into k-diffusion groups of ~32 channels",
                       "use multiples of 32")
    mid = cfg.block_out_channels[-1]
    mid_attention = BLOCK_TYPES[cfg.mid_block_type].attention if cfg.mid_block_type else "none"
    if mid_attention == "transformer":
        _check(mid % heads[-1] == 0, f"mid block channels {mid} not divisible by its {heads[-1]} attention heads")
    elif mid_attention == "added_kv":
        _check(mid % head_dims[-1] == 0,
               f"mid block channels {mid} not divisible by attention_head_dim={head_dims[-1]}")


def _check_conditioning(cfg: UNetConfig) -> None:
    if cfg.class_embed_type in ("projection", "simple_projection"):
        _check(cfg.projection_class_embeddings_input_dim is not None,
               f"class_embed_type={cfg.class_embed_type!r} needs projection_class_embeddings_input_dim")
    if cfg.addition_embed_type == "text_time":
        _check(cfg.addition_time_embed_dim is not None and cfg.projection_class_embeddings_input_dim is not None,
               "addition_embed_type='text_time' needs addition_time_embed_dim and "
               "projection_class_embeddings_input_dim")
    if cfg.encoder_hid_dim_type is not None:
        _check(cfg.encoder_hid_dim is not None,
               f"encoder_hid_dim_type={cfg.encoder_hid_dim_type!r} needs encoder_hid_dim")
    single_cross_dim = not isinstance(cfg.cross_attention_dim, (list, tuple))
    # diffusers builds these from cross_attention_dim before reading it per block, so it must be one number
    for needs_single, what in (
        (cfg.encoder_projection is not None, "encoder_hid_dim (encoder_hid_proj projects to it)"),
        (cfg.addition_embed_type == "text_image", "addition_embed_type='text_image'"),
        (cfg.addition_embed_type == "text" and cfg.encoder_hid_dim is None, "addition_embed_type='text'"),
        (cfg.attention_type != "default", f"attention_type={cfg.attention_type!r} (GLIGEN's position_net)"),
    ):
        _check(not needs_single or single_cross_dim, f"{what} needs a single cross_attention_dim, not a list",
               "diffusers cannot build it with one per block")
    _check(not (cfg.class_embeddings_concat and cfg.addition_embed_type is not None),
           f"class_embeddings_concat doubles the time embedding, which addition_embed_type={cfg.addition_embed_type!r} "
           "cannot be added to (diffusers fails at the first step)", "drop one of them")
    if cfg.addition_embed_type in ("image", "image_hint"):
        _check(cfg.encoder_hid_dim is not None,
               f"addition_embed_type={cfg.addition_embed_type!r} needs encoder_hid_dim (the image embedding's width)")
    if cfg.addition_embed_type == "image_hint":
        _check(cfg.in_channels > 4, "addition_embed_type='image_hint' concatenates a 4-channel encoded hint to the "
               f"input, so in_channels (the sum) must be more than 4, got {cfg.in_channels}")
    if cfg.addition_embed_type == "text" and single_cross_dim:
        width, pool_heads = cfg.context_dim, cfg.addition_embed_type_num_heads  # encoder_hid_dim or the single dim
        _check(width % pool_heads == 0,
               f"addition_embed_type='text' pools {width} channels in addition_embed_type_num_heads={pool_heads} "
               "heads, which must divide them")
    if cfg.time_embedding_type == "fourier":
        _check(cfg.time_embed_dim % 2 == 0, f"time_embedding_type='fourier' needs an even embedding width, "
               f"got {cfg.time_embed_dim}")
    if cfg.cross_attention_norm == "group_norm":
        simple = [i for i, (down, up) in enumerate(zip(cfg.down_block_classes, reversed(cfg.up_block_classes)))
                  if "added_kv" in (BLOCK_TYPES[down].attention, BLOCK_TYPES[up].attention)]
        widths = {cfg.cross_attention_dims[i] for i in simple}
        if cfg.mid_block_type and BLOCK_TYPES[cfg.mid_block_type].attention == "added_kv":
            widths.add(cfg.cross_attention_dims[-1])
        for width in sorted(widths):
            _check(width % 32 == 0, f"cross_attention_norm='group_norm' normalises cross_attention_dim={width} in "
                   "32 groups (fixed in diffusers), which must divide it")


class WrapsUNet:
    """The sizes every family's config names (families.FamilyConfig), for a config that is an image UNet's and
    more (a ControlNet's, AnimateDiff's): read from the UNet config it holds as `unet`; the rest of that config is
    read as `config.unet.X`, never delegated wholesale."""

    unet: UNetConfig

    @property
    def sample_size(self) -> int | list[int] | None:
        return self.unet.sample_size

    @property
    def in_channels(self) -> int:
        return self.unet.in_channels

    @property
    def out_channels(self) -> int:
        return self.unet.out_channels

    @property
    def block_out_channels(self) -> list[int]:
        return self.unet.block_out_channels

    @property
    def context_dim(self) -> int:
        return self.unet.context_dim

    @property
    def heads_per_block(self) -> list[int]:
        return self.unet.heads_per_block
