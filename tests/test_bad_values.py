"""Hostile values for options and API arguments that parse as something else than they look: Unicode digits,
numbers past a float, sizes no allocation survives, arguments of the wrong type. Each is one line (a usage error,
exit 2, where an option's value cannot be read at all; exit 1 where the value reads but cannot run), never a
traceback or an "internal error", and nothing written."""

from __future__ import annotations

import pytest
from bad_input import refused


@pytest.mark.parametrize("command", [["summary"], ["diagram"], ["memory"], ["profile", "--device", "cpu"],
                                     ["attention", "--device", "cpu"], ["report"]], ids=lambda c: c[0])
@pytest.mark.parametrize("latent", ["²", "²x4", "4x³", "٣"])
def test_unicode_digits_are_not_a_latent_size(command, latent, tmp_path, invoke):
    """'²'.isdigit() is True yet int('²') fails: it used to end in a 48-line traceback."""
    refused(invoke, tmp_path, command[0], "tiny", *command[1:], "--latent", latent, "-o", tmp_path / "out.html",
            words="not a latent size", exit_code=2)


@pytest.mark.parametrize("query", ["²,²", "1,²", "٣,1"])
def test_unicode_digits_are_not_a_query_pixel(query, tmp_path, invoke):
    refused(invoke, tmp_path, "attention", "tiny", "--device", "cpu", "--latent", "8", "--self", "--query", query,
            words="is not a pixel")


def test_a_budget_past_a_float_is_refused(tmp_path, invoke):
    """1e400 reads as float infinity: an OverflowError ("internal error") when made bytes."""
    refused(invoke, tmp_path, "memory", "tiny", "--latent", "8", "--sweep", "batch=1,2", "--budget", "1e400",
            "-o", tmp_path / "out.json", words="cannot read --budget '1e400'")


def test_a_lora_rank_no_machine_holds_is_refused_before_allocating(tmp_path, invoke):
    """Rank 10⁹ adapters on the CPU used to end in the allocator's RuntimeError, reported as an internal error."""
    refused(invoke, tmp_path, "memory", "tiny", "--train", "--lora-rank", 1_000_000_000, "--device", "cpu",
            "--latent", "8", words="measured on the meta device")


def test_the_api_refuses_it_too():
    import unetinspect as ui
    from unetinspect.errors import RunError

    with pytest.raises(RunError, match="more than this machine's available memory"):
        ui.memory("tiny", ui.InputSpec(latent=(8, 8)), train=True, training=ui.Training(lora_rank=10**9),
                  device="cpu")


def test_a_step_predicted_past_the_free_memory_is_refused_with_the_prediction(tmp_path, invoke, monkeypatch):
    """`memory tiny --train --device cpu --batch 2000` (33.8 GiB predicted) was killed at 6 GiB after 21 s: the
    meta measurement, made first, is compared with what the device has free (here pretended to be 1 MiB)."""
    from unetinspect.views import memory

    monkeypatch.setattr(memory, "available_memory", lambda device: (2**20, "this machine's available memory"))
    message = refused(invoke, tmp_path, "memory", "tiny", "--train", "--device", "cpu", "--latent", "8",
                      "-o", tmp_path / "out.json", words="more than this machine's available memory (0.0 GiB)")
    assert "at its peak (measured on the meta device)" in message
    refused(invoke, tmp_path, "memory", "tiny", "--device", "cpu", "--latent", "8", "--sweep", "batch=1,2",
            words="measured on the meta device")


# ---- the Python API: every misuse a UnetInspectError, as docs/api.md promises --------------------------------------


@pytest.mark.parametrize("query", [("a", "b"), (1.5, 2), (True, 1), (-1, 0), (1, 2, 3), "3", "²,²", "3,3,3"])
def test_a_query_that_is_no_pixel(query):
    import unetinspect as ui
    from unetinspect.errors import UnetInspectError

    with pytest.raises(UnetInspectError, match="is not a pixel"):
        ui.attention_maps("tiny", device="cpu", kind="self", query=query)


@pytest.mark.parametrize("inputs", ["garbage", [1, 2], {1: 2}])
def test_inputs_that_are_no_call(inputs):
    import torch

    import unetinspect as ui
    from unetinspect.errors import UnetInspectError

    with pytest.raises(UnetInspectError, match="not the keyword arguments of one forward call"):
        ui.memory(torch.nn.Linear(4, 4), inputs=inputs)


def test_an_attention_like_module_with_no_heads():
    """A module that attends its own way but says heads=0: the maps cannot be split (a ZeroDivisionError)."""
    import torch
    from torch import nn

    import unetinspect as ui
    from unetinspect.errors import UnetInspectError

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.to_q, self.to_k, self.to_v, self.heads = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4), 0

        def forward(self, hidden_states, encoder_hidden_states=None):
            return self.to_v(hidden_states)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = Attention()

        def forward(self, sample, encoder_hidden_states):
            return self.attn(sample.flatten(2).transpose(1, 2), encoder_hidden_states=encoder_hidden_states)

    inputs = {"sample": torch.randn(1, 4, 2, 2), "encoder_hidden_states": torch.randn(1, 3, 4)}
    with pytest.raises(UnetInspectError, match="heads=0"):
        ui.attention_maps(Net(), inputs=inputs)


