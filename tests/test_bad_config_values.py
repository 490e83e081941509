"""Config values: every field has a rule (type, nullability, bounds), and a value outside it is one ConfigError that
names the field — never a TypeError, ZeroDivisionError or minutes spent building an absurd model."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
from bad_input import refused
from conftest import tiny
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.configs.unet import UNetConfig
from unetinspect.configs.values import MAX_TRANSFORMER_BLOCKS, RULES
from unetinspect.configs.video import MotionAdapterConfig, MotionConfig, SVDConfig
from unetinspect.errors import ConfigError

FIELDS = sorted(RULES)
HUGE = 10**400  # a JSON integer too big for a float: it once overflowed math.isfinite into a raw OverflowError


def test_every_field_has_a_rule():
    fields = {f.name for f in dataclasses.fields(UNetConfig)} - {"extra"}
    assert fields == set(RULES), fields ^ set(RULES)


def _bad_values(name: str) -> list[object]:
    """Values outside the rule of `name`: the wrong JSON types, non-finite numbers, and each side of its bounds."""
    rule = RULES[name]
    values: list[object] = [{"a": 1}, "two" if rule.kind is not str else 3]
    if rule.kind is bool:
        values += ["yes", 1]
    if rule.kind is int:
        values += [1.5, 2.0, True]
    if rule.kind in (int, float):
        values += [math.nan, math.inf, -math.inf, HUGE, -HUGE]
    if rule.low is not None:
        values.append(rule.low - 1)
    if rule.high is not None:
        values.append(rule.high * 10 + 1)
    if not rule.nullable:
        values.append(None)
    return values


CASES = [(name, value) for name in FIELDS for value in _bad_values(name)]


@pytest.mark.parametrize("name,value", CASES, ids=[f"{n}={v!r:.20}" for n, v in CASES])
def test_bad_value_is_a_config_error_naming_the_field(name, value):
    with pytest.raises(ConfigError) as caught:
        UNetConfig.from_dict(tiny(**{name: value}))
    assert name in caught.value.one_line()


CLI_CASES = [("layers_per_block", 100000), ("transformer_layers_per_block", 100000), ("attention_head_dim", 0),
             ("in_channels", "two"), ("norm_eps", math.nan), ("center_input_sample", "yes"),
             ("block_out_channels", [32, 64, None]), ("layers_per_block", HUGE), ("mid_block_scale_factor", -HUGE)]


@pytest.mark.parametrize("name,value", CLI_CASES, ids=[f"{n}={v!r:.20}" for n, v in CLI_CASES])
def test_bad_value_through_the_cli(name, value, tmp_path, invoke):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny(**{name: value})))  # NaN is written as JSON's NaN, as Python reads it back
    refused(invoke, tmp_path, "summary", path, words=name)


def test_whole_model_bound():
    """Each field in range, the product not: up to 8 blocks × 33 layers × depth 32 would be minutes to build."""
    with pytest.raises(ConfigError, match=f"over the limit of {MAX_TRANSFORMER_BLOCKS:,}"):
        UNetConfig.from_dict(tiny(layers_per_block=16, transformer_layers_per_block=32))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=2),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(FIELDS), _json_values, min_size=1, max_size=3))
def test_generated_values_build_or_refuse(changes):
    """Any JSON value in any field: a valid config, or a ConfigError — nothing else escapes."""
    try:
        config = UNetConfig.from_dict(tiny(**changes))
    except ConfigError as exc:
        assert "\n" not in exc.one_line()
        return
    assert config.num_blocks >= 1


def test_unknown_field_warns_in_one_line(tmp_path, invoke):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny(shiny_new_option=1)))
    result = invoke("summary", path, "-f", "json")
    assert result.exit_code == 0
    assert result.stderr.strip().splitlines() == [
        f"warning: {path}: unknown config fields kept but ignored: shiny_new_option"]


def test_json_written_has_no_nan(tmp_path, invoke):
    """A non-finite value in an unknown field is kept in the config, and written as null."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny(odd=math.nan, odder=[math.inf])))
    out = tmp_path / "summary.json"
    assert invoke("summary", path, "-f", "json", "-o", out).exit_code == 0

    def no_constants(name):
        raise AssertionError(f"{name} in the JSON written")

    json.loads(out.read_text(), parse_constant=no_constants)


