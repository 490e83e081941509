"""`weights FILE` says what a file is first: the kind from tensor names, and the command that reads it."""

from __future__ import annotations

import pytest

from unetinspect.sources.kinds import file_kind

NAMES = {
    "lora": ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight", "lora_te_text_model_x.alpha"],
    "ip-adapter": ["image_proj.proj.weight", "ip_adapter.1.to_k_ip.weight", "ip_adapter.1.to_v_ip.weight"],
    "controlnet": ["control_model.input_hint_block.0.weight", "control_model.zero_convs.0.0.weight"],
    "unet": ["model.diffusion_model.input_blocks.0.0.weight", "first_stage_model.decoder.conv_in.weight"],
    "VAE": ["encoder.conv_in.weight", "encoder.mid_block.resnets.0.conv1.weight", "decoder.up_blocks.0.x",
            "quant_conv.weight"],
    "text encoder": ["text_model.encoder.layers.0.mlp.fc1.weight", "text_model.embeddings.position_ids"],
    "unknown": ["some.tensor", "another"],
}


@pytest.mark.parametrize("kind", NAMES)
def test_kind_from_names(kind):
    assert file_kind(NAMES[kind]).kind == kind


@pytest.mark.parametrize("names", [
    ["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"],                   # PEFT
    ["unet.down_blocks.0.attentions.0.proj_in.lora.down.weight"],                # old diffusers
    ["lora_unet_input_blocks_4_1_proj_in.hada_w1_a"],                            # LoHa
    ["lora_unet_input_blocks_4_1_proj_in.lokr_w1"],                              # LoKr
    ["controlnet_cond_embedding.conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"],  # diffusers ControlNet
])
def test_adapter_and_controlnet_formats(names):
    assert file_kind(names).kind in ("lora", "controlnet")


def test_the_command_names_the_file():
    assert file_kind(NAMES["lora"]).command_for("x.safetensors") == "unetinspect lora x.safetensors"
    assert file_kind(NAMES["unknown"]).command_for("x") is None


def test_weights_says_the_kind_first_and_does_not_read_a_lora_as_a_unet(tmp_path):
    import json

    import torch
    from safetensors.torch import save_file
    from typer.testing import CliRunner

    from unetinspect.cli import app

    path = tmp_path / "style.safetensors"
    save_file({name: torch.zeros(2, 2) for name in NAMES["lora"]}, path)
    result = CliRunner().invoke(app, ["weights", str(path)])
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("kind lora") and f"unetinspect lora {path}" in first
    assert "parameters per block" not in result.stdout and "not a model: a LoRA file" in result.stdout
    data = json.loads(CliRunner().invoke(app, ["weights", str(path), "-f", "json"]).stdout)
    assert data["file_kind"] == "lora" and data["read_with"] == f"unetinspect lora {path}" and data["blocks"] == []
