"""The video UNets (models/svd.py, models/motion.py): same keys, parameter counts and outputs as diffusers'; the
presets' exact sizes; their configs' validation; frames as a size; the CLI on presets and config.json files."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from unetinspect.configs.unet import UNetConfig
from unetinspect.configs.video import MotionAdapterConfig, MotionConfig, SVDConfig
from unetinspect.errors import ConfigError, InputError, RunError
from unetinspect.families import load_preset
from unetinspect.models.motion import MotionAdapter, UNetMotionModel
from unetinspect.models.svd import UNetSpatioTemporalConditionModel
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.presets import load_preset_dict
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import build_model, count_parameters

# Shrunk configs: every block kind, two levels, per-block depths, frames folded into small batches.
SMALL_SVD = dict(
    block_out_channels=[32, 64], down_block_types=["CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    up_block_types=["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"], num_attention_heads=[2, 4],
    cross_attention_dim=32, layers_per_block=1, addition_time_embed_dim=8, projection_class_embeddings_input_dim=24,
    num_frames=3, transformer_layers_per_block=[1, 2], sample_size=8,
)
SMALL_UNET = dict(
    block_out_channels=[32, 64], down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], attention_head_dim=[2, 4], norm_num_groups=8,
    cross_attention_dim=32, layers_per_block=1, sample_size=8,
)
SMALL_SDXL_UNET = dict(SMALL_UNET, addition_embed_type="text_time", addition_time_embed_dim=8,
                       projection_class_embeddings_input_dim=1280 + 48, use_linear_projection=True)
SMALL_ADAPTER = dict(block_out_channels=[32, 64], motion_layers_per_block=1, motion_num_attention_heads=2,
                     motion_norm_num_groups=8, motion_max_seq_length=8, motion_transformer_layers_per_block=[1, 2])

# Parameter counts of the full-size presets: ours, and diffusers' built from the same config.json on meta.
VIDEO_PRESETS = {
    "svd": 1_524_623_082,
    "svd-xt": 1_524_623_082,
    "animatediff": 1_312_730_244,
    "animatediff-v3": 1_276_658_564,
    "animatediff-sdxl": 2_804_242_884,
}


def _perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every weight moved off its init (diffusers zero-inits some outputs), so parity tests see all of them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.02)
    return model.eval()


def _max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


# ---- parity with diffusers -------------------------------------------------------------------------------------


def test_svd_matches_diffusers():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    reference = _perturbed(diffusers.UNetSpatioTemporalConditionModel(**SMALL_SVD))
    ours = UNetSpatioTemporalConditionModel(SVDConfig.from_dict(dict(reference.config))).eval()
    assert set(ours.state_dict()) == set(reference.state_dict())
    assert count_parameters(ours) == count_parameters(reference)
    ours.load_state_dict(reference.state_dict())
    for spec in (InputSpec(batch=2, frames=3), InputSpec(batch=1, latent=(10, 14), frames=5)):
        inputs = make_inputs(ours.config, spec)
        assert inputs["sample"].shape[:3] == (spec.batch, spec.frames, 8)
        with torch.no_grad():
            assert _max_error(ours(**inputs), reference(**inputs).sample) <= 1e-4


@pytest.mark.parametrize("unet, mid", [(SMALL_UNET, True), (SMALL_UNET, False), (SMALL_SDXL_UNET, False)])
def test_motion_unet_from_unet2d_matches_diffusers(unet, mid):
    """from_unet2d(UNet, adapter) in both libraries: the same config, the same weights, the same outputs."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    adapter_config = dict(SMALL_ADAPTER, use_motion_mid_block=mid)
    unet_ref = _perturbed(diffusers.UNet2DConditionModel(**unet))
    adapter_ref = _perturbed(diffusers.MotionAdapter(**adapter_config), seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = diffusers.UNetMotionModel.from_unet2d(unet_ref, adapter_ref).eval()
    base = UNet2DConditionModel(UNetConfig.from_dict(unet))
    base.load_state_dict(unet_ref.state_dict())
    adapter = MotionAdapter(MotionAdapterConfig.from_dict(adapter_config))
    assert set(adapter.state_dict()) == set(adapter_ref.state_dict())
    adapter.load_state_dict(adapter_ref.state_dict())
    ours = UNetMotionModel.from_unet2d(base, adapter).eval()

    assert ours.config == MotionConfig.from_dict(dict(reference.config))
    theirs = reference.state_dict()
    assert set(ours.state_dict()) == set(theirs)
    assert count_parameters(ours) == count_parameters(reference)
    ours.load_state_dict(theirs)  # diffusers' from_unet2d leaves SDXL's add_embedding fresh: compare on its weights
    inputs = make_inputs(ours.config, InputSpec(batch=2, frames=5, text_len=7))
    assert inputs["sample"].shape[:3] == (2, 4, 5) and inputs["encoder_hidden_states"].shape[0] == 10
    with torch.no_grad():
        assert _max_error(ours(**inputs), reference(**inputs).sample) <= 1e-4


def test_from_unet2d_copies_the_unet_and_the_adapter():
    unet = _perturbed(UNet2DConditionModel(UNetConfig.from_dict(SMALL_UNET)))
    adapter = _perturbed(MotionAdapter(MotionAdapterConfig.from_dict(SMALL_ADAPTER)), seed=1)
    motion = UNetMotionModel.from_unet2d(unet, adapter).state_dict()
    for source in (unet.state_dict(), adapter.state_dict()):
        for key, value in source.items():
            assert torch.equal(motion[key], value), key


# ---- full-size presets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VIDEO_PRESETS))
def test_preset_counts_equal_diffusers_on_meta(name):
    ours = build_model(load_preset(name))
    assert count_parameters(ours) == VIDEO_PRESETS[name]
    diffusers = pytest.importorskip("diffusers")
    data = load_preset_dict(name)
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = getattr(diffusers, data["_class_name"]).from_config(data)
    assert count_parameters(theirs) == VIDEO_PRESETS[name]
    assert set(ours.state_dict()) == set(theirs.state_dict())


def test_animatediff_presets_are_sd15_and_sdxl_with_their_adapters():
    """The presets are what from_unet2d makes of the base presets and the published adapter configs."""
    v2 = MotionAdapterConfig(use_motion_mid_block=True)
    v3 = MotionAdapterConfig(use_motion_mid_block=False)
    xl = MotionAdapterConfig(block_out_channels=[320, 640, 1280], use_motion_mid_block=False)
    assert load_preset("animatediff") == MotionConfig.from_unet2d(load_preset("sd15"), v2)
    assert load_preset("animatediff-v3") == MotionConfig.from_unet2d(load_preset("sd15"), v3)
    assert load_preset("animatediff-sdxl") == MotionConfig.from_unet2d(load_preset("sdxl"), xl)
    assert load_preset("svd").num_frames == 14 and load_preset("svd-xt").num_frames == 25


def test_config_round_trips_as_diffusers_writes_it():
    for name in ("svd", "animatediff-sdxl"):
        data = load_preset_dict(name)
        config = load_preset(name)
        assert type(config).from_dict(config.to_dict()) == config
        assert config.to_dict() == data


# ---- frames are a size; FLOPs of temporal attention --------------------------------------------------------------


@pytest.mark.parametrize("name, frames", [("svd", 14), ("svd-xt", 25), ("animatediff", 16)])
def test_default_frames_are_the_familys(name, frames):
    sizes = InputSpec().resolve(load_preset(name), 8)
    assert sizes.frames == frames
    assert InputSpec(frames=4).resolve(load_preset(name), 8).frames == 4
    assert InputSpec(frames=4).resolve(load_preset("sd15"), 8).frames is None  # an image UNet has no frame axis


def test_temporal_attention_flops_are_counted_exactly():
    """An SVD temporal self-attention attends over the F frames of each of the h·w pixels: q, k, v and out
    projections 4 × 2·(h·w·F)·C², and QKᵀ and AV 2 × 2·(h·w)·F²·C."""
    from unetinspect.engine.trace import trace_model

    config = SVDConfig.from_dict(SMALL_SVD)
    model = build_model(config)
    frames, (h, w) = 6, (8, 12)
    trace = trace_model(model, make_inputs(config, InputSpec(latent=(h, w), frames=frames), device="meta"))
    record = next(r for r in trace.records
                  if r.path == "down_blocks.0.attentions.0.temporal_transformer_blocks.0.attn1")
    channels, pixels = 32, h * w
    assert record.flops == 8 * pixels * frames * channels**2 + 4 * pixels * frames**2 * channels


# ---- bad input: one line each --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, error, words", [
    (lambda: SVDConfig.from_dict(dict(SMALL_SVD, num_frames=0)), ConfigError, "num_frames"),
    (lambda: SVDConfig.from_dict(dict(SMALL_SVD, down_block_types=["Nope", "DownBlockSpatioTemporal"])),
     ConfigError, "down_block_types[0]"),
    (lambda: MotionConfig.from_unet2d(UNetConfig.from_dict(SMALL_UNET), MotionAdapterConfig()), ConfigError,
     "block_out_channels"),
    (lambda: MotionAdapterConfig(motion_max_seq_length=0), ConfigError, "motion_max_seq_length"),
    (lambda: MotionAdapterConfig(motion_num_attention_heads=7), ConfigError, "motion heads"),
    (lambda: make_inputs(load_preset("svd"), InputSpec(frames=0), device="meta"), RunError, "--frames 0"),
    (lambda: make_inputs(load_preset("svd"), InputSpec(frames=10**6), device="meta"), RunError, "frames"),
    (lambda: make_inputs(load_preset("animatediff"), InputSpec(frames=33), device="meta"), RunError,
     "motion_max_seq_length"),
])
def test_bad_video_input_is_one_line(make, error, words):
    with pytest.raises(error) as caught:
        make()
    line = caught.value.one_line()
    assert words in line and "\n" not in line


