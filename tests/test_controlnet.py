"""ControlNetModel: same keys, parameter counts and outputs as diffusers' (alone and as one step with the UNet)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from conftest import SMALL_CONFIGS, diffusers_unet

from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import ConfigError, UnsupportedConfigError
from unetinspect.models.controlnet import ControlNetModel
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.sources.inputs import InputSpec, make_inputs

EMBEDDING = (8, 16)  # a 2x-downsampling conditioning encoder: pixels are 2x the latent in these tests
PARITY = ("sd15-like", "sd21-like", "sdxl-like", "class-timestep")


def diffusers_controlnet(unet, seed: int = 1):
    """diffusers' ControlNet for a diffusers UNet, every weight (zero convolutions too) made non-zero."""
    from diffusers import ControlNetModel as DiffusersControlNet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        controlnet = DiffusersControlNet.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in controlnet.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return controlnet


def step_inputs(config: UNetConfig) -> tuple[dict, torch.Tensor]:
    inputs = make_inputs(config, InputSpec(height=64, width=64, text_len=5))
    cond = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))  # latent 8×8, pixels 2x here
    return inputs, cond


@pytest.mark.parametrize("name", PARITY)
def test_controlnet_matches_diffusers(name):
    pytest.importorskip("diffusers")
    config = SMALL_CONFIGS[name]
    reference = diffusers_controlnet(diffusers_unet(config))
    ours = ControlNetModel.from_unet(UNet2DConditionModel(UNetConfig.from_dict(config)),
                                     conditioning_embedding_out_channels=EMBEDDING).eval()
    theirs = reference.state_dict()
    assert list(ours.state_dict()) == list(theirs)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    ours.load_state_dict(theirs)

    inputs, cond = step_inputs(ours.config.unet)
    with torch.no_grad():
        down_ref, mid_ref = reference(**inputs, controlnet_cond=cond, conditioning_scale=0.7, return_dict=False)
        down, mid = ours(**inputs, controlnet_cond=cond, conditioning_scale=0.7)
    assert len(down) == len(down_ref) == ours.config.residual_count
    for a, b in zip(down, down_ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    torch.testing.assert_close(mid, mid_ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["sd15-like", "sdxl-like"])
def test_unet_plus_controlnet_step_matches_diffusers_pipeline_call(name):
    """The pipeline's step: controlnet(...) → unet(..., down_block_additional_residuals, mid_block_additional_residual)."""
    pytest.importorskip("diffusers")
    config = SMALL_CONFIGS[name]
    unet_ref = diffusers_unet(config)
    controlnet_ref = diffusers_controlnet(unet_ref)
    unet = UNet2DConditionModel(UNetConfig.from_dict(config)).eval()
    unet.load_state_dict(unet_ref.state_dict())
    controlnet = ControlNetModel(ControlNetConfig.from_dict(dict(controlnet_ref.config))).eval()
    controlnet.load_state_dict(controlnet_ref.state_dict())

    inputs, cond = step_inputs(unet.config)
    with torch.no_grad():
        down, mid = controlnet_ref(**inputs, controlnet_cond=cond, return_dict=False)
        expected = unet_ref(**inputs, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        down, mid = controlnet(**inputs, controlnet_cond=cond)
        got = unet(**inputs, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_guess_mode_and_bgr_match_diffusers():
    pytest.importorskip("diffusers")
    reference = diffusers_controlnet(diffusers_unet(SMALL_CONFIGS["sd15-like"]))
    reference.register_to_config(controlnet_conditioning_channel_order="bgr")
    ours = ControlNetModel(ControlNetConfig.from_dict(dict(reference.config))).eval()
    ours.load_state_dict(reference.state_dict())
    inputs, cond = step_inputs(ours.config.unet)
    with torch.no_grad():
        down_ref, mid_ref = reference(**inputs, controlnet_cond=cond, guess_mode=True, return_dict=False)
        down, mid = ours(**inputs, controlnet_cond=cond, guess_mode=True)
    torch.testing.assert_close(mid, mid_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(down[0], down_ref[0], atol=1e-4, rtol=0)


def test_config_round_trips_as_diffusers_writes_it():
    pytest.importorskip("diffusers")
    reference = diffusers_controlnet(diffusers_unet(SMALL_CONFIGS["sdxl-like"]))
    config = ControlNetConfig.from_dict(dict(reference.config))
    assert config.unet.up_block_types == ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"]
    written = config.to_dict()
    for key, value in dict(reference.config).items():
        if not key.startswith("_"):
            assert written[key] == (list(value) if isinstance(value, tuple) else value), key


def test_untrained_controlnet_adds_nothing():
    """Zero convolutions: a fresh ControlNet's residuals are all zero, so the step equals the UNet alone."""
    unet = UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS["sd15-like"])).eval()
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING).eval()
    inputs, cond = step_inputs(unet.config)
    with torch.no_grad():
        down, mid = controlnet(**inputs, controlnet_cond=cond)
        assert all(not r.any() for r in down) and not mid.any()
        torch.testing.assert_close(unet(**inputs, down_block_additional_residuals=down,
                                        mid_block_additional_residual=mid), unet(**inputs))


@pytest.mark.parametrize("changes, error", [
    ({"mid_block_type": None}, UnsupportedConfigError),
    ({"layers_per_block": [1, 2, 2]}, ConfigError),
    ({"conditioning_embedding_out_channels": []}, ConfigError),
    ({"controlnet_conditioning_channel_order": "rgba"}, ConfigError),
    ({"_class_name": "UNet2DConditionModel"}, ConfigError),
])
def test_bad_controlnet_configs_are_refused_naming_the_field(changes, error):
    data = ControlNetConfig.from_unet(UNetConfig.from_dict(SMALL_CONFIGS["sd15-like"])).to_dict()
    data.update(changes)
    with pytest.raises(error) as caught:
        ControlNetConfig.from_dict(data)
    assert next(iter(changes)).removeprefix("_") in caught.value.one_line()


# ---- loading: diffusers folders and files, original single files ---------------------------------------------------


@pytest.fixture
def controlnet_and_state():
    """Our tiny SDXL-shaped ControlNet with random, non-zero weights, and its state dict."""
    unet = UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS["sdxl-like"]))
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=EMBEDDING).eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in controlnet.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return controlnet, {k: v.contiguous() for k, v in controlnet.state_dict().items()}


