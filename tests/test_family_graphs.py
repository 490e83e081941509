"""Diagrams of the other families' blocks (IF/Kandinsky/unCLIP, k-diffusion, attention-only, dual transformers):
every block gets its kind, and the U still has one skip per down residual at both levels."""

from __future__ import annotations

import pytest
from conftest import tiny

from unetinspect.configs.unet import UNetConfig
from unetinspect.render.graph import to_dot
from unetinspect.sources.resolve import Source
from unetinspect.views.graph import build_graph, trace_for_diagram

# Shrunk configs of each family, as diffusers' own tests shrink them.
FAMILY_CONFIGS: dict[str, dict] = {
    "if-like": tiny(
        act_fn="gelu", addition_embed_type="text", addition_embed_type_num_heads=2, attention_head_dim=8,
        block_out_channels=[32, 64, 64], cross_attention_dim=32, cross_attention_norm="group_norm",
        down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
        up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", encoder_hid_dim=16, in_channels=3, out_channels=6,
        resnet_time_scale_shift="scale_shift", time_embedding_act_fn="gelu", resnet_skip_time_act=True,
    ),
    "kandinsky-2.2-like": tiny(
        addition_embed_type="image", encoder_hid_dim_type="image_proj", encoder_hid_dim=16, attention_head_dim=8,
        block_out_channels=[32, 64, 64], cross_attention_dim=32,
        down_block_types=["ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"],
        up_block_types=["SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"],
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", out_channels=8, resnet_time_scale_shift="scale_shift",
    ),
    "k-upscaler-like": tiny(
        act_fn="gelu", attention_head_dim=8, norm_num_groups=None, block_out_channels=[32, 32, 64, 64],
        time_cond_proj_dim=16, conv_in_kernel=1, conv_out_kernel=1, cross_attention_dim=32,
        down_block_types=["KDownBlock2D", *["KCrossAttnDownBlock2D"] * 3],  # k-blocks need 4 levels, as in diffusers
        up_block_types=[*["KCrossAttnUpBlock2D"] * 3, "KUpBlock2D"], mid_block_type=None,
        in_channels=8, out_channels=5, resnet_time_scale_shift="scale_shift", time_embedding_type="fourier",
        timestep_post_act="gelu",
    ),
    "attention-only": tiny(
        down_block_types=["AttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "AttnUpBlock2D"], mid_block_type="UNetMidBlock2D",
    ),
    "dual-transformer": tiny(dual_cross_attention=True),
}

BLOCK_KINDS = {
    "if-like": (["resample_block", "simple_attn_block", "simple_attn_block"], "mid_block"),
    "kandinsky-2.2-like": (["resample_block", "simple_attn_block", "simple_attn_block"], "mid_block"),
    "k-upscaler-like": (["k_block", "k_attn_block", "k_attn_block", "k_attn_block"], None),
    "attention-only": (["self_attn_block", "attn_block", "res_block"], "mid_plain_block"),
    "dual-transformer": (["attn_block", "attn_block", "res_block"], "mid_block"),
}


@pytest.fixture(scope="module", params=list(FAMILY_CONFIGS))
def family(request):
    config = UNetConfig.from_dict(FAMILY_CONFIGS[request.param])
    return request.param, config, trace_for_diagram(Source("config.json", "config", config))


def test_blocks_get_their_family_s_kinds(family):
    name, config, trace = family
    graph = build_graph(trace, "blocks")
    kinds = {n.id: n.kind for n in graph.nodes}
    down, mid = BLOCK_KINDS[name]
    assert [kinds[f"down_blocks.{i}"] for i in range(config.num_blocks)] == down
    assert [kinds[f"up_blocks.{i}"] for i in range(config.num_blocks)] == [
        kind for kind in reversed(down)]  # the up path mirrors the down path here
    assert kinds.get("mid_block") == mid


def test_one_skip_per_down_residual_at_both_levels(family):
    """k-diffusion blocks hand on one skip per block, not one per layer: the deepest has none, and each other up
    block concatenates the one of the level it faces."""
    name, config, trace = family
    residuals = 1 + sum(config.layers_per_block_list) + config.num_blocks - 1  # conv_in, resnets, downsamplers
    if name == "k-upscaler-like":
        residuals = config.num_blocks - 1
        skips = build_graph(trace, "blocks").edges_of("skip")
        assert sorted((e.source, e.target) for e in skips) == [
            (f"down_blocks.{i}", f"up_blocks.{config.num_blocks - 1 - i}") for i in range(config.num_blocks - 1)]
    assert len(build_graph(trace, "blocks").edges_of("skip")) == residuals
    assert len(build_graph(trace, "layers").edges_of("skip")) == residuals


def test_layers_level_names_the_blocks_and_layers_in_the_legend(family):
    name, _, trace = family
    graph = build_graph(trace, "layers")
    dot = to_dot(graph)
    expected = {"if-like": ["simple cross-attention", "resampling with a resnet"],
                "kandinsky-2.2-like": ["&nbsp;image&nbsp;", "image → "],  # image tokens, not text
                "k-upscaler-like": ["k-diffusion resnets + attention"],
                "attention-only": ["resnets + self-attention", "middle: resnets (+ self-attention)"],
                "dual-transformer": ["two transformers, one per text"]}[name]
    assert all(label in dot for label in expected)
    if name == "if-like":  # its resampler is a resnet, drawn as one
        assert graph.node("down_blocks.0.downsamplers.0").kind == "resnet"
