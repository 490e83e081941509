"""Original single-file (LDM) checkpoints: config inferred from shapes, keys renamed, the weights that were saved."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SMALL_CONFIGS, diffusers_unet, our_unet
from ldm_files import OTHER_COMPONENTS, full_checkpoint, meta_shapes, to_ldm, write_header_only
from safetensors.torch import save_file

from unetinspect import UNetConfig, load_unet
from unetinspect.errors import WeightsError
from unetinspect.families import load_preset
from unetinspect.presets import load_preset_dict
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.resolve import resolve_source
from unetinspect.views.weights import PresetMatch, inspect_weights
from unetinspect.weights import ldm

# The tiny configs of conftest, moved onto the conventions of the released models that shapes cannot show
# (see `ldm.infer_config`): 32 norm groups; 8 heads with conv projections; 64-channel heads with linear ones
# (hence 64-wide levels); SDXL's 256-channel time ids and its null upcast_attention.
LDM_CONFIGS = {
    "sd15-like": {**SMALL_CONFIGS["sd15-like"], "norm_num_groups": 32, "attention_head_dim": 8},
    "sd21-like": {**SMALL_CONFIGS["sd21-like"], "norm_num_groups": 32, "block_out_channels": [64, 128, 128],
                  "attention_head_dim": [1, 2, 2]},
    "sdxl-like": {**SMALL_CONFIGS["sdxl-like"], "norm_num_groups": 32, "block_out_channels": [64, 128, 128],
                  "attention_head_dim": [1, 2, 2], "transformer_layers_per_block": [1, 1, 2],
                  "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 32 + 6 * 256,
                  "upcast_attention": None},
}
# The other families' conventions: the x4 upscaler's 8 heads with linear projections and text-only attention
# (level 1 here), stable unCLIP's image-embedding MLP (told from SDXL's by its 1024-wide text), SSD-1B's
# single-resnet mid block and up path deeper than its down path.
LDM_CONFIGS |= {
    "x4-like": {**SMALL_CONFIGS["sd15-like"], "norm_num_groups": 32, "in_channels": 7, "num_class_embeds": 10,
                "only_cross_attention": [False, True, False], "use_linear_projection": True, "attention_head_dim": 8},
    "unclip-like": {**LDM_CONFIGS["sd21-like"], "cross_attention_dim": 1024, "class_embed_type": "projection",
                    "projection_class_embeddings_input_dim": 16},
    "ssd-1b-like": {**LDM_CONFIGS["sdxl-like"], "mid_block_type": "UNetMidBlock2D",
                    "transformer_layers_per_block": [1, 1, 2],
                    "reverse_transformer_layers_per_block": [[2, 1, 1], [1, 1, 2], 1]},
}
FULL_SIZE = ["sd15", "sd15-inpaint", "sd21", "sdxl", "sdxl-refiner", "sd-x4-upscaler", "sd21-unclip", "ssd-1b",
             "vega"]



def _run(model, config: UNetConfig) -> torch.Tensor:
    inputs = make_inputs(config, InputSpec(batch=2, height=64, width=64))
    with torch.no_grad():
        out = model(**inputs)
    return out if torch.is_tensor(out) else out[0]


def _same_weights(ours, reference) -> bool:
    """Every tensor of our model equals the reference's under the same (diffusers) name."""
    mine, theirs = ours.state_dict(), reference.state_dict()
    return set(mine) == set(theirs) and all(torch.equal(tensor, theirs[name]) for name, tensor in mine.items())


def _save_ldm(path, config: dict, prefix: str = ldm.UNET_PREFIX):
    """A model for `config` with random weights, and the single file it becomes in the original layout."""
    reference = our_unet(config)
    tensors = full_checkpoint(reference, config)
    if not prefix:  # a bare UNet state dict, as some trainers save
        tensors = {k.removeprefix(ldm.UNET_PREFIX): v for k, v in tensors.items() if k.startswith(ldm.UNET_PREFIX)}
    save_file(tensors, str(path))
    return reference


@pytest.mark.parametrize("name", ["sd15-like", "sd21-like", "sdxl-like", "x4-like", "unclip-like"])
def test_the_tests_conversion_is_the_inverse_of_diffusers_own(name):
    """Our test files are only as good as their conversion: diffusers' LDM → diffusers must undo it exactly."""
    pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    config = SMALL_CONFIGS.get(name) or LDM_CONFIGS[name]
    state = diffusers_unet(config).state_dict()
    back = convert_ldm_unet_checkpoint(to_ldm(state, config), config)
    assert set(back) == set(state)
    assert all(back[k] is state[k] for k in state)


