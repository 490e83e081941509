"""Loading diffusers folders: plain, fp16 variant, sharded, pipeline folders — the weights that were saved, and the
file names diffusers itself writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import SMALL_CONFIGS, diffusers_unet, our_unet, save_folder

from unetinspect import load_unet
from unetinspect.errors import ConfigError, SourceError, UnsupportedConfigError, WeightsError
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import count_parameters
from unetinspect.sources.resolve import resolve_source


def _max_error(ours, reference) -> float:
    inputs = make_inputs(ours.config, InputSpec(batch=2))
    with torch.no_grad():
        out = reference(**inputs)
        return (ours(**inputs) - (out if torch.is_tensor(out) else out.sample)).abs().max().item()


def _same_weights(ours, reference) -> bool:
    mine, theirs = ours.state_dict(), reference.state_dict()
    return set(mine) == set(theirs) and all(torch.equal(tensor, theirs[name]) for name, tensor in mine.items())


@pytest.mark.parametrize("save", [{"variant": "fp16"}, {"shards": 3}, {"variant": "fp16", "shards": 3}])
def test_variants_and_shards_load_the_saved_weights(save, tmp_path):
    reference = our_unet(SMALL_CONFIGS["sdxl-like"]).half().float()  # the values an fp16 file holds exactly
    save_folder(reference, tmp_path, dtype=torch.float16 if save.get("variant") else None, **save)
    source = resolve_source(str(tmp_path), variant=save.get("variant"))
    assert len(source.weight_files) == save.get("shards", 1)
    ours = load_unet(source, device="cpu")
    assert count_parameters(ours) == count_parameters(reference)
    assert _same_weights(ours, reference)


def _file_names(folder) -> list[str]:
    """The names of a folder's files, shard numbers left out (diffusers shards by size, save_folder by count)."""
    return sorted({re.sub(r"-\d{5}-of-\d{5}", "-N-of-M", path.name) for path in folder.iterdir()})


@pytest.mark.parametrize("save", [{}, {"variant": "fp16"}, {"max_shard_size": "2MB"},
                                  {"variant": "fp16", "max_shard_size": "2MB"}])
def test_folders_from_diffusers_load_and_save_folder_names_files_as_diffusers(save, tmp_path):
    """The folders our tests write (conftest.save_folder) are named as diffusers' own; and diffusers' own load."""
    reference = diffusers_unet(SMALL_CONFIGS["sd15-like"])
    reference.save_pretrained(tmp_path / "theirs", **save)
    ours = load_unet(tmp_path / "theirs", device="cpu", variant=save.get("variant"))
    assert _max_error(ours, reference) <= 1e-4
    save_folder(ours, tmp_path / "ours", variant=save.get("variant"), shards=3 if "max_shard_size" in save else 1)
    assert _file_names(tmp_path / "ours") == _file_names(tmp_path / "theirs")
    index = next((tmp_path / "theirs").glob("*.index*.json"), None)
    if index is not None:
        theirs = json.loads(index.read_text())
        mine = json.loads((tmp_path / "ours" / index.name).read_text())
        assert set(mine) == set(theirs) and set(mine["metadata"]) == set(theirs["metadata"])
        assert set(mine["weight_map"]) == set(theirs["weight_map"])


def test_lone_variant_is_found_without_asking(tmp_path):
    reference = our_unet(SMALL_CONFIGS["sd15-like"])
    save_folder(reference, tmp_path, variant="fp16", dtype=torch.float16)
    ours = load_unet(tmp_path, device="cpu")  # fp32 by default, as diffusers
    assert ours.conv_in.weight.dtype == torch.float32
    assert torch.equal(ours.conv_in.weight, reference.conv_in.weight.half().float())
    with pytest.raises(WeightsError, match="no 'bf16' variant"):
        resolve_source(str(tmp_path), variant="bf16")


def test_pipeline_folder_means_its_unet(tmp_path):
    reference = our_unet(SMALL_CONFIGS["sd21-like"])
    save_folder(reference, tmp_path / "unet")
    (tmp_path / "model_index.json").write_text("{}")
    assert _same_weights(load_unet(tmp_path, device="cpu"), reference)


def test_safetensors_file_with_config_beside_it(tmp_path):
    save_folder(our_unet(SMALL_CONFIGS["sd15-like"]), tmp_path)
    ours = load_unet(tmp_path / "diffusion_pytorch_model.safetensors", device="cpu", dtype="bf16")
    assert ours.conv_in.weight.dtype == torch.bfloat16


def test_weights_are_memory_mapped_not_copied(tmp_path):
    """Loading assigns tensors that live in the mapped file: no second copy of the weights in memory. The kernel's
    own list of this process's mappings says where each tensor's bytes are."""
    save_folder(our_unet(SMALL_CONFIGS["sd15-like"]), tmp_path)
    from unetinspect.sources.loading import build_model, read_state_dict

    source = resolve_source(str(tmp_path))
    state = read_state_dict(source, build_model(source.config))
    file = (tmp_path / "diffusion_pytorch_model.safetensors").resolve()
    mapped = [tuple(int(end, 16) for end in line.split()[0].split("-"))
              for line in Path("/proc/self/maps").read_text().splitlines() if line.endswith(f" {file}")]
    assert mapped, "the file is not mapped"
    outside = [name for name, t in state.items()
               if not any(lo <= t.data_ptr() and t.data_ptr() + t.nbytes <= hi for lo, hi in mapped)]
    assert not outside, f"copied out of the file: {outside[:3]}"


def test_bad_sources_are_one_line_errors(tmp_path, write_config):
    with pytest.raises(SourceError, match="no such file, folder or preset"):
        load_unet(tmp_path / "missing", device="meta")
    with pytest.raises(SourceError, match="has no config.json"):
        load_unet(tmp_path, device="meta")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_unet(bad, device="meta")
    with pytest.raises(UnsupportedConfigError, match="not supported yet: up_block_types.0.='SkipUpBlock2D'"):
        load_unet(write_config({**SMALL_CONFIGS["sd15-like"], "up_block_types": ["SkipUpBlock2D", "CrossAttnUpBlock2D",
                                                                                  "CrossAttnUpBlock2D"]}), device="meta")


def test_config_validation_names_the_field(write_config):
    base = SMALL_CONFIGS["sd15-like"]
    cases = {
        "up_block_types has 2 entries": {"up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"]},
        "not divisible by norm_num_groups": {"norm_num_groups": 7},
        "not divisible by its 5 attention heads": {"attention_head_dim": 5},
        "unknown block type down_block_types": {"down_block_types": ["Foo", "CrossAttnDownBlock2D", "DownBlock2D"]},
        "not supported yet: down_block_types": {"down_block_types": ["AttnSkipDownBlock2D", "CrossAttnDownBlock2D",
                                                                     "DownBlock2D"]},
        "unknown addition_embed_type='texts'": {"addition_embed_type": "texts"},
        "transformer_layers_per_block has 2 entries": {"transformer_layers_per_block": [1, 2]},
        "layers_per_block has 2 entries": {"layers_per_block": [1, 2]},
    }
    for message, change in cases.items():
        with pytest.raises(ConfigError, match=message):
            load_unet(write_config({**base, **change}), device="meta")


def test_unknown_fields_are_kept_and_named(write_config):
    path = write_config({**SMALL_CONFIGS["sd15-like"], "my_field": 3})
    with pytest.warns(UserWarning, match="my_field"):
        model = load_unet(path, device="meta")
    assert model.config.to_dict()["my_field"] == 3
    assert json.loads(json.dumps(model.config.to_dict()))["block_out_channels"] == [32, 64, 64]
