"""What a checkpoint holds, from its headers (`weights/inspect.py`): the preset it is, or the nearest one and how
it differs; the `weights` command is tested in test_weights_cmd.py."""

from __future__ import annotations

import pytest

from ldm_files import meta_shapes, to_ldm, write_header_only
from unetinspect.presets import load_preset, load_preset_dict
from unetinspect.weights.inspect import inspect_weights, nearest_preset


@pytest.mark.parametrize("preset", ["sd21", "sdxl", "sdxl-refiner", "sd15-inpaint"])
def test_other_full_size_checkpoints_are_named_exactly(preset, tmp_path):
    config = load_preset_dict(preset)
    path = write_header_only(tmp_path / "model.safetensors", to_ldm(meta_shapes(config), config))
    report = inspect_weights(path)
    assert report.nearest_preset.name == preset and report.nearest_preset.exact
    assert [c.name for c in report.components] == ["UNet"]


def test_nearest_preset_names_the_differences():
    match = nearest_preset(load_preset("sd21").replace(sample_size=64, upcast_attention=False))
    assert (match.name, match.exact, match.differences) == ("sd21", False, ("sample_size", "upcast_attention"))