@pytest.mark.parametrize("name", list(LDM_CONFIGS))
def test_round_trip_infers_config_and_gives_the_same_outputs(name, tmp_path):
    config = LDM_CONFIGS[name]
    path = tmp_path / f"{name}.safetensors"
    reference = _save_ldm(path, config)

    ours = load_unet(path, device="cpu")
    expected = UNetConfig.from_dict(config)
    # sample_size cannot be inferred (it is the family preset's); everything else must be exactly the config
    assert ours.config.replace(sample_size=expected.sample_size) == expected
    assert (_run(ours, ours.config) - _run(reference, ours.config)).abs().max().item() <= 1e-4


def test_bare_unet_state_dict_without_prefix(tmp_path):
    config = LDM_CONFIGS["sd15-like"]
    path = tmp_path / "unet.safetensors"
    reference = _save_ldm(path, config, prefix="")
    source = resolve_source(path)
    assert (source.kind, source.layout) == ("single-file", "ldm")
    assert _same_weights(load_unet(source, device="cpu"), reference)


def test_fp16_file_loads_in_float32_by_default(tmp_path):
    config = LDM_CONFIGS["sd15-like"]
    reference = our_unet(config).half().float()  # the weights the fp16 file can hold
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in full_checkpoint(reference, config).items()}
    save_file(tensors, str(tmp_path / "half.safetensors"))
    ours = load_unet(tmp_path / "half.safetensors", device="cpu")
    assert next(ours.parameters()).dtype == torch.float32
    assert _same_weights(ours, reference)


def test_heads_off_the_sd_conventions_need_config_override(tmp_path, write_config):
    """SMALL_CONFIGS' sd21-like has 16-channel heads: shapes cannot show that, so --config says it."""
    config = SMALL_CONFIGS["sd21-like"]
    path = tmp_path / "odd-heads.safetensors"
    reference = _save_ldm(path, config)
    with pytest.raises(WeightsError, match="64-channel heads") as caught:
        resolve_source(path)
    assert "--config" in caught.value.one_line()
    ours = load_unet(path, device="cpu", config=write_config(config, "odd.json"))
    assert ours.config == UNetConfig.from_dict(config)
    assert (_run(ours, ours.config) - _run(reference, ours.config)).abs().max().item() <= 1e-4


def test_pickle_checkpoint_needs_allow_pickle(tmp_path):
    config = LDM_CONFIGS["sd15-like"]
    reference = our_unet(config)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": full_checkpoint(reference, config), "global_step": 1}, path)
    with pytest.raises(WeightsError, match="pickle"):
        load_unet(path, device="cpu")
    assert _same_weights(load_unet(path, device="cpu", allow_pickle=True), reference)


@pytest.mark.parametrize("preset", FULL_SIZE)
def test_full_size_configs_are_inferred_exactly_from_headers(preset, tmp_path):
    """Header-only files of real size (sparse, GBs long, KBs on disk), UNet plus VAE and text-encoder keys."""
    config = load_preset_dict(preset)
    shapes = {**to_ldm(meta_shapes(config), config), **OTHER_COMPONENTS}
    path = write_header_only(tmp_path / f"{preset}.safetensors", shapes)

    source = resolve_source(path)
    assert source.layout == "ldm"
    assert source.config == load_preset(preset)
    model = load_unet(source, device="meta")  # checks every name and shape against the header
    assert model.config == load_preset(preset)


def test_key_map_covers_unet_only_and_keeps_shapes():
    config = load_preset_dict("sdxl")
    diffusers_shapes = meta_shapes(config)
    ldm_shapes = {**to_ldm(diffusers_shapes, config), **OTHER_COMPONENTS}
    key_map = ldm.diffusers_key_map(ldm_shapes, load_preset("sdxl"))
    assert set(key_map) == set(diffusers_shapes)
    assert all(ldm_shapes[theirs] == diffusers_shapes[ours] for ours, theirs in key_map.items())


def _sd15_shapes() -> dict[str, tuple[int, ...]]:
    config = load_preset_dict("sd15")
    return to_ldm(meta_shapes(config), config)