def test_diffusers_controlnet_folder_loads_as_a_controlnet(tmp_path, controlnet_and_state):
    from safetensors.torch import save_file

    from unetinspect.sources.loading import load_unet
    from unetinspect.sources.resolve import resolve_source

    controlnet, state = controlnet_and_state
    folder = tmp_path / "controlnet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(controlnet.config.to_dict()))
    save_file(state, folder / "diffusion_pytorch_model.safetensors")
    source = resolve_source(folder)
    assert source.is_controlnet and source.kind == "diffusers"
    loaded = load_unet(folder, device="cpu")
    assert isinstance(loaded, ControlNetModel)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert isinstance(load_unet(folder / "config.json", device="meta"), ControlNetModel)


@pytest.mark.parametrize("prefix", ["control_model.", ""])
@pytest.mark.parametrize("name", ["sd15-like", "sdxl-like"])
def test_original_single_file_controlnet_loads_with_the_same_weights(tmp_path, prefix, name):
    from ldm_files import to_ldm_controlnet
    from safetensors.torch import save_file

    from unetinspect.sources.loading import load_unet
    from unetinspect.sources.resolve import resolve_source

    unet = UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS[name]))
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 24))
    state = {k: torch.randn(v.shape) for k, v in controlnet.state_dict().items()}
    path = tmp_path / "control_tiny.safetensors"
    save_file(to_ldm_controlnet(state, controlnet.config.to_dict(), prefix), path)

    source = resolve_source(path)
    assert source.layout == "ldm-controlnet" and source.is_controlnet
    inferred = source.config
    assert inferred.conditioning_embedding_out_channels == (8, 16, 24)
    for field in ("block_out_channels", "down_block_types", "cross_attention_dim", "use_linear_projection",
                  "addition_embed_type", "layers_per_block"):
        assert getattr(inferred.unet, field) == getattr(controlnet.config.unet, field), field
    # heads and the depth of attention-free levels are not in the shapes: the override says them
    loaded = load_unet(path, device="cpu", config=controlnet.config)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_original_controlnet_file_with_a_gap_is_refused_naming_the_key(tmp_path):
    from ldm_files import to_ldm_controlnet
    from safetensors.torch import save_file

    from unetinspect.errors import WeightsError
    from unetinspect.sources.resolve import resolve_source

    controlnet = ControlNetModel.from_unet(UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS["sd15-like"])),
                                           conditioning_embedding_out_channels=EMBEDDING)
    state = to_ldm_controlnet({k: torch.zeros(v.shape) for k, v in controlnet.state_dict().items()},
                              controlnet.config.to_dict())
    broken = {k: v for k, v in state.items() if not k.startswith("control_model.input_blocks.2.")}
    save_file(broken, tmp_path / "broken.safetensors")
    with pytest.raises(WeightsError, match="input_blocks"):
        resolve_source(tmp_path / "broken.safetensors")


