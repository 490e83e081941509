"""`ControlNetConfig`: the fields of diffusers' `ControlNetModel` config.json.

A ControlNet is a trainable copy of a UNet's encoder (conv_in, timestep embedding, down blocks, mid block), so
its config is the UNet's fields that describe that half, plus four of its own. We keep the UNet half as a real
`UNetConfig` (validated by the same rules) with the decoder mirrored from the encoder: that is the UNet the
ControlNet was copied from, and the one whose skips its residuals are added to.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetinspect.configs.unet import METADATA_FIELDS, UNetConfig, WrapsUNet, read_json_config
from unetinspect.configs.values import MAX_CHANNELS, Rule, check_rules
from unetinspect.errors import ConfigError, UnsupportedConfigError

CONTROLNET_CLASS = "ControlNetModel"
# diffusers' default conditioning encoder: four 3x3 convolutions, three of them stride 2 (pixels → latent size).
DEFAULT_EMBEDDING_CHANNELS = (16, 32, 96, 256)
# Widths of the conditioning image's encoder, each after the first halving it: 8 is a 128× smaller latent, already
# no autoencoder's (they have 2 to 4 levels).
MAX_EMBEDDING_LEVELS = 8
CHANNEL_ORDERS = ("rgb", "bgr")

# The UNet fields a ControlNet config carries (diffusers' ControlNetModel.__init__ arguments, in its order).
UNET_FIELDS = (
    "in_channels", "flip_sin_to_cos", "freq_shift", "down_block_types", "mid_block_type", "only_cross_attention",
    "block_out_channels", "layers_per_block", "downsample_padding", "mid_block_scale_factor", "act_fn",
    "norm_num_groups", "norm_eps", "cross_attention_dim", "transformer_layers_per_block", "encoder_hid_dim",
    "encoder_hid_dim_type", "attention_head_dim", "num_attention_heads", "use_linear_projection", "class_embed_type",
    "addition_embed_type", "addition_time_embed_dim", "num_class_embeds", "upcast_attention",
    "resnet_time_scale_shift", "projection_class_embeddings_input_dim", "addition_embed_type_num_heads",
)
# UNet features a ControlNet does not have: `from_unet` sets them back to these defaults, as diffusers does.
NOT_IN_CONTROLNET = {
    "time_cond_proj_dim": None, "timestep_post_act": None, "time_embedding_act_fn": None, "time_embedding_dim": None,
    "class_embeddings_concat": False, "conv_in_kernel": 3, "center_input_sample": False,
}


@dataclass(frozen=True)
class ControlNetConfig(WrapsUNet):
    """A ControlNet's architecture: the UNet it copies (`unet`) and the conditioning image's encoder."""

    unet: UNetConfig
    conditioning_channels: int = 3
    conditioning_embedding_out_channels: tuple[int, ...] = DEFAULT_EMBEDDING_CHANNELS
    controlnet_conditioning_channel_order: str = "rgb"
    global_pool_conditions: bool = False
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # The ControlNet's own fields, each under the same kind of rule as the UNet's (configs/values.py): a config.json
    # value of the wrong JSON type, or a width no published ControlNet comes near, is one ConfigError naming it.
    RULES = {
        "conditioning_channels": Rule(int, 1, MAX_CHANNELS, meaning="channels"),
        "conditioning_embedding_out_channels": Rule(int, 1, MAX_CHANNELS, nesting=1, list_only=True,
                                                    meaning="channels"),
        "controlnet_conditioning_channel_order": Rule(str),
        "global_pool_conditions": Rule(bool),
    }

    def __post_init__(self) -> None:
        check_rules(self, self.RULES)
        if not self.conditioning_embedding_out_channels:
            raise ConfigError("conditioning_embedding_out_channels must be a list of positive integers, got []")
        levels = len(self.conditioning_embedding_out_channels)
        if levels > MAX_EMBEDDING_LEVELS:  # each width after the first halves the conditioning image: 2^(n-1)
            raise ConfigError(f"conditioning_embedding_out_channels lists {levels} widths: the conditioning image "
                              f"would be 2^{levels - 1} times the latent's size",
                              f"give at most {MAX_EMBEDDING_LEVELS} (SD's ControlNets have 4: an 8× smaller latent)")
        if self.controlnet_conditioning_channel_order not in CHANNEL_ORDERS:
            raise ConfigError(f"controlnet_conditioning_channel_order="
                              f"{self.controlnet_conditioning_channel_order!r} is unknown", "expected rgb or bgr")
        if self.unet.mid_block_type is None:
            raise UnsupportedConfigError("mid_block_type", None, "a ControlNet needs UNetMidBlock2DCrossAttn")
        if isinstance(self.unet.layers_per_block, (list, tuple)):
            raise ConfigError("a ControlNet's layers_per_block is one integer for every block (as diffusers builds it)")

    # ---- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "config") -> ControlNetConfig:
        """Build from a diffusers ControlNet config dict; unknown fields are kept in `extra` and named in a warning."""
        if not isinstance(data, dict):
            raise ConfigError(f"{origin}: expected a JSON object, got {type(data).__name__}")
        if data.get("_class_name") not in (None, CONTROLNET_CLASS):
            raise ConfigError(f"{origin}: _class_name is {data.get('_class_name')!r}, not {CONTROLNET_CLASS}")
        own = {f.name for f in dataclasses.fields(cls)} - {"unet", "extra"}
        unet_fields = {k: v for k, v in data.items() if k in UNET_FIELDS}
        # JSON values as they came: __post_init__ checks each against its rule
        kwargs: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in own}
        extra = {k: v for k, v in data.items() if k not in own and k not in UNET_FIELDS}
        unknown = sorted(k for k in extra if k not in METADATA_FIELDS)
        if unknown:
            warnings.warn(f"{origin}: unknown ControlNet config fields kept but ignored: {', '.join(unknown)}",
                          stacklevel=2)
        down = unet_fields.get("down_block_types", UNetConfig().down_block_types)
        if isinstance(down, list) and all(isinstance(name, str) for name in down):  # else UNetConfig names the bad one
            unet_fields["up_block_types"] = mirrored_up_blocks(down)
        unet = UNetConfig.from_dict(unet_fields, origin=origin)
        try:
            return cls(unet=unet, **kwargs, extra=extra)
        except TypeError as exc:
            raise ConfigError(f"{origin}: {exc}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> ControlNetConfig:
        return cls.from_dict(read_json_config(path), origin=str(path))

    @classmethod
    def from_unet(cls, unet: UNetConfig, *, conditioning_channels: int = 3,
                  conditioning_embedding_out_channels: tuple[int, ...] = DEFAULT_EMBEDDING_CHANNELS,
                  controlnet_conditioning_channel_order: str = "rgb") -> ControlNetConfig:
        """The ControlNet diffusers' `ControlNetModel.from_unet` makes for a UNet of this config."""
        return cls(unet.replace(**NOT_IN_CONTROLNET), conditioning_channels=conditioning_channels,
                   conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels),
                   controlnet_conditioning_channel_order=controlnet_conditioning_channel_order)

    def to_dict(self) -> dict[str, Any]:
        """The config as diffusers writes it for a ControlNetModel."""
        unet = self.unet.to_dict()
        data: dict[str, Any] = {"_class_name": CONTROLNET_CLASS}
        data.update({name: unet[name] for name in UNET_FIELDS})
        data.update(conditioning_channels=self.conditioning_channels,
                    conditioning_embedding_out_channels=list(self.conditioning_embedding_out_channels),
                    controlnet_conditioning_channel_order=self.controlnet_conditioning_channel_order,
                    global_pool_conditions=self.global_pool_conditions)
        data.update({k: v for k, v in self.extra.items() if k != "_class_name"})
        return data

    @property
    def residual_count(self) -> int:
        """Residuals for the UNet's skips: conv_in's output, then each down block's resnets and downsampler."""
        return 1 + sum(self.unet.layers_per_block_list) + self.unet.num_downsamples


def mirrored_up_blocks(down_block_types: list[str]) -> list[str]:
    """The up block types of the UNet whose encoder these down blocks are (attention where the mirror has it)."""
    return [t.replace("Down", "Up") for t in reversed(down_block_types)]
