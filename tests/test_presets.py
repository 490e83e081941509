"""Every preset builds what diffusers builds from the same config.json, and says what its samples are made of."""

from __future__ import annotations

import pytest
import torch

import unetinspect as ui
from unetinspect.families import load_preset
from unetinspect.presets import PRESETS, load_preset_dict, pixel_factor, preset_names
from unetinspect.sources.inputs import infer_pixel_factor
from unetinspect.sources.loading import build_model


def diffusers_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """diffusers' own state-dict shapes for a config (of the class its `_class_name` names), built on the meta
    device (no memory, full size is fine)."""
    import warnings

    import diffusers

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = getattr(diffusers, config.get("_class_name", "UNet2DConditionModel")).from_config(config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", preset_names())
def test_same_tensors_as_diffusers_on_the_meta_device(name):
    """Same state-dict names and shapes as diffusers' `UNet2DConditionModel.from_config`, hence the same count."""
    pytest.importorskip("diffusers")
    ours = {k: tuple(v.shape) for k, v in build_model(load_preset(name)).state_dict().items()}
    theirs = diffusers_shapes(load_preset_dict(name))
    assert sorted(set(ours) ^ set(theirs)) == []
    assert ours == theirs


def test_aliases_are_their_architecture_with_the_named_changes():
    assert load_preset("playground-v2.5") == load_preset("sdxl")
    assert load_preset("sdxl-turbo") == load_preset("sdxl").replace(sample_size=64)


@pytest.mark.parametrize("name,factor", [("sd15", 8), ("sdxl-turbo", 8), ("sd-x4-upscaler", 4), ("if-i-xl", 1),
                                         ("if-ii-l", 1), ("karlo", 1), ("kandinsky-2.2", 8)])
def test_pixel_factor_of_a_preset(name, factor):
    assert pixel_factor(name) == factor


def test_every_preset_has_a_pixel_factor_its_channels_agree_with():
    """Where the channels tell (`infer_pixel_factor`), they tell the preset's own factor."""
    for preset in PRESETS.values():
        inferred = infer_pixel_factor(load_preset(preset.name))
        assert preset.pixel_factor in (1, 4, 8) and inferred in (None, preset.pixel_factor), preset.name


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_presets_config_object_is_a_source(name):
    """A preset's config object — SVD's and AnimateDiff's too, whose classes only the family registry names — is a
    source of its own: summarised as the model of its family (a UNetConfig once was the only one taken)."""
    config = load_preset(name)
    summary = ui.summarize(config)
    assert summary.setup.label == f"a {type(config).__name__}"
    assert summary.setup.model_type == load_preset_dict(name).get("_class_name", "UNet2DConditionModel")
    assert summary.trace.total_params == sum(p.numel() for p in build_model(config).parameters())
