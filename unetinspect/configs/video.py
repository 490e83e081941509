"""The configs of the two video UNets, as diffusers' config.json names their fields.

- `SVDConfig`: `UNetSpatioTemporalConditionModel` (Stable Video Diffusion).
- `MotionConfig`: `UNetMotionModel` (AnimateDiff: an SD UNet with motion modules), and `MotionAdapterConfig`,
  the motion modules alone as published (`MotionAdapter`), which `MotionConfig.from_unet2d` joins to a UNet.

Both video UNets are an image UNet with temporal layers added, so each config holds the image half as a real
`UNetConfig` (`.unet`, validated by the same rules): the models build their image blocks and conditioning from it
(`UNet2DConditionModel.unet_config`). Each config names the few sizes every family's config has
(`families.FamilyConfig`: channels, context width, heads) as its own properties; anything else of the image half
is read as `config.unet.X`, so no field is found by falling through to another object. The fields of their own
are checked one rule each (configs.values.Rule).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetinspect.configs.unet import METADATA_FIELDS, UNetConfig, WrapsUNet, read_json_config
from unetinspect.configs.values import MAX_FRAMES, MAX_HEADS, MAX_LAYERS_PER_BLOCK, MAX_TRANSFORMER_DEPTH, Rule, check_rules
from unetinspect.errors import ConfigError, ConfigWarning, UnsupportedConfigError

SVD_CLASS = "UNetSpatioTemporalConditionModel"
MOTION_CLASS = "UNetMotionModel"
ADAPTER_CLASS = "MotionAdapter"

_FRAMES = Rule(int, 1, MAX_FRAMES, meaning="frames")
_DEPTH = Rule(int, 1, MAX_TRANSFORMER_DEPTH, nesting=2, meaning="transformer blocks per layer")
_OPTIONAL_DEPTH = Rule(int, 1, MAX_TRANSFORMER_DEPTH, nesting=2, nullable=True,
                       meaning="transformer blocks per layer")
_HEADS = Rule(int, 1, MAX_HEADS, nesting=1, meaning="heads")


def _split_known(cls: type, data: Any, origin: str, class_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(known fields, the rest) of a config dict for `cls`; its `_class_name` must be `class_name`; unknown
    fields are named in a warning, as for a UNet."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a JSON object, got {type(data).__name__}")
    if data.get("_class_name") not in (None, class_name):
        raise ConfigError(f"{origin}: _class_name is {data.get('_class_name')!r}, not {class_name}")
    known = {f.name for f in dataclasses.fields(cls) if f.init} - {"extra"}
    kwargs = {k: v for k, v in data.items() if k in known}
    extra = {k: v for k, v in data.items() if k not in known}
    unknown = sorted(k for k in extra if k not in METADATA_FIELDS)
    if unknown:
        warnings.warn(f"{origin}: unknown {class_name} config fields kept but ignored: {', '.join(unknown)}",
                      ConfigWarning, stacklevel=3)
    return kwargs, extra


def _renamed(names: Any, table: dict[str, str], field_name: str) -> list[str]:
    """Block type names through `table` (video name → our 2D block); an unknown one is a ConfigError."""
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"{field_name} must be a list of block types, got {names!r}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or name not in table:  # a list or object is not even hashable
            raise ConfigError(f"unknown block type {field_name}[{i}]={name!r}", f"expected one of {', '.join(table)}")
    return [table[name] for name in names]


def _build(cls: type, kwargs: dict[str, Any], extra: dict[str, Any], origin: str) -> Any:
    try:
        return cls(**kwargs, extra=extra)
    except TypeError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


# ---- Stable Video Diffusion ---------------------------------------------------------------------------------------

SVD_DOWN_NAMES = {"CrossAttnDownBlockSpatioTemporal": "CrossAttnDownBlock2D", "DownBlockSpatioTemporal": "DownBlock2D"}
SVD_UP_NAMES = {"UpBlockSpatioTemporal": "UpBlock2D", "CrossAttnUpBlockSpatioTemporal": "CrossAttnUpBlock2D"}


@dataclass(frozen=True)
class SVDConfig:
    """`UNetSpatioTemporalConditionModel`'s config.json, with diffusers' defaults (SVD-XT's U).

    `num_frames` is what the model was trained on (14 for SVD, 25 for SVD-XT): it changes no weight, and is
    the default frame count of a run.
    """

    sample_size: int | None = None
    in_channels: int = 8
    out_channels: int = 4
    down_block_types: list[str] = field(default_factory=lambda: [
        "CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal"])
    up_block_types: list[str] = field(default_factory=lambda: [
        "UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal"])
    block_out_channels: list[int] = field(default_factory=lambda: [320, 640, 1280, 1280])
    addition_time_embed_dim: int = 256
    projection_class_embeddings_input_dim: int = 768
    layers_per_block: int | list[int] = 2
    cross_attention_dim: int | list[int] = 1024
    transformer_layers_per_block: int | list[int] = 1
    num_attention_heads: int | list[int] = field(default_factory=lambda: [5, 10, 20, 20])
    num_frames: int = 25
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    unet: UNetConfig = field(init=False, compare=False, repr=False)

    RULES = {"num_frames": _FRAMES, "num_attention_heads": _HEADS}

    def __post_init__(self) -> None:
        check_rules(self, self.RULES)
        # The image half: SD-2-like blocks with SDXL's text_time addition (the time ids, no pooled text).
        unet = UNetConfig(
            sample_size=self.sample_size, in_channels=self.in_channels, out_channels=self.out_channels,
            down_block_types=_renamed(self.down_block_types, SVD_DOWN_NAMES, "down_block_types"),
            up_block_types=_renamed(self.up_block_types, SVD_UP_NAMES, "up_block_types"),
            block_out_channels=self.block_out_channels, layers_per_block=self.layers_per_block,
            cross_attention_dim=self.cross_attention_dim,
            transformer_layers_per_block=self.transformer_layers_per_block,
            attention_head_dim=self.num_attention_heads, addition_embed_type="text_time",
            addition_time_embed_dim=self.addition_time_embed_dim,
            projection_class_embeddings_input_dim=self.projection_class_embeddings_input_dim,
        )
        object.__setattr__(self, "unet", unet)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> SVDConfig:
        kwargs, extra = _split_known(cls, data, origin, SVD_CLASS)
        return _build(cls, kwargs, extra, origin)

    @classmethod
    def from_json(cls, path: str | Path) -> SVDConfig:
        return cls.from_dict(read_json_config(path), origin=str(path))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"_class_name": SVD_CLASS}
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name != "extra"})
        data.update({k: v for k, v in self.extra.items() if k != "_class_name"})
        return data

    def replace(self, **changes: Any) -> SVDConfig:
        return dataclasses.replace(self, **changes)

    @property
    def default_frames(self) -> int:
        return self.num_frames

    @property
    def context_tokens(self) -> int:
        """The context is the CLIP image embedding of the conditioning frame: one token, whatever --text-len."""
        return 1

    @property
    def mid_transformer_layers(self) -> int | list[int]:
        return self.unet.mid_transformer_layers

    @property
    def context_dim(self) -> int:
        return self.unet.context_dim

    @property
    def heads_per_block(self) -> list[int]:
        return self.unet.heads_per_block


# ---- AnimateDiff ----------------------------------------------------------------------------------------------------

MOTION_DOWN_NAMES = {"CrossAttnDownBlockMotion": "CrossAttnDownBlock2D", "DownBlockMotion": "DownBlock2D"}
MOTION_UP_NAMES = {"UpBlockMotion": "UpBlock2D", "CrossAttnUpBlockMotion": "CrossAttnUpBlock2D"}
# UNetMotionModel's fields that are UNet2DConditionModel's too (its __init__ arguments; the rest are motion's)
MOTION_UNET_FIELDS = (
    "sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types", "block_out_channels",
    "layers_per_block", "downsample_padding", "mid_block_scale_factor", "act_fn", "norm_num_groups", "norm_eps",
    "cross_attention_dim", "transformer_layers_per_block", "reverse_transformer_layers_per_block",
    "use_linear_projection", "num_attention_heads", "encoder_hid_dim", "encoder_hid_dim_type",
    "addition_embed_type", "addition_time_embed_dim", "projection_class_embeddings_input_dim", "time_cond_proj_dim",
)
# AnimateDiff's pipelines make 16 frames unless told otherwise
MOTION_DEFAULT_FRAMES = 16


@dataclass(frozen=True)
class MotionConfig(WrapsUNet):
    """`UNetMotionModel`'s config: the SD UNet it animates (`unet`) and where its motion modules go.

    Motion modules sit after every resnet (and its attention) of every down and up block, and, with
    `use_motion_mid_block`, after each attention of the mid block. `motion_max_seq_length` is how many frames
    their position code covers: a run may not have more frames.
    """

    unet: UNetConfig
    motion_max_seq_length: int = 32
    motion_num_attention_heads: int | list[int] = 8
    reverse_motion_num_attention_heads: Any = None  # in diffusers' signature, read by nothing
    use_motion_mid_block: bool = True
    mid_block_layers: int = 1
    temporal_transformer_layers_per_block: int | list[int] | list[list[int]] = 1
    reverse_temporal_transformer_layers_per_block: int | list[int] | list[list[int]] | None = None
    transformer_layers_per_mid_block: int | list[int] | None = None
    temporal_transformer_layers_per_mid_block: int | list[int] | None = 1
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    RULES = {
        "motion_max_seq_length": _FRAMES, "motion_num_attention_heads": _HEADS, "use_motion_mid_block": Rule(bool),
        "mid_block_layers": Rule(int, 1, MAX_LAYERS_PER_BLOCK, meaning="layers"),
        "temporal_transformer_layers_per_block": _DEPTH,
        "reverse_temporal_transformer_layers_per_block": _OPTIONAL_DEPTH,
        "transformer_layers_per_mid_block": _OPTIONAL_DEPTH,
        "temporal_transformer_layers_per_mid_block": _OPTIONAL_DEPTH,
    }

    def __post_init__(self) -> None:
        check_rules(self, self.RULES)
        c = self.unet
        if c.encoder_hid_dim_type is not None:
            raise UnsupportedConfigError("encoder_hid_dim_type", c.encoder_hid_dim_type,
                                         "diffusers' UNetMotionModel builds no context projection")
        if c.addition_embed_type not in (None, "text_time"):
            raise UnsupportedConfigError("addition_embed_type", c.addition_embed_type,
                                         "UNetMotionModel builds SDXL's text_time only")
        heads = self.motion_heads_per_block
        if len(heads) != c.num_blocks:
            raise ConfigError(f"motion_num_attention_heads has {len(heads)} entries but there are {c.num_blocks} "
                              "down blocks")
        for i, (channels, count) in enumerate(zip(c.block_out_channels, heads)):
            if channels % count:
                raise ConfigError(f"block_out_channels[{i}]={channels} is not divisible by its {count} motion "
                                  "attention heads", "check motion_num_attention_heads")
        self._check_depths()

    def _check_depths(self) -> None:
        """Per-layer motion depths must give one depth per resnet, as diffusers' motion blocks require."""
        layers, n = self.unet.layers_per_block_list, self.unet.num_blocks
        for name in ("temporal_transformer_layers_per_block", "reverse_temporal_transformer_layers_per_block"):
            depths = getattr(self, name)
            if isinstance(depths, (list, tuple)) and len(depths) < n:  # read by block index, as in diffusers
                raise ConfigError(f"{name} has {len(depths)} entries but there are {n} blocks",
                                  "give at least one depth per block, or a single depth")
        uses = [(f"temporal_transformer_layers_per_block[{i}]", self.temporal_depths[i], layers[i]) for i in range(n)]
        uses += [(f"up motion depths [{i}]", self.up_temporal_depths[i], layers[n - 1 - i] + 1) for i in range(n)]
        uses.append(("temporal_transformer_layers_per_mid_block", self.temporal_transformer_layers_per_mid_block
                     or 1, self.mid_block_layers))
        for where, depth, needed in uses:
            if isinstance(depth, (list, tuple)) and len(depth) != needed:
                raise ConfigError(f"{where} lists {len(depth)} depths for a block of {needed} layers",
                                  "give one depth per resnet layer, or a single depth")

    # ---- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> MotionConfig:
        """From diffusers' UNetMotionModel config dict (its block types are the *Motion ones)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        unet_fields = {k: v for k, v in data.items() if k in MOTION_UNET_FIELDS}
        own, extra = _split_known(cls, {k: v for k, v in data.items() if k not in MOTION_UNET_FIELDS}, origin,
                                  MOTION_CLASS)
        defaults = UNetConfig()
        unet_fields["down_block_types"] = _renamed(
            unet_fields.get("down_block_types", [n.replace("2D", "Motion") for n in defaults.down_block_types]),
            MOTION_DOWN_NAMES, "down_block_types")
        unet_fields["up_block_types"] = _renamed(
            unet_fields.get("up_block_types", [n.replace("2D", "Motion") for n in defaults.up_block_types]),
            MOTION_UP_NAMES, "up_block_types")
        # a head *count* here (diffusers' UNet2DConditionModel keeps it in attention_head_dim, see heads_per_block)
        unet_fields["attention_head_dim"] = unet_fields.pop("num_attention_heads", None) or 8
        unet = UNetConfig.from_dict(unet_fields, origin=origin)
        own = {k: (list(v) if isinstance(v, tuple) else v) for k, v in own.items()}
        return _build(cls, {"unet": unet, **own}, extra, origin)

    @classmethod
    def from_json(cls, path: str | Path) -> MotionConfig:
        return cls.from_dict(read_json_config(path), origin=str(path))

    @classmethod
    def from_unet2d(cls, unet: UNetConfig, adapter: MotionAdapterConfig | None = None) -> MotionConfig:
        """The config diffusers' `UNetMotionModel.from_unet2d(unet, adapter)` makes: the UNet's fields that a
        UNetMotionModel has (others, such as class embeddings, are dropped, as there), the adapter's layout."""
        if adapter is not None:
            adapter.check_fits(unet)
        data = {k: v for k, v in unet.to_dict().items() if k in MOTION_UNET_FIELDS}
        data["down_block_types"] = ["CrossAttnDownBlockMotion" if "CrossAttn" in t else "DownBlockMotion"
                                    for t in unet.down_block_types]
        data["up_block_types"] = ["CrossAttnUpBlockMotion" if "CrossAttn" in t else "UpBlockMotion"
                                  for t in unet.up_block_types]
        data["num_attention_heads"] = unet.num_attention_heads or unet.attention_head_dim
        if adapter is not None:
            data.update(
                motion_num_attention_heads=adapter.motion_num_attention_heads,
                motion_max_seq_length=adapter.motion_max_seq_length,
                use_motion_mid_block=adapter.use_motion_mid_block,
                layers_per_block=adapter.motion_layers_per_block,
                temporal_transformer_layers_per_mid_block=adapter.motion_transformer_layers_per_mid_block,
                temporal_transformer_layers_per_block=adapter.motion_transformer_layers_per_block,
            )
            if adapter.conv_in_channels:
                data["in_channels"] = adapter.conv_in_channels
        return cls.from_dict(data, origin="from_unet2d")

    def to_dict(self) -> dict[str, Any]:
        """The config as diffusers writes it for a UNetMotionModel."""
        unet = self.unet.to_dict()
        data: dict[str, Any] = {"_class_name": MOTION_CLASS}
        data.update({name: unet[name] for name in MOTION_UNET_FIELDS if name in unet})
        data["down_block_types"] = [n.replace("2D", "Motion") for n in self.unet.down_block_classes]
        data["up_block_types"] = [n.replace("2D", "Motion") for n in self.unet.up_block_classes]
        data["num_attention_heads"] = unet["attention_head_dim"]
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                     if f.name not in ("unet", "extra")})
        data.update({k: v for k, v in self.extra.items() if k != "_class_name"})
        return data

    def replace(self, **changes: Any) -> MotionConfig:
        return dataclasses.replace(self, **changes)

    # ---- derived ------------------------------------------------------------------------------------------

    @property
    def default_frames(self) -> int:
        return min(MOTION_DEFAULT_FRAMES, self.motion_max_seq_length)

    @property
    def motion_heads_per_block(self) -> list[int]:
        return self.unet.per_block(self.motion_num_attention_heads)

    @property
    def temporal_depths(self) -> list[int | list[int]]:
        return self.unet.per_block(self.temporal_transformer_layers_per_block)

    @property
    def up_temporal_depths(self) -> list[int | list[int]]:
        """Motion depth per up block: the reverse field when given, else the down depths reversed."""
        if self.reverse_temporal_transformer_layers_per_block is not None:
            return self.unet.per_block(self.reverse_temporal_transformer_layers_per_block)
        return list(reversed(self.temporal_depths))

    @property
    def mid_transformer_layers(self) -> int | list[int]:
        """The mid block's image depth: `transformer_layers_per_mid_block`, else the last down depth when that is
        one number, else 1 (diffusers' rule, which differs from UNet2DConditionModel's)."""
        if self.transformer_layers_per_mid_block is not None:
            return self.transformer_layers_per_mid_block
        last = self.unet.transformer_layers_list[-1]
        return last if isinstance(last, int) else 1