def test_four_d_sample_to_a_video_unet_is_refused():
    for config in (SVDConfig.from_dict(SMALL_SVD), MotionConfig.from_unet2d(UNetConfig.from_dict(SMALL_UNET),
                                                                              MotionAdapterConfig.from_dict(SMALL_ADAPTER))):
        model = build_model(config)
        inputs = make_inputs(config, InputSpec(frames=2), device="meta")
        inputs["sample"] = inputs["sample"].flatten(0, 1)  # frames folded away: a batch of images
        with pytest.raises(InputError, match="one image; this video UNet expects"):
            model(**inputs)


# ---- the CLI -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["svd", "animatediff-sdxl"])
def test_summary_of_a_video_preset_shows_frames(invoke, name):
    result = invoke("summary", name, "--frames", "4", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["setup"]["frames"] == 4


def test_summary_of_a_diffusers_video_config_json(invoke, tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SVDConfig.from_dict(SMALL_SVD).to_dict()))
    result = invoke("summary", str(path))
    assert result.exit_code == 0, result.output
    assert "UNetSpatioTemporalConditionModel" in result.output and "3 frames" in result.output


def test_compare_sd15_with_animatediff(invoke):
    result = invoke("compare", "sd15", "animatediff", "--height", "256", "--width", "256", "--frames", "2")
    assert result.exit_code == 0, result.output