def _without(shapes: dict, prefix: str) -> dict:
    return {k: v for k, v in shapes.items() if not k.startswith(ldm.UNET_PREFIX + prefix)}


@pytest.mark.parametrize("change,message", [
    (lambda s: _without(s, "out.2."), "'out.2.weight' is missing"),
    (lambda s: _without(s, "input_blocks.5."), "input_blocks.5 is missing"),
    (lambda s: _without(s, "output_blocks.11."), "11 output_blocks"),
    (lambda s: _without(s, "input_blocks.4.1."), "differ in channels or attention"),
    (lambda s: _without(s, "output_blocks.2.1."), "upsampler"),
    (lambda s: {**s, ldm.UNET_PREFIX + "label_emb.1.weight": (10, 1280)}, "neither a class table"),
    (lambda s: {**s, ldm.UNET_PREFIX + "middle_block.1.proj_in.weight": (1280, 1280)}, "linear layers and some"),
    (lambda s: {**s, ldm.UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 1024)},
     "different widths"),
    (lambda s: {k: v for k, v in s.items() if not k.startswith(ldm.UNET_PREFIX + "middle_block.1.")},
     "neither resnet, transformer, resnet"),
    (lambda s: {k: v for k, v in s.items() if "first_stage_model" in k}, "no UNet tensors"),
])
def test_checkpoints_off_every_supported_structure_say_what_did_not_fit(change, message):
    shapes = change(_sd15_shapes())
    with pytest.raises(WeightsError, match=message):
        ldm.infer_config({**shapes, "first_stage_model.x": (1,)}, origin="bad.safetensors")


def test_override_of_another_structure_names_the_unplaced_key(tmp_path):
    config = load_preset_dict("sd15")
    path = write_header_only(tmp_path / "sd15.safetensors", to_ldm(meta_shapes(config), config))
    with pytest.raises(WeightsError, match="no place in this config, e.g. 'model.diffusion_model.input_blocks"):
        load_unet(path, device="meta", config="sdxl")
    with pytest.raises(WeightsError, match="has shape"):
        load_unet(path, device="meta", config="sd21")  # same places, other shapes (text width, projections)


def test_override_config_file_wins_over_inference(tmp_path):
    config = load_preset_dict("sd21")
    path = write_header_only(tmp_path / "sd21.safetensors", to_ldm(meta_shapes(config), config))
    base = dict(config, sample_size=64, upcast_attention=False)  # SD 2.1 base (512, epsilon), same shapes
    (tmp_path / "base.json").write_text(json.dumps(base))
    assert resolve_source(path).config.sample_size == 96
    assert resolve_source(path, config=tmp_path / "base.json").config == UNetConfig.from_dict(base)


def test_component_of_names_the_parts_of_a_full_checkpoint():
    assert [ldm.component_of(k) for k in (
        "model.diffusion_model.out.0.weight", "first_stage_model.encoder.conv_in.weight",
        "cond_stage_model.transformer.x", "conditioner.embedders.1.model.x", "model_ema.decay", "alphas_cumprod",
        "input_blocks.0.0.weight",
    )] == ["UNet", "VAE", "text encoder", "text encoder 2", "EMA weights", "other", "UNet"]


@pytest.mark.parametrize("preset,in_channels", [("sd15", 8), ("sd21", 5), ("sdxl", 9)])
def test_pix2pix_depth_and_sdxl_inpainting_files_are_their_family_with_more_input_channels(preset, in_channels,
                                                                                            tmp_path):
    """instruct-pix2pix (8: latent + image latent), SD 2 depth (5: + depth), SDXL inpainting (9: + mask + masked)."""
    config = load_preset_dict(preset) | {"in_channels": in_channels}
    path = write_header_only(tmp_path / "model.safetensors", to_ldm(meta_shapes(config), config))
    report = inspect_weights(path)
    assert report.config == load_preset(preset).replace(in_channels=in_channels)
    assert report.nearest_preset.differences == ("in_channels",)
    assert load_unet(path, device="meta").conv_in.weight.shape[1] == in_channels


def test_sd15_inpainting_file_is_the_inpainting_preset(tmp_path):
    config = load_preset_dict("sd15-inpaint")
    path = write_header_only(tmp_path / "inpaint.safetensors", to_ldm(meta_shapes(config), config))
    assert inspect_weights(path).nearest_preset == PresetMatch("sd15-inpaint", ())