@dataclass(frozen=True)
class MotionAdapterConfig:
    """`MotionAdapter`'s config.json: AnimateDiff's motion modules for a UNet of `block_out_channels`."""

    block_out_channels: list[int] = field(default_factory=lambda: [320, 640, 1280, 1280])
    motion_layers_per_block: int | list[int] = 2
    motion_transformer_layers_per_block: int | list[int] | list[list[int]] = 1
    motion_mid_block_layers_per_block: int = 1
    motion_transformer_layers_per_mid_block: int | list[int] = 1
    motion_num_attention_heads: int | list[int] = 8
    motion_norm_num_groups: int = 32
    motion_max_seq_length: int = 32
    use_motion_mid_block: bool = True
    conv_in_channels: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    RULES = {
        "block_out_channels": Rule(int, 1, 16384, nesting=1, list_only=True, meaning="channels"),
        "motion_layers_per_block": Rule(int, 1, MAX_LAYERS_PER_BLOCK, nesting=1, meaning="motion layers"),
        "motion_transformer_layers_per_block": _DEPTH,
        "motion_mid_block_layers_per_block": Rule(int, 1, MAX_LAYERS_PER_BLOCK, meaning="motion layers"),
        "motion_transformer_layers_per_mid_block": _DEPTH,
        "motion_num_attention_heads": _HEADS,
        "motion_norm_num_groups": Rule(int, 1, 16384, meaning="groups"),
        "motion_max_seq_length": _FRAMES,
        "use_motion_mid_block": Rule(bool),
        "conv_in_channels": Rule(int, 1, 16384, nullable=True, meaning="channels"),
    }

    def __post_init__(self) -> None:
        check_rules(self, self.RULES)
        n = len(self.block_out_channels)
        for name in ("motion_layers_per_block", "motion_num_attention_heads", "motion_transformer_layers_per_block"):
            value = getattr(self, name)
            if isinstance(value, (list, tuple)) and len(value) != n:
                raise ConfigError(f"{name} has {len(value)} entries but block_out_channels has {n}")
        for i, (channels, heads) in enumerate(zip(self.block_out_channels, self.per_block(
                self.motion_num_attention_heads))):
            if channels % heads or channels % self.motion_norm_num_groups:
                raise ConfigError(f"block_out_channels[{i}]={channels} does not split into {heads} motion heads "
                                  f"and {self.motion_norm_num_groups} groups")

    def per_block(self, value: Any) -> list[Any]:
        return list(value) if isinstance(value, (list, tuple)) else [value] * len(self.block_out_channels)

    def check_fits(self, unet: UNetConfig) -> None:
        """An adapter made for another UNet fails deep in a matmul (or loads wrong): refuse it in one line."""
        if list(self.block_out_channels) != list(unet.block_out_channels):
            raise ConfigError(f"the motion adapter is for block_out_channels {list(self.block_out_channels)}, the "
                              f"UNet has {list(unet.block_out_channels)}",
                              "use the adapter made for this base (SD 1.5 or SDXL)")
        if self.per_block(self.motion_layers_per_block) != unet.layers_per_block_list:
            raise ConfigError(f"the motion adapter has {self.motion_layers_per_block} motion layers per block, the "
                              f"UNet {unet.layers_per_block} resnets per block", "the adapter is for another UNet")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> MotionAdapterConfig:
        kwargs, extra = _split_known(cls, data, origin, ADAPTER_CLASS)
        return _build(cls, kwargs, extra, origin)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"_class_name": ADAPTER_CLASS}
        data.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        return data
