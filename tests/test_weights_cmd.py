"""`unetinspect weights`: what a checkpoint holds, from headers alone, for every layout a checkpoint comes in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import SMALL_CONFIGS, our_unet, save_folder
from ldm_files import OTHER_COMPONENTS, full_checkpoint, meta_shapes, to_ldm, write_header_only
from safetensors.torch import save_file

from unetinspect.families import load_preset
from unetinspect.presets import load_preset_dict

SD15_PARAMETERS = 859_520_964


@pytest.fixture(scope="module")
def sd15_file(tmp_path_factory):
    """SD 1.5 in float32 with bits of VAE and text encoder: 3.4 GB long, a few hundred KB on disk."""
    config = load_preset_dict("sd15")
    shapes = {**to_ldm(meta_shapes(config), config), **OTHER_COMPONENTS}
    path = tmp_path_factory.mktemp("sd15") / "v1-5.safetensors"
    return write_header_only(path, shapes, dtype="F32", metadata={"modelspec.title": "SD 1.5", "format": "pt"})


def test_full_checkpoint_overview(sd15_file, invoke):
    result = invoke("weights", sd15_file)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for expected in ("original (LDM) layout", "exactly the sd15 preset", "inferred from tensor shapes",
                     f"{SD15_PARAMETERS:,}", "VAE", "text encoder", "down_blocks.0", "mid_block", "up_blocks.3",
                     "conv_out", "modelspec.title", "3.20 GiB"):
        assert expected in out, expected
    assert out.index("conv_in") < out.index("down_blocks.0") < out.index("mid_block") < out.index("up_blocks.0")


def test_full_checkpoint_json(sd15_file, invoke):
    result = invoke("weights", sd15_file, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["layout"] == "ldm" and data["nearest_preset"] == {"name": "sd15", "exact": True, "differences": []}
    assert data["config"] == load_preset("sd15").to_dict()
    assert data["disk_bytes"] == sd15_file.stat().st_size > 3_400_000_000
    assert data["dtypes"] == {"F32": data["tensor_count"]}
    assert sum(b["params"] for b in data["blocks"]) == SD15_PARAMETERS
    assert [c["name"] for c in data["components"]] == ["UNet", "VAE", "text encoder", "text encoder 2",
                                                       "EMA weights", "other"]
    assert data["metadata"] == {"modelspec.title": "SD 1.5", "format": "pt"}
    assert "tensors" not in data


@pytest.mark.parametrize("args", [("--keys", "down_blocks.1.*"), ("down_blocks.1.*", "--keys"), ("down_blocks.1.*",)])
def test_keys_filtered_by_our_names(sd15_file, args, invoke):
    result = invoke("weights", sd15_file, *args, "-f", "json")
    assert result.exit_code == 0, result.stderr
    tensors = json.loads(result.stdout)["tensors"]
    shapes = meta_shapes(load_preset_dict("sd15"))
    assert {t["ours"] for t in tensors} == {k for k in shapes if k.startswith("down_blocks.1.")}
    assert all(tuple(t["shape"]) == shapes[t["ours"]] and t["dtype"] == "F32" for t in tensors)
    assert all(t["name"].startswith("model.diffusion_model.input_blocks.") for t in tensors)


def test_keys_filtered_by_file_names_and_listed_as_a_table(sd15_file, invoke):
    result = invoke("weights", sd15_file, "--keys", "first_stage_model.*")
    assert result.exit_code == 0, result.stderr
    assert "2 of 692 tensors" in result.stdout and "128×3×3×3" in result.stdout
    everything = invoke("weights", sd15_file, "--keys")
    assert "692 of 692 tensors" in everything.stdout
    assert "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight" in everything.stdout
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight" in everything.stdout


@pytest.fixture(scope="module")
def tiny_model():
    return our_unet(load_preset_dict("tiny"))


@pytest.mark.parametrize("save,expected", [
    ({}, "diffusers folder, one safetensors file"),
    ({"shards": 3}, "diffusers folder, sharded in"),
    ({"variant": "fp16", "dtype": torch.float16}, "diffusers folder, one safetensors file, fp16 variant"),
])
def test_diffusers_folders(tiny_model, tmp_path, save, expected, invoke):
    save_folder(tiny_model, tmp_path, **save)
    result = invoke("weights", tmp_path, "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["format"].startswith(expected)
    assert data["config_origin"] == "config.json"
    assert data["nearest_preset"]["name"] == "tiny" and data["nearest_preset"]["exact"]
    assert sum(b["params"] for b in data["blocks"]) == sum(p.numel() for p in tiny_model.parameters())
    assert set(data["dtypes"]) == {"F16" if save.get("variant") else "F32"}


def test_pipeline_folder_reads_its_unet(tiny_model, tmp_path, invoke):
    save_folder(tiny_model, tmp_path / "unet")
    (tmp_path / "model_index.json").write_text("{}")
    result = invoke("weights", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert "pipeline folder" in result.stdout and "exactly the tiny preset" in result.stdout


@pytest.mark.parametrize("name", ["controlnet", "svd", "animatediff"])
def test_the_overview_of_every_family_says_its_structure_truly(tmp_path, invoke, name):
    """The overview's structure line read an image UNet's config fields off any config: a ControlNet's, SVD's or
    AnimateDiff's folder ended in an internal error (the JSON never reads them). What it says of attention's
    projection is checked against the checkpoint's own proj_in tensors: 4-d a conv, 2-d a linear layer (SVD's
    config states no projection, and its transformers are linear: nothing is said, rather than "conv proj")."""
    from ldm_files import write_header_only

    from unetinspect.configs.controlnet import ControlNetConfig
    from unetinspect.sources.loading import build_model

    config = ControlNetConfig(unet=load_preset("sd15")) if name == "controlnet" else load_preset(name)
    shapes = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    write_header_only(folder / "diffusion_pytorch_model.safetensors", shapes)
    result = invoke("weights", folder, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert f"channels {list(config.block_out_channels)}" in result.stdout
    projections = {len(shape) for key, shape in shapes.items()
                   if key.endswith(".proj_in.weight") and "motion_modules" not in key}
    assert ("conv proj" in result.stdout) == (projections == {4})
    assert ("linear proj" in result.stdout) <= (projections == {2})


def test_unsupported_structure_is_still_described(tmp_path, invoke):
    """A checkpoint whose config cannot be inferred is still worth looking inside: the reason is shown."""
    config = SMALL_CONFIGS["sd21-like"]  # 16-channel heads: not inferable
    path = tmp_path / "odd.safetensors"
    save_file(full_checkpoint(our_unet(config), config), str(path))
    result = invoke("weights", path)
    assert result.exit_code == 0, result.stderr
    assert "unknown" in result.stdout and "64-channel heads" in result.stdout
    listing = invoke("weights", path, "--keys", "input_blocks.1.*", "-f", "json")
    assert listing.exit_code == 0 and all(t["ours"] is None for t in json.loads(listing.stdout)["tensors"])


def test_diffusers_file_without_config_is_described(tiny_model, tmp_path, invoke):
    save_file(tiny_model.state_dict(), str(tmp_path / "unet.safetensors"))
    result = invoke("weights", tmp_path / "unet.safetensors", "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"] is None and "config.json" in data["config_note"]
    assert data["layout"] == "diffusers" and data["blocks"][0]["name"] == "conv_in"


def test_config_override_is_named_as_the_origin(tmp_path, invoke):
    config = load_preset_dict("sd21")
    path = write_header_only(tmp_path / "sd21.safetensors", to_ldm(meta_shapes(config), config))
    data = json.loads(invoke("weights", path, "--config", "sd21", "-f", "json").stdout)
    assert data["config_origin"] == "--config sd21"


def test_config_override_that_does_not_fit_fails(tmp_path, invoke):
    config = load_preset_dict("sd15")
    path = write_header_only(tmp_path / "sd15.safetensors", to_ldm(meta_shapes(config), config))
    result = invoke("weights", path, "--config", "sdxl")
    assert result.exit_code == 1 and "no place in this config" in result.stderr


def test_pickle_is_refused_then_read_with_allow_pickle(tmp_path, invoke):
    config = load_preset_dict("tiny") | {"norm_num_groups": 32, "attention_head_dim": 8}
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": full_checkpoint(our_unet(config), config)}, path)
    refused = invoke("weights", path)
    assert refused.exit_code == 1 and "pickle" in refused.stderr and "--allow-pickle" in refused.stderr
    result = invoke("weights", path, "--allow-pickle", "-f", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["format"] == "single pickle file, original (LDM) layout"
    assert data["config"]["block_out_channels"] == config["block_out_channels"]


def test_output_file_is_written_whole(sd15_file, tmp_path, invoke):
    target = tmp_path / "weights.json"
    result = invoke("weights", sd15_file, "-f", "json", "-o", target)
    assert result.exit_code == 0, result.stderr
    assert json.loads(target.read_text())["nearest_preset"]["name"] == "sd15"
    table = tmp_path / "weights.txt"
    assert invoke("weights", sd15_file, "-o", table).exit_code == 0
    assert "exactly the sd15 preset" in table.read_text()


def test_hostile_metadata_reaches_the_terminal_inert(tmp_path, invoke):
    """Names and metadata are strangers' text: no markup is interpreted, no escape sequence is printed."""
    path = write_header_only(tmp_path / "x.safetensors", {"input_blocks.[red]x": (2,)},
                             metadata={"title": "\x1b]0;pwned\x07[bold]big[/bold]", "[/]": "x"})
    result = invoke("weights", path)
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "[bold]big[/bold]" in result.stdout and "\\x1b" in result.stdout
    assert "input_blocks.[red]x" in invoke("weights", path, "--keys").stdout


def test_reading_a_safetensors_checkpoint_never_imports_torch(sd15_file):
    """Headers are parsed by hand, so `unetinspect weights` starts in the time Python and typer take: importing
    torch alone would take seconds."""
    code = ("import sys; from unetinspect.cli import app\n"
            f"app(['weights', {str(sd15_file)!r}, '--keys', '-f', 'json'], standalone_mode=False)\n"
            "print('torch' in sys.modules, file=sys.stderr)")
    process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert process.returncode == 0, process.stderr
    assert json.loads(process.stdout)["nearest_preset"]["name"] == "sd15"
    assert process.stderr.strip() == "False"