CONTROLNET_CASES = [("global_pool_conditions", "yes"), ("conditioning_channels", True), ("conditioning_channels", HUGE),
                    ("conditioning_embedding_out_channels", 5), ("conditioning_embedding_out_channels", [16, True]),
                    ("conditioning_embedding_out_channels", [16, 10**9]),
                    ("conditioning_embedding_out_channels", [16] * 40),  # a 2^39× conditioning image: an overflow
                    ("controlnet_conditioning_channel_order", ["rgb"])]


@pytest.mark.parametrize("name,value", CONTROLNET_CASES, ids=[f"{n}={v!r:.20}" for n, v in CONTROLNET_CASES])
def test_bad_controlnet_value_is_a_config_error_naming_the_field(name, value):
    """A ControlNet's own fields have rules too: once `"yes"` passed as global_pool_conditions, `true` as 1 channel,
    a billion-channel conv was built, and `5` for a list was "'int' object is not iterable"."""
    data = ControlNetConfig.from_unet(UNetConfig.from_dict(tiny())).to_dict() | {name: value}
    with pytest.raises(ConfigError) as caught:
        ControlNetConfig.from_dict(data)
    assert name in caught.value.one_line()


@pytest.mark.parametrize("config_class", [SVDConfig, MotionConfig])
@pytest.mark.parametrize("name", [["DownBlock2D"], {"a": 1}])
def test_unhashable_video_block_name_is_a_config_error_naming_the_field(config_class, name):
    """A block name looked up in the video name table: a list or object was an unhashable-type TypeError (raw from
    MotionConfig, a ConfigError without the field from SVDConfig)."""
    with pytest.raises(ConfigError, match=re.escape("down_block_types[0]")):
        config_class.from_dict({"down_block_types": [name]})


def _other_config_fields() -> list[tuple[type, str]]:
    return [(cls, f.name) for cls in (ControlNetConfig, SVDConfig, MotionConfig, MotionAdapterConfig)
            for f in dataclasses.fields(cls) if f.init and f.name not in ("unet", "extra")] + \
        [(cls, "down_block_types") for cls in (ControlNetConfig, MotionConfig)]  # UNet fields they read themselves


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field_=st.sampled_from(_other_config_fields()), value=_json_values)
def test_generated_values_in_other_configs_build_or_refuse(field_, value):
    """The ControlNet and video configs' own fields, any JSON value: a config or a ConfigError. Found this way: a
    ControlNet's non-string block name (AttributeError mirroring it) and a short motion depth list (IndexError)."""
    config_class, name = field_
    base = ControlNetConfig.from_unet(UNetConfig.from_dict(tiny())).to_dict() if config_class is ControlNetConfig else {}
    try:
        config_class.from_dict(base | {name: value})
    except ConfigError as exc:
        assert "\n" not in exc.one_line()


@pytest.mark.parametrize("config_class, changes, words", [
    (ControlNetConfig, {"down_block_types": [1, "DownBlock2D"]}, "down_block_types[0] must be a string"),
    (MotionConfig, {"temporal_transformer_layers_per_block": []}, "temporal_transformer_layers_per_block has 0"),
    (MotionConfig, {"reverse_temporal_transformer_layers_per_block": [1]}, "reverse_temporal_transformer_layers"),
])
def test_bad_values_other_configs_read_themselves(config_class, changes, words):
    base = ControlNetConfig.from_unet(UNetConfig.from_dict(tiny())).to_dict() if config_class is ControlNetConfig else {}
    with pytest.raises(ConfigError, match=re.escape(words)):
        config_class.from_dict(base | changes)
