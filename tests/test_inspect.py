"""What a checkpoint holds, from its headers (`views/weights.py`): the preset it is, or the nearest one and how
it differs; the `weights` command is tested in test_weights_cmd.py."""

from __future__ import annotations

import math

import pytest
from ldm_files import meta_shapes, to_ldm, write_header_only

from unetinspect.families import load_preset
from unetinspect.presets import load_preset_dict
from unetinspect.views.weights import PresetMatch, inspect_weights, nearest_preset


@pytest.mark.parametrize("preset", ["sd21", "sdxl", "sdxl-refiner", "sd15-inpaint", "sd-x4-upscaler", "ssd-1b",
                                    "vega", "sd21-unclip"])
def test_other_full_size_checkpoints_are_named_exactly(preset, tmp_path):
    config = load_preset_dict(preset)
    path = write_header_only(tmp_path / "model.safetensors", to_ldm(meta_shapes(config), config))
    report = inspect_weights(path)
    assert report.nearest_preset.name == preset and report.nearest_preset.exact
    assert [c.name for c in report.components] == ["UNet"]


@pytest.mark.parametrize("preset", ["if-i-xl", "if-ii-l", "kandinsky-2.2", "karlo", "sd-x2-latent-upscaler"])
def test_diffusers_folders_of_other_families_are_named_exactly(preset, tmp_path, write_config):
    """Families with no original single-file layout of ours are inspected from their diffusers folders."""
    config = load_preset_dict(preset)
    write_config(config)
    write_header_only(tmp_path / "diffusion_pytorch_model.safetensors", meta_shapes(config))
    report = inspect_weights(tmp_path)
    assert report.nearest_preset == PresetMatch(preset, ())
    assert sum(part.params for part in report.blocks) == sum(math.prod(s) for s in meta_shapes(config).values())


def test_nearest_preset_names_the_differences():
    match = nearest_preset(load_preset("sd21").replace(sample_size=64, upcast_attention=False))
    assert (match.name, match.exact, match.differences) == ("sd21", False, ("sample_size", "upcast_attention"))
