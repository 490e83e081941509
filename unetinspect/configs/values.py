"""The type and sane range of every `UNetConfig` field, checked before anything else looks at a config.

A config.json comes from anywhere: `"layers_per_block": 100000` would build hundreds of thousands of modules
(minutes and GBs, even on the meta device), `1.5` or `"two"` where a count belongs fails deep in torch, and
`attention_head_dim: 0` divides by zero. Each field has one rule here — its type, whether it may be a per-block
list or null, and its bounds — and a value outside its rule is one `ConfigError` naming the field, the value
and what is allowed. The bounds are far above every published UNet (SDXL: 3 blocks, 2 layers, depth 10,
1280 channels), and low enough that the biggest model they allow still builds in seconds.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from unetinspect.errors import ConfigError

MAX_BLOCKS = 8  # down (and up) blocks: 8 halvings take a 1024-px latent to 4 px
MAX_LAYERS_PER_BLOCK = 16  # resnets per down block (real UNets: 1-3)
MAX_TRANSFORMER_DEPTH = 32  # transformer blocks per attention layer (SDXL: 10)
MAX_TRANSFORMER_BLOCKS = 1024  # transformer blocks in the whole UNet (SDXL: 70), to keep a build in seconds
MAX_CHANNELS = 16384  # channels and embedding widths (SDXL: 1280 channels, 2816 embedding inputs)
MAX_HEADS = 4096  # attention heads or head width
MAX_KERNEL = 15  # conv_in / conv_out kernel size (real UNets: 1-3)
MAX_CLASS_EMBEDS = 100_000  # rows of the class-label table
MAX_SAMPLE_SIZE = 8192  # latent pixels per side (a 64k-px image)
MAX_SHIFT = 1000  # freq_shift
MAX_FRAMES = 100_000  # frames a video config may name (SVD: 14 or 25; AnimateDiff's position code: 32)


@dataclass(frozen=True)
class Rule:
    """What one field may hold.

    `kind` is int, float, bool or str (a float field takes ints; bool is never an int); `nesting` is 0 for a
    single value, 1 when a per-block list is allowed too, 2 when that list may hold per-layer lists, and
    `list_only` when the top level must be a list. Bounds are inclusive; `meaning` says in the message what
    the bound protects.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    nesting: int = 0
    list_only: bool = False
    nullable: bool = False
    meaning: str = ""


def _count(high: int, meaning: str, low: int = 1, **kw: Any) -> Rule:
    return Rule(int, low, high, meaning=meaning, **kw)


_BOOL = Rule(bool)
_BOOL_PER_BLOCK = Rule(bool, nesting=1)
_NAME = Rule(str)
_OPTIONAL_NAME = Rule(str, nullable=True)
_WIDTH = _count(MAX_CHANNELS, "channels")
_OPTIONAL_WIDTH = _count(MAX_CHANNELS, "channels", nullable=True)
_FACTOR = Rule(float)

RULES: dict[str, Rule] = {
    "sample_size": _count(MAX_SAMPLE_SIZE, "latent pixels per side", nesting=1, nullable=True),
    "in_channels": _WIDTH,
    "out_channels": _WIDTH,
    "center_input_sample": _BOOL,
    "flip_sin_to_cos": _BOOL,
    "freq_shift": Rule(float, -MAX_SHIFT, MAX_SHIFT),
    "down_block_types": Rule(str, nesting=1, list_only=True),
    "mid_block_type": _OPTIONAL_NAME,
    "up_block_types": Rule(str, nesting=1, list_only=True),
    "only_cross_attention": _BOOL_PER_BLOCK,
    "block_out_channels": _count(MAX_CHANNELS, "channels", nesting=1, list_only=True),
    "layers_per_block": _count(MAX_LAYERS_PER_BLOCK, "resnets per block", nesting=1),
    "downsample_padding": _count(MAX_KERNEL, "padding pixels", low=0),
    "mid_block_scale_factor": _FACTOR,
    "dropout": Rule(float, 0, 1, meaning="a probability"),
    "act_fn": _NAME,
    "norm_num_groups": _OPTIONAL_WIDTH,  # null in the k-diffusion upscaler
    "norm_eps": Rule(float, 0, 1, meaning="a small epsilon"),
    "cross_attention_dim": _count(MAX_CHANNELS, "channels", nesting=1),
    "transformer_layers_per_block": _count(MAX_TRANSFORMER_DEPTH, "transformer blocks per layer", low=0, nesting=2),
    "reverse_transformer_layers_per_block": _count(MAX_TRANSFORMER_DEPTH, "transformer blocks per layer", low=0,
                                                   nesting=2, list_only=True, nullable=True),
    "encoder_hid_dim": _OPTIONAL_WIDTH,
    "encoder_hid_dim_type": _OPTIONAL_NAME,
    "attention_head_dim": _count(MAX_HEADS, "heads or head width", nesting=1),
    "num_attention_heads": _count(MAX_HEADS, "heads", nesting=1, nullable=True),
    "dual_cross_attention": _BOOL,
    "use_linear_projection": _BOOL,
    "class_embed_type": _OPTIONAL_NAME,
    "addition_embed_type": _OPTIONAL_NAME,
    "addition_time_embed_dim": _OPTIONAL_WIDTH,
    "num_class_embeds": _count(MAX_CLASS_EMBEDS, "class labels", nullable=True),
    "upcast_attention": Rule(bool, nullable=True),  # SDXL's config.json says null
    "resnet_time_scale_shift": _NAME,
    "resnet_skip_time_act": _BOOL,
    "resnet_out_scale_factor": _FACTOR,
    "time_embedding_type": _NAME,
    "time_embedding_dim": _OPTIONAL_WIDTH,
    "time_embedding_act_fn": _OPTIONAL_NAME,
    "timestep_post_act": _OPTIONAL_NAME,
    "time_cond_proj_dim": _OPTIONAL_WIDTH,
    "conv_in_kernel": _count(MAX_KERNEL, "kernel size"),
    "conv_out_kernel": _count(MAX_KERNEL, "kernel size"),
    "projection_class_embeddings_input_dim": _OPTIONAL_WIDTH,
    "attention_type": _NAME,
    "class_embeddings_concat": _BOOL,
    "mid_block_only_cross_attention": Rule(bool, nullable=True),
    "cross_attention_norm": _OPTIONAL_NAME,
    "addition_embed_type_num_heads": _count(MAX_HEADS, "heads"),
}

