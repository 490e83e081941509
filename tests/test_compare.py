"""Comparing two UNets block by block, and our model against diffusers'; the command: test_compare_cmd.py."""

from __future__ import annotations

import pytest

from unetinspect.views.compare import compare


def test_sd15_vs_sdxl_pairs_blocks_by_stage():
    result = compare("sd15", "sdxl")
    assert result.aligned_by == "stage"
    by_stage = {pair.stage: pair for pair in result.pairs}
    assert (by_stage["up 0"].a.path, by_stage["up 0"].b.path) == ("up_blocks.3", "up_blocks.2")
    assert by_stage["down 3"].b is None and by_stage["add_embedding"].a is None
    stages = [pair.stage for pair in result.pairs]
    assert stages.index("down 0") < stages.index("mid") < stages.index("up 3") < stages.index("up 0")
    went = result.where_params_went()
    assert went[0][0] == "up 2" and sum(share for _, _, share in went) > 0.9


def test_same_structure_pairs_by_path():
    result = compare("sd15", "sd15-inpaint")
    assert result.aligned_by == "path" and not result.identical
    differing = [pair.stage for pair in result.pairs if pair.differs]
    assert differing == ["conv_in"]  # 9 input channels instead of 4


def test_ours_matches_diffusers_block_by_block():
    pytest.importorskip("diffusers")
    result = compare("sdxl", impl="diffusers")
    assert result.identical and result.aligned_by == "path"
