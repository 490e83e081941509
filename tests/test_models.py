"""Our UNet (models/) against diffusers': same keys, same parameter counts, same outputs on the same weights; and
on its own: exact preset sizes, heads, building on the meta device."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_CONFIGS, diffusers_unet, tiny

from unetinspect import UNetConfig, load_unet
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import build_model, count_parameters


def _run(model, inputs):
    with torch.no_grad():
        out = model(**inputs)
    return out if torch.is_tensor(out) else out[0]


@pytest.mark.parametrize("name", list(SMALL_CONFIGS))
def test_same_outputs_as_diffusers(name, tmp_path):
    config = SMALL_CONFIGS[name]
    reference = diffusers_unet(config)
    reference.save_pretrained(tmp_path)
    ours = load_unet(tmp_path, device="cpu")

    assert set(ours.state_dict()) == set(reference.state_dict())
    assert count_parameters(ours) == count_parameters(reference)
    for spec in (InputSpec(batch=2), InputSpec(batch=1, height=18 * 8, width=22 * 8)):
        inputs = make_inputs(ours.config, spec)
        expected, actual = _run(reference, inputs), _run(ours, inputs)
        assert actual.shape == expected.shape
        assert (actual - expected).abs().max().item() <= 1e-4


def test_timestep_as_number_zero_d_and_one_d():
    config = SMALL_CONFIGS["sd15-like"]
    reference = diffusers_unet(config)
    ours = build_model(UNetConfig.from_dict(config))
    ours.load_state_dict(reference.state_dict(), assign=True)
    inputs = make_inputs(ours.config, InputSpec(batch=2))
    for timestep in (500, 500.5, torch.tensor(500), torch.tensor([500, 500])):
        inputs["timestep"] = timestep
        assert (_run(ours, inputs) - _run(reference, inputs)).abs().max() <= 1e-4


def test_controlnet_residuals_are_added():
    config = SMALL_CONFIGS["sd15-like"]
    reference = diffusers_unet(config)
    ours = build_model(UNetConfig.from_dict(config))
    ours.load_state_dict(reference.state_dict(), assign=True)
    inputs = make_inputs(ours.config, InputSpec(batch=1, height=160, width=224))  # 20 x 28 latent
    with torch.no_grad():
        sample = ours.conv_in(inputs["sample"])
        emb, _ = ours._embed_conditions(inputs["sample"], inputs["timestep"], None, None, {})
        skips = [sample]
        for block in ours.down_blocks:
            sample, block_skips = block(sample, emb, inputs["encoder_hidden_states"])
            skips += block_skips
    generator = torch.Generator().manual_seed(1)
    inputs["down_block_additional_residuals"] = tuple(torch.randn(s.shape, generator=generator) for s in skips)
    inputs["mid_block_additional_residual"] = torch.randn(sample.shape, generator=generator)
    with_residuals = _run(ours, inputs)
    assert (with_residuals - _run(reference, inputs)).abs().max() <= 1e-4
    del inputs["mid_block_additional_residual"], inputs["down_block_additional_residuals"]
    assert (with_residuals - _run(ours, inputs)).abs().max() > 1e-3


def test_odd_latent_size_sd15_structure():
    """A 20 x 28 latent is not a multiple of 8: upsamplers must land on the skip sizes, as in diffusers."""
    config = tiny(block_out_channels=[16, 16, 32, 32], norm_num_groups=8, attention_head_dim=2,
                  down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                  up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, layers_per_block=1)
    reference = diffusers_unet(config)
    ours = build_model(UNetConfig.from_dict(config))
    ours.load_state_dict(reference.state_dict(), assign=True)
    inputs = make_inputs(ours.config, InputSpec(batch=3, height=160, width=224))
    assert (_run(ours, inputs) - _run(reference, inputs)).abs().max() <= 1e-4


@pytest.mark.parametrize("preset,expected", [
    ("sd15", 859_520_964), ("sd15-inpaint", 859_535_364), ("sd21", 865_910_724),
    ("sdxl", 2_567_463_684), ("sdxl-refiner", 2_259_526_660),
])
def test_preset_parameter_counts_are_exact(preset, expected):
    assert count_parameters(load_unet(preset, device="meta")) == expected


def test_preset_keys_match_diffusers():
    pytest.importorskip("diffusers")
    from diffusers import UNet2DConditionModel

    from unetinspect.presets import load_preset_dict

    for preset in ("sd15", "sdxl"):
        with torch.device("meta"):
            reference = UNet2DConditionModel.from_config(load_preset_dict(preset))
        ours = load_unet(preset, device="meta")
        assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == \
            {k: tuple(v.shape) for k, v in reference.state_dict().items()}


def test_num_attention_heads_means_heads():
    """`num_attention_heads` (which diffusers itself still refuses) gives the heads that the historical
    `attention_head_dim` gives when `num_attention_heads` is null."""
    by_heads = build_model(UNetConfig.from_dict(tiny(num_attention_heads=[2, 4, 4], attention_head_dim=99)))
    historical = build_model(UNetConfig.from_dict(tiny(attention_head_dim=[2, 4, 4])))
    assert by_heads.down_blocks[1].attentions[0].transformer_blocks[0].attn1.heads == 4
    assert {k: v.shape for k, v in by_heads.state_dict().items()} == \
        {k: v.shape for k, v in historical.state_dict().items()}


def test_building_on_meta_leaves_torch_layers_initialising_themselves():
    build_model(UNetConfig.from_dict(tiny()))
    layer = torch.nn.Conv2d(3, 3, 3)
    assert layer.weight.abs().sum() > 0 and "reset_parameters" not in torch.nn.Conv2d.__dict__