# ---- the step: ControlNet(s), then the UNet with their residuals -------------------------------------------------


def test_controlled_step_with_two_controlnets_matches_diffusers_multicontrolnet():
    pytest.importorskip("diffusers")
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    from unetinspect.models.controlled import ControlledUNet

    config = SMALL_CONFIGS["sdxl-like"]
    unet_ref = diffusers_unet(config)
    references = [diffusers_controlnet(unet_ref, seed=s) for s in (1, 2)]
    unet = UNet2DConditionModel(UNetConfig.from_dict(config)).eval()
    unet.load_state_dict(unet_ref.state_dict())
    controlnets = []
    for reference in references:
        controlnet = ControlNetModel(ControlNetConfig.from_dict(dict(reference.config))).eval()
        controlnet.load_state_dict(reference.state_dict())
        controlnets.append(controlnet)
    step = ControlledUNet(unet, controlnets).eval()

    inputs, cond = step_inputs(unet.config)
    images = [cond, cond.flip(-1)]
    with torch.no_grad():
        down, mid = MultiControlNetModel(references)(**inputs, controlnet_cond=images, conditioning_scale=[1.0, 0.5],
                                                     return_dict=False)
        expected = unet_ref(**inputs, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        got = step(**inputs, controlnet_cond=images, conditioning_scale=[1.0, 0.5])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.fixture
def controlnet_file(tmp_path):
    """An original single-file ControlNet for a config (tiny by default), with random weights."""
    from ldm_files import to_ldm_controlnet
    from safetensors.torch import save_file

    def write(name: str = "sd15-like", file: str = "control.safetensors"):
        controlnet = ControlNetModel.from_unet(UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS[name])))
        state = {k: torch.randn(v.shape) * 0.02 for k, v in controlnet.state_dict().items()}
        save_file(to_ldm_controlnet(state, controlnet.config.to_dict()), tmp_path / file)
        return tmp_path / file
    return write


def test_summary_with_two_controlnets_shows_both_models_and_the_step_totals(controlnet_file):
    from unetinspect.views.summary import summarize

    first, second = controlnet_file(file="a.safetensors"), controlnet_file(file="b.safetensors")
    summary = summarize("tiny", controlnets=(first, second))
    unet_alone = summarize("tiny")
    controlnet_alone = summarize(first, InputSpec(height=128, width=128))  # tiny's size, as in the step
    assert summary.setup.model_type == "ControlledUNet"
    assert summary.setup.label == "tiny + controlnet a.safetensors + controlnet b.safetensors"
    assert summary.trace.total_params == unet_alone.trace.total_params + 2 * controlnet_alone.trace.total_params
    # the UNet adds 9 skip residuals and one mid residual per step on top of its own FLOPs
    assert summary.trace.flops >= unet_alone.trace.flops + 2 * controlnet_alone.trace.flops
    paths = [row.path for row in summary.rows(2)]
    assert paths.index("controlnets.0") < paths.index("controlnets.1") < paths.index("unet")
    assert "controlnets.1.controlnet_cond_embedding" in paths and "unet.up_blocks.2" in paths
    cond = summary.inputs["controlnet_cond.0"]
    assert cond[-2:] == (128, 128)  # the conditioning image at pixel size (tiny: 16×16 latent)


def test_cli_controlnet_errors_name_the_source(controlnet_file, invoke):
    wrong = controlnet_file("sdxl-like")
    result = invoke("summary", "tiny", "--controlnet", wrong)
    assert result.exit_code == 1 and "another base model" in result.output and "Traceback" not in result.output
    result = invoke("summary", "tiny", "--controlnet", "sd15")
    assert result.exit_code == 1 and "not a ControlNet" in result.output
    result = invoke("summary", "tiny", "--controlnet", controlnet_file(), env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "ControlNetModel" in result.output and "controlnet_mid_block" in result.output


def test_profile_times_both_models(controlnet_file, one_thread):
    from unetinspect.views.profile import profile

    result = profile("tiny", device="cpu", depth=2, warmup=0, repeat=1, controlnets=(controlnet_file(),))
    names = [row.name for row in result.blocks]
    assert "controlnets.0.down_blocks.0" in names and "unet.up_blocks.1" in names
