"""The session: one place that opens a model, fixes its sizes once, and labels honestly what was opened."""

from __future__ import annotations

import pytest
import torch
from conftest import our_unet, save_folder

import unetinspect as ui
from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import RunError
from unetinspect.presets import load_preset_dict
from unetinspect.sources.inputs import InputSpec, infer_pixel_factor
from unetinspect.sources.open import open_session


def test_session_opens_once_with_concrete_sizes():
    session = open_session("tiny", InputSpec(batch=2, height=64, width=96))
    assert session.setup.label == "tiny" and session.setup.kind == "preset" and session.setup.impl == "ours"
    assert session.setup.sizes.latent == (8, 12) and session.setup.sizes.pixels == (64, 96)
    assert session.inputs["sample"].shape == (2, 4, 8, 12) and session.inputs["sample"].device.type == "meta"
    assert session.setup.device == "meta" and session.setup.dtype == "float32"
    assert open_session(session) is session  # a session is taken as it is


def test_latent_size_instead_of_pixels():
    session = open_session("tiny", InputSpec(latent=(10, 6)))
    assert session.setup.sizes.latent == (10, 6) and session.setup.sizes.pixels == (80, 48)
    with pytest.raises(RunError, match="not both"):
        open_session("tiny", InputSpec(latent=(10, 6), height=64))


def test_pixel_size_only_where_the_family_tells_it(write_config):
    odd = dict(load_preset_dict("tiny"), in_channels=2, out_channels=2)
    session = open_session(str(write_config(odd)))
    assert session.setup.sizes.pixels is None and session.setup.sizes.latent == (16, 16)
    with pytest.raises(RunError, match="pixel size is unknown"):
        open_session(str(write_config(odd)), InputSpec(height=128))
    pixel_space = UNetConfig.from_dict(dict(load_preset_dict("tiny"), in_channels=3, out_channels=6))
    upscaler = UNetConfig.from_dict(dict(load_preset_dict("tiny"), in_channels=7, out_channels=4))
    assert infer_pixel_factor(pixel_space) == 1 and infer_pixel_factor(upscaler) == 4


def test_labels_say_what_was_opened(write_config):
    other = write_config(load_preset_dict("tiny"), "other.json")
    assert open_session("sdxl", config=str(other)).setup.label == "sdxl with config other.json"
    assert open_session(None, config=str(other)).setup.label == "other.json"
    assert open_session(None, config="tiny").setup.label == "tiny"
    cfg = UNetConfig.from_dict(load_preset_dict("tiny"))
    assert open_session(None, config=cfg).setup.label == "a UNetConfig"


def test_fp16_checkpoint_reports_its_stored_size(tmp_path, invoke):
    save_folder(our_unet(load_preset_dict("tiny")), tmp_path, dtype=torch.float16)
    summary = ui.summarize(str(tmp_path))
    assert summary.setup.weight_dtypes == ("F16",) and summary.setup.weights.startswith("weights F16")
    result = invoke("summary", tmp_path)
    assert result.exit_code == 0, result.output
    assert "stored as F16" in result.stdout and "in float32" not in result.stdout


def test_every_result_carries_the_same_setup():
    spec = InputSpec(latent=(8, 8))
    summary = ui.summarize("tiny", spec)
    graph = ui.diagram_graph("tiny", spec)
    comparison = ui.compare("tiny", "sd15", spec)
    assert summary.setup == graph.setup == comparison.a.setup
    assert comparison.b.setup.label == "sd15"


def test_controlnets_are_refused_on_a_live_model_not_ignored():
    model = ui.load_unet("tiny", device="meta")
    with pytest.raises(RunError, match="live model"):
        open_session(model, controlnets=("some-controlnet",))
