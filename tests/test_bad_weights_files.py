"""Weight files that are valid but hostile or inconsistent: headers naming a huge number of tensors, sharded folders
whose index and shards disagree, and a config.json beside the weights that does not describe them."""

from __future__ import annotations

import json
import struct

import pytest
from bad_input import refused, untouched
from conftest import our_unet, save_folder, tiny
from safetensors.torch import load_file, save_file

from unetinspect.errors import WeightsError
from unetinspect.sources.resolve import resolve_source
from unetinspect.views.weights import OTHER, inspect_weights
from unetinspect.weights.safetensors import MAX_TENSORS

INDEX = "diffusion_pytorch_model.safetensors.index.json"


def _many_tensors(path, count: int) -> None:
    """A valid file of `count` one-byte tensors with names outside any UNet block."""
    header = {f"junk.{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(count)}
    raw = json.dumps(header, separators=(",", ":")).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(count))


def test_header_with_too_many_tensors_is_refused_before_parsing(tmp_path, invoke):
    path = tmp_path / "many.safetensors"
    _many_tensors(path, MAX_TENSORS + 1)
    refused(invoke, tmp_path, "weights", path, words=f"over the limit of {MAX_TENSORS:,}")


def test_tensors_outside_the_unet_are_one_row(tmp_path, invoke):
    path = tmp_path / "many.safetensors"
    _many_tensors(path, 20_000)
    report = inspect_weights(path, config="tiny")
    other = [part for part in report.blocks if part.name == OTHER]
    assert len(report.blocks) == 1 and other[0].tensors == 20_000 and len(other[0].examples) == 3
    result = invoke("weights", path)
    assert result.exit_code == 0 and len(result.stdout.splitlines()) < 40


# ---- sharded folders ------------------------------------------------------------------------------------------------


@pytest.fixture
def sharded(tmp_path):
    return save_folder(our_unet(tiny()), tmp_path / "unet", shards=2)


def _edit_index(folder, edit) -> None:
    index = json.loads((folder / INDEX).read_text())
    edit(index["weight_map"])
    (folder / INDEX).write_text(json.dumps(index))


def _first(weight_map):
    return next(iter(weight_map))


@pytest.mark.parametrize("edit,words", [
    (lambda m: m.update({_first(m): 3}), "not a shard file name"),
    (lambda m: m.update({_first(m): None}), "not a shard file name"),
    (lambda m: m.update({_first(m): ["a"]}), "not a shard file name"),
    (lambda m: m.update({_first(m): "../config.json"}), "not in"),
    (lambda m: m.update({_first(m): ""}), "not in"),
    (lambda m: m.update({"ghost.weight": next(iter(m.values()))}), "does not hold it"),
    (lambda m: m.clear(), "weight_map is empty"),
    (lambda m: m.pop(_first(m)), "not in its weight_map"),
    (lambda m: m.update({_first(m): list(m.values())[-1]}), "does not hold it"),
], ids=["int", "null", "list", "outside", "empty", "ghost", "empty-map", "unmapped", "wrong-shard"])
@pytest.mark.parametrize("command", ["weights", "summary"])
def test_bad_weight_map(sharded, edit, words, command, tmp_path, invoke):
    _edit_index(sharded, edit)
    refused(invoke, tmp_path, command, sharded, words=words)


@pytest.mark.parametrize("text", ["[]", '{"weight_map": []}', '{"weight_map": 1}', "{", '{"a": 1}'])
def test_malformed_index(sharded, text, tmp_path, invoke):
    (sharded / INDEX).write_text(text)
    with pytest.raises(WeightsError):
        resolve_source(sharded)
    refused(invoke, tmp_path, "weights", sharded, words=INDEX)


def test_same_tensor_in_two_shards_with_different_shapes(sharded, tmp_path, invoke):
    first, second = sorted(sharded.glob("*-of-*.safetensors"))
    tensors = load_file(second)
    name = next(iter(load_file(first)))
    tensors[name] = load_file(first)[name].flatten()[:1].clone()
    save_file(tensors, second)
    message = refused(invoke, tmp_path, "summary", sharded, words=name)
    assert first.name in message and second.name in message


def _copy_first_tensor_into_second_shard(folder):
    """The first shard's first tensor, copied byte for byte into the second shard: (its name, both shards)."""
    first, second = sorted(folder.glob("*-of-*.safetensors"))
    name = next(iter(load_file(first)))
    save_file({**load_file(second), name: load_file(first)[name]}, second)
    return name, first, second


@pytest.mark.parametrize("command", ["weights", "summary"])
def test_same_tensor_in_two_shards_with_identical_copies(sharded, command, tmp_path, invoke):
    name, first, second = _copy_first_tensor_into_second_shard(sharded)
    message = refused(invoke, tmp_path, command, sharded, words=name)
    assert first.name in message and second.name in message


@pytest.mark.parametrize("command", ["weights", "summary"])
def test_index_that_maps_a_tensor_twice(sharded, command, tmp_path, invoke):
    name, first, second = _copy_first_tensor_into_second_shard(sharded)
    pairs = [*json.loads((sharded / INDEX).read_text())["weight_map"].items(), (name, second.name)]
    entries = ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs)
    (sharded / INDEX).write_text('{"metadata": {}, "weight_map": {' + entries + "}}")
    message = refused(invoke, tmp_path, command, sharded, words=f"names {name!r} twice")
    assert first.name in message and second.name in message


def test_every_shard_header_is_checked_before_loading(sharded, tmp_path, invoke):
    shard = sorted(sharded.glob("*-of-*.safetensors"))[1]
    shard.write_bytes(shard.read_bytes()[:-3])
    refused(invoke, tmp_path, "summary", sharded, words=shard.name)


# ---- a config beside the weights that does not describe them --------------------------------------------------------


def test_config_beside_weights_that_disagrees(tiny_folder, invoke):
    config = json.loads((tiny_folder / "config.json").read_text())
    (tiny_folder / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 64}))
    weights = tiny_folder / "diffusion_pytorch_model.safetensors"
    with untouched(tiny_folder, "weights: config disagrees"):
        report = inspect_weights(weights)
        result = invoke("weights", weights, "-f", "json")
    assert "attn2.to_k.weight" in report.config_mismatch and report.nearest_preset is None
    data = json.loads(result.stdout)
    assert "has shape" in data["config_mismatch"] and data["nearest_preset"] is None
    table = invoke("weights", weights).stdout
    assert "do not fit this config" in table and "exactly the" not in table


def test_config_beside_weights_that_agrees(tiny_folder):
    report = inspect_weights(tiny_folder / "diffusion_pytorch_model.safetensors")
    assert report.config_mismatch is None and report.nearest_preset.exact