# ---- options that would be silently ignored are refused ------------------------------------------------------------


@pytest.mark.parametrize("args,words", [
    (["summary", "sd15", "--frames", "8"], "--frames 8 sizes a video UNet"),
    (["memory", "tiny", "--frames", "2"], "this is an image UNet"),
    (["compare", "sd15", "tiny", "--frames", "2"], "--frames 2 sizes a video UNet"),
    (["memory", "tiny", "--optimizer", "lion"], "unknown --optimizer 'lion'"),
    (["memory", "tiny", "--optimizer", "sgd"], "--optimizer is a choice of a training step"),
    (["memory", "tiny", "--checkpointing", "--lora-rank", "4"], "--checkpointing, --lora-rank are choices"),
    (["memory", "tiny", "--sweep", "batch=1,2", "--mixed", "fp16"], "add --train"),
    (["attention", "tiny", "--device", "cpu", "--latent", "8", "--query", "1,1"], "add --self"),
])
def test_options_that_would_be_ignored(args, words, tmp_path, invoke):
    refused(invoke, tmp_path, *args, "-o", tmp_path / "out.json", words=words)


def test_frames_size_the_video_side_of_a_comparison(invoke):
    """An image UNet beside a video one runs without --frames: it is not ignored, the video side takes it."""
    result = invoke("compare", "sd15", "animatediff", "--latent", "8", "--frames", "2", "-f", "json")
    assert result.exit_code == 0, result.output
    assert '"frames": 2' in result.stdout.replace(" ", "").replace('"frames":2', '"frames": 2')


def test_the_api_refuses_them_too():
    import unetinspect as ui
    from unetinspect.errors import RunError

    with pytest.raises(RunError, match="image UNet"):
        ui.summarize("tiny", ui.InputSpec(frames=4))
    with pytest.raises(RunError, match="one per token"):
        ui.attention_maps("tiny", device="cpu", query=(1, 1))
    with pytest.raises(RunError, match="training step"):
        ui.memory("tiny", training=ui.Training(optimizer="sgd"))


# ---- a pipeline folder's pixel size follows its VAE ----------------------------------------------------------------

VAE = {"_class_name": "AutoencoderKL", "block_out_channels": [8, 16], "latent_channels": 4, "norm_num_groups": 8,
       "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2,
       "layers_per_block": 1}


def _pipeline(folder, vae: dict | str):
    import json

    from conftest import tiny

    for part in ("unet", "vae"):
        (folder / part).mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (folder / "unet" / "config.json").write_text(json.dumps(tiny()))
    (folder / "vae" / "config.json").write_text(vae if isinstance(vae, str) else json.dumps(vae))
    return folder


@pytest.mark.parametrize("where", ["", "unet", "unet/config.json"])
def test_a_pipeline_folders_pixels_follow_its_vae(where, tmp_path, invoke):
    """A VAE of two levels halves the image once: a 16×16 latent is 32×32 px (it was reported as 128×128), as
    diffusers' own AutoencoderKL of that config encodes a 32×32 picture."""
    import json

    import torch

    folder = _pipeline(tmp_path / "pipe", VAE)
    result = invoke("summary", folder / where, "--latent", "16", "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["setup"]["pixels"] == [32, 32]
    result = invoke("summary", folder / where, "--height", "64", "--width", "48", "-f", "json")
    assert json.loads(result.stdout)["setup"]["latent"] == [32, 24]

    diffusers = pytest.importorskip("diffusers")
    vae = diffusers.AutoencoderKL.from_config({k: v for k, v in VAE.items() if k != "_class_name"})
    with torch.no_grad():
        latent = vae.encode(torch.zeros(1, 3, 32, 32)).latent_dist.mean
    assert tuple(latent.shape[-2:]) == (16, 16)


@pytest.mark.parametrize("vae,words", [("{}", "block_out_channels None"), ("[1]", "tells no autoencoder"),
                                       ('{"block_out_channels": [1,2,3,4,5,6,7,8,9]}', "1 to 8")])
def test_a_pipeline_vae_config_that_tells_no_levels(vae, words, tmp_path, invoke):
    folder = _pipeline(tmp_path / "pipe", vae)
    refused(invoke, tmp_path, "summary", folder, words=words)


def test_a_motion_adapter_given_to_a_command_that_runs_a_unet(tmp_path, invoke):
    """"not supported yet: _class_name='MotionAdapter' — unetinspect builds UNet2DConditionModel only" said neither
    what the folder is nor what reads it."""
    import json

    from test_video import SMALL_ADAPTER

    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "MotionAdapter", **SMALL_ADAPTER}))
    for source in (folder, folder / "diffusion_pytorch_model.safetensors"):
        if source.suffix:
            import torch
            from safetensors.torch import save_file

            save_file({"down_blocks.0.motion_modules.0.proj_in.weight": torch.zeros(2, 2)}, source)
        message = refused(invoke, tmp_path, "summary", source, words="is a MotionAdapter")
        assert f"unetinspect weights {folder}" in message