def test_frames_zero_on_the_cli_is_one_line(invoke):
    result = invoke("summary", "svd", "--frames", "0")
    assert result.exit_code == 1
    assert "--frames 0" in result.output


@pytest.mark.parametrize("kind", ["svd", "motion"])
def test_a_live_diffusers_video_unet_opens_in_summary(kind):
    """diffusers' own object (pipe.unet) is read through its family: its config, its frame axis, a meta copy."""
    diffusers = pytest.importorskip("diffusers")
    from unetinspect import summarize

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "svd":
            module = diffusers.UNetSpatioTemporalConditionModel(**SMALL_SVD).eval()
        else:
            module = diffusers.UNetMotionModel.from_unet2d(diffusers.UNet2DConditionModel(**SMALL_UNET),
                                                           diffusers.MotionAdapter(**SMALL_ADAPTER)).eval()
    result = summarize(module, InputSpec(frames=3))
    assert result.setup.sizes.frames == 3 and result.setup.model_type == type(module).__name__
    assert result.trace.total_params == count_parameters(module)


def test_impl_diffusers_runs_the_twin_of_a_video_config(invoke, tmp_path):
    pytest.importorskip("diffusers")
    path = tmp_path / "config.json"
    path.write_text(json.dumps(SVDConfig.from_dict(SMALL_SVD).to_dict()))
    result = invoke("summary", path, "--impl", "diffusers", "--device", "cpu", "--frames", "2")
    assert result.exit_code == 0, result.output
    assert "(diffusers)" in result.output


def test_a_diffusers_video_folder_loads_its_weights(tmp_path):
    """config.json + diffusion_pytorch_model.safetensors of a video UNet: read by its family, weights assigned."""
    from safetensors.torch import save_file

    from unetinspect import load_unet

    config = SVDConfig.from_dict(SMALL_SVD)
    model = _perturbed(UNetSpatioTemporalConditionModel(config))
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(weights, tmp_path / "diffusion_pytorch_model.safetensors")
    loaded = load_unet(tmp_path, device="cpu")
    assert isinstance(loaded, UNetSpatioTemporalConditionModel)
    inputs = make_inputs(config, InputSpec(frames=2))
    with torch.no_grad():
        assert _max_error(loaded(**inputs), model(**inputs)) <= 1e-4  # the parity bound used throughout


@pytest.mark.parametrize("base", ["svd", "motion"])
def test_a_video_unet_refuses_a_controlnet_for_its_own_reason(base):
    """The video family says why it takes no ControlNet (its record's refusal), not that it is a ControlNet."""
    from unetinspect.configs.controlnet import ControlNetConfig
    from unetinspect.sources.open import open_session

    video = (SVDConfig.from_dict(SMALL_SVD) if base == "svd"
             else MotionConfig.from_unet2d(UNetConfig.from_dict(SMALL_UNET), MotionAdapterConfig.from_dict(SMALL_ADAPTER)))
    controlnet = ControlNetConfig.from_unet(UNetConfig.from_dict(SMALL_UNET))
    with pytest.raises(RunError, match="ControlNets are added to an image UNet's skips") as error:
        open_session(video, controlnets=(controlnet,))
    assert "not with a ControlNet" not in str(error.value)
