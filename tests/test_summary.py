"""The summary of a model: shapes, skips and parameters per module; the command is tested in test_summary_cmd.py."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL_CONFIGS, our_unet, save_folder

from unetinspect.errors import WeightsError
from unetinspect.sources.inputs import InputSpec
from unetinspect.views.summary import summarize


def test_skip_connections_are_visible():
    rows = {row.path: row for row in summarize("sd15").rows(1)}
    assert [name for name, _ in rows["up_blocks.3"].skips] == ["conv_in", "down_blocks.0", "down_blocks.0"]
    assert [name for name, _ in rows["up_blocks.0"].skips] == ["down_blocks.2", "down_blocks.3", "down_blocks.3"]
    assert sum(len(r.skips) for r in rows.values()) == 12  # one per down-block residual
    assert not rows["down_blocks.1"].skips


def test_cpu_device_gives_the_same_numbers_as_meta():
    on_meta = summarize("tiny", InputSpec())
    on_cpu = summarize("tiny", InputSpec(), device="cpu")
    assert on_cpu.trace.flops == on_meta.trace.flops
    assert [r.outputs for r in on_cpu.rows(2)] == [r.outputs for r in on_meta.rows(2)]


def test_weights_folder_is_checked_from_the_header(tmp_path):
    reference = our_unet(SMALL_CONFIGS["sd15-like"])
    save_folder(reference, tmp_path)
    result = summarize(str(tmp_path))
    assert result.setup.weight_dtypes == ("F32",) and "weights F32" in result.setup.weights
    assert result.trace.total_params == sum(p.numel() for p in reference.parameters())

    config = json.loads((tmp_path / "config.json").read_text())
    config["cross_attention_dim"] = 24  # same keys, other shapes
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="has shape .* needs"):  # the command's one line: test_bad_input.py
        summarize(str(tmp_path))
