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


def test_a_difference_that_grew_in_some_blocks_and_shrank_in_others_says_which():
    """It read "B has 170.3k fewer parameters: 256% in up 1 (-436.8k), -92% in up 0 (157.4k)": shares of a net
    difference. Now where it grew and where it shrank, each block's change as diffusers' own modules count it."""
    from conftest import diffusers_unet, tiny

    from unetinspect.render.compare_view import CompareView
    from unetinspect.render.units import human_count

    a, b = tiny(), tiny(block_out_channels=[48, 32, 64])
    line = dict(CompareView().totals(compare(a, b)))["difference"]
    ours, theirs = diffusers_unet(a), diffusers_unet(b)

    def change(path: str) -> int:
        count = [sum(p.numel() for p in m.get_submodule(path).parameters()) for m in (ours, theirs)]
        return count[1] - count[0]

    net = sum(p.numel() for p in theirs.parameters()) - sum(p.numel() for p in ours.parameters())
    assert net < 0 and change("up_blocks.1") < 0 < change("up_blocks.2")
    assert line == (f"B has {human_count(-net)} fewer parameters in all: fewer in up_blocks.1 "
                    f"(−{human_count(-change('up_blocks.1'))}), down_blocks.1 (−{human_count(-change('down_blocks.1'))}); "
                    f"more in up_blocks.2 (+{human_count(change('up_blocks.2'))})")
    assert "%" not in line


def test_profile_times_an_image_unet_beside_a_video_one_at_the_sizes_each_was_traced():
    """--frames sizes the video side alone: the comparison drops it for the image side, and the timing must too
    (it was refused there: "--frames 2 sizes a video UNet, and this is an image UNet")."""
    from test_video import SMALL_SVD

    from unetinspect.sources.inputs import InputSpec

    svd = {"_class_name": "UNetSpatioTemporalConditionModel", **SMALL_SVD}
    result = compare("tiny", svd, InputSpec(frames=2, height=64, width=64), profile=True, profile_device="cpu",
                     repeat=1, warmup=0)
    assert result.step_ms is not None and all(ms > 0 for ms in result.step_ms)
    assert result.b.setup.sizes.frames == 2 and result.a.setup.sizes.frames is None