_KIND_WORDS = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_field_values(config: Any) -> None:
    """Every field of `config` against its rule; the first value outside it is a `ConfigError`."""
    check_rules(config, RULES)
    _check_sizes(config)


def check_rules(config: Any, rules: dict[str, Rule]) -> None:
    """The fields `rules` names, each against its rule (other model families' configs use this too)."""
    for name, rule in rules.items():
        _check_value(name, getattr(config, name), rule, rule.nesting, top=True)


def _check_value(name: str, value: Any, rule: Rule, nesting: int, top: bool = False) -> None:
    if value is None and rule.nullable and top:
        return
    if isinstance(value, (list, tuple)):
        if nesting == 0:
            raise ConfigError(f"{name} must be {_expected(rule, nesting=0)}, got a list: {_show(value)}")
        if len(value) > MAX_BLOCKS * (MAX_LAYERS_PER_BLOCK + 1):
            raise ConfigError(f"{name} has {len(value):,} entries", "give one value per block (or per layer)")
        for i, item in enumerate(value):
            _check_value(f"{name}[{i}]", item, rule, nesting - 1)
        return
    if top and rule.list_only:
        raise ConfigError(f"{name} must be a list ({_expected(rule, 0)} each), got {_show(value)}")
    if not _has_kind(value, rule.kind):
        raise ConfigError(f"{name} must be {_expected(rule, nesting)}, got {_show(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):  # the kind matched, so an int or float rule
        _check_number(name, value, rule)


def _check_number(name: str, value: int | float, rule: Rule) -> None:
    """Finite and in bounds. An int is compared exactly, however many digits the JSON gave it (`math.isfinite`
    would overflow converting 10**400 to a float); only a float field needs it to fit a float, as torch reads it."""
    if isinstance(value, float):
        finite = math.isfinite(value)
    else:
        finite = rule.kind is int or abs(value) <= sys.float_info.max
    if not finite:
        raise ConfigError(f"{name} must be a finite number, got {_show(value)}")
    too_high = rule.high is not None and value > rule.high
    if rule.low is not None and value < rule.low or too_high:
        raise ConfigError(f"{name}={_show(value)} is outside {_bounds(rule)}" +
                          (f" ({rule.meaning})" if rule.meaning else ""),
                          "the limits are far above every published UNet" if too_high else None)


def _has_kind(value: Any, kind: type) -> bool:
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _expected(rule: Rule, nesting: int) -> str:
    words = _KIND_WORDS[rule.kind]
    if rule.kind in (int, float) and (rule.low is not None or rule.high is not None):
        words += f" in {_bounds(rule)}"
    if nesting >= 1:
        words += " or a list of them, one per block"
    if rule.nullable:
        words += ", or null"
    return words


def _bounds(rule: Rule) -> str:
    return f"[{_show(rule.low)}, {_show(rule.high)}]" if rule.high is not None else f">= {_show(rule.low)}"


def _show(value: Any) -> str:
    """A value as the JSON file wrote it, cut short: `true`, `null`, `NaN`, `"two"`, `1.5`."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return f"{value:.1f}"
    text = repr(value) if isinstance(value, (str, list, tuple, dict)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_sizes(config: Any) -> None:
    """The whole model's size: per-field bounds alone still allow 8 blocks × 33 layers × depth 32."""
    size = config.sample_size
    if isinstance(size, (list, tuple)) and len(size) != 2:
        raise ConfigError(f"sample_size has {len(size)} entries", "give one size or [height, width]")
    depths = [*_flatten(config.transformer_layers_per_block), *_flatten(config.reverse_transformer_layers_per_block)]
    per_block_layers = max(_flatten(config.layers_per_block), default=0)
    blocks = len(config.down_block_types)
    if blocks > MAX_BLOCKS:
        raise ConfigError(f"down_block_types has {blocks} blocks, over the limit of {MAX_BLOCKS}",
                          "real UNets have 3 or 4")
    worst = blocks * (2 * per_block_layers + 2) * max(depths, default=0)
    if worst > MAX_TRANSFORMER_BLOCKS:
        raise ConfigError(
            f"this config asks for up to {worst:,} transformer blocks ({blocks} blocks × {per_block_layers} layers "
            f"× depth {max(depths)}), over the limit of {MAX_TRANSFORMER_BLOCKS:,}",
            "lower layers_per_block or transformer_layers_per_block (SDXL has 70)")


def _flatten(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [x for item in value for x in _flatten(item)]
    return [value]
