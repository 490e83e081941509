"""The diagram's graph model, checked on its nodes and edges (not on pictures), and the ops the trace records."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from conftest import SMALL_CONFIGS, diffusers_unet

from unetinspect.configs.unet import UNetConfig
from unetinspect.engine.trace import trace_model
from unetinspect.errors import UnetInspectError
from unetinspect.render.graph import Style, dot_name, to_dot
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.resolve import resolve_source
from unetinspect.views.graph import build_graph, diagram_graph, kind_of, trace_for_diagram

SD15_BLOCKS = ["conv_in", *(f"down_blocks.{i}" for i in range(4)), "mid_block", *(f"up_blocks.{i}" for i in range(4)),
               "conv_norm_out", "conv_act", "conv_out"]


@pytest.fixture(scope="module")
def sd15_trace():
    return trace_for_diagram(resolve_source("sd15"))


@pytest.fixture(scope="module")
def sdxl_trace():
    return trace_for_diagram(resolve_source("sdxl"))


@pytest.fixture(scope="module")
def tiny_trace():
    return trace_for_diagram(resolve_source("tiny"))


def test_sd15_blocks_one_node_per_block_and_twelve_skips(sd15_trace):
    graph = build_graph(sd15_trace, "blocks", name="sd15")
    calls = [n.id for n in graph.nodes if n.on_path and n.kind not in ("input", "output")]
    assert calls == SD15_BLOCKS
    skips = graph.edges_of("skip")
    assert len(skips) == 12
    assert Counter(e.target for e in skips) == {f"up_blocks.{i}": 3 for i in range(4)}
    # conv_in's output is the first skip, so the last up block eats it
    assert [(e.source, e.name) for e in skips if e.target == "up_blocks.3"] == [
        ("conv_in", "res_hidden_states_tuple[0]"), ("down_blocks.0", "res_hidden_states_tuple[1]"),
        ("down_blocks.0", "res_hidden_states_tuple[2]")]
    assert {e.shape for e in skips if e.source == "down_blocks.3"} == {(1, 1280, 8, 8)}


def test_sd15_u_sides_and_levels(sd15_trace):
    graph = build_graph(sd15_trace, "blocks")
    node = {n.id: n for n in graph.nodes}
    assert {node[f"down_blocks.{i}"].side for i in range(4)} == {"down"}
    assert {node[f"up_blocks.{i}"].side for i in range(4)} == {"up"}
    assert node["mid_block"].side == "bottom"
    for k in range(4):  # each down level faces the up level it feeds
        assert node[f"down_blocks.{k}"].level == node[f"up_blocks.{3 - k}"].level
    assert node["input:sample"].level == node["output:out"].level  # input and output face each other on top
    assert node["conv_in"].level == node["conv_out"].level


def test_sd15_conditioning_goes_only_where_it_is_read(sd15_trace):
    graph = build_graph(sd15_trace, "blocks")
    temb = {e.target for e in graph.edges_of("condition") if e.name == "temb"}
    text = {e.target for e in graph.edges_of("condition") if e.name == "encoder_hidden_states"}
    assert {e.source for e in graph.edges_of("condition") if e.name == "temb"} == {"time_embedding"}
    assert temb == {b for b in SD15_BLOCKS if "blocks" in b or b == "mid_block"}
    # DownBlock2D and UpBlock2D are handed the text but never read it
    assert text == temb - {"down_blocks.3", "up_blocks.0"}
    conditioning = {n.id for n in graph.nodes if not n.on_path}
    assert conditioning == {"input:timestep", "input:encoder_hidden_states", "time_proj", "time_embedding"}


def test_sdxl_nine_skips_and_summed_embedding(sdxl_trace):
    graph = build_graph(sdxl_trace, "blocks", name="sdxl")
    assert len(graph.edges_of("skip")) == 9
    assert [n.id for n in graph.nodes if n.kind.endswith("block")] == [
        "down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1", "up_blocks.2"]
    (temb_source,) = {e.source for e in graph.edges_of("condition") if e.name == "temb"}
    assert graph.node(temb_source).type == "add"  # time embedding + the size/crop/pooled-text embedding
    assert {e.source for e in graph.edges if e.target == temb_source} == {"time_embedding", "add_embedding"}
    text_readers = {e.target for e in graph.edges_of("condition") if e.name == "encoder_hidden_states"}
    assert text_readers == {"down_blocks.1", "down_blocks.2", "mid_block", "up_blocks.0", "up_blocks.1"}


def test_sd15_layers_skips_enter_concats_beside_resnets(sd15_trace):
    graph = build_graph(sd15_trace, "layers")
    assert [c.id for c in graph.clusters] == [b for b in SD15_BLOCKS if "blocks" in b or b == "mid_block"]
    skips = graph.edges_of("skip")
    assert len(skips) == 12
    node = {n.id: n for n in graph.nodes}
    for edge in skips:
        concat = node[edge.target]
        assert concat.type == "cat" and concat.cluster.startswith("up_blocks.")
        (fed,) = [e.target for e in graph.edges if e.source == concat.id]
        assert node[fed].type == "ResnetBlock2D" and node[fed].cluster == concat.cluster
    sources = {e.source for e in skips}
    assert {"conv_in", "down_blocks.0.attentions.0", "down_blocks.0.downsamplers.0",
            "down_blocks.3.resnets.1"} <= sources
    # last in, first out: the first resnet of up_blocks.0 takes the last skip of down_blocks.3
    first = next(e for e in skips if e.target == "up_blocks.0/cat#1")
    assert first.source == "down_blocks.3.resnets.1"


def test_layers_level_sides_come_from_blocks(tiny_trace):
    graph = build_graph(tiny_trace, "layers")
    node = {n.id: n for n in graph.nodes}
    assert node["down_blocks.0.resnets.0"].side == "down"
    assert node["up_blocks.2.resnets.0"].side == "up"
    assert node["mid_block.attentions.0"].side == "bottom"
    assert node["down_blocks.0.resnets.0"].level == node["up_blocks.2.resnets.0"].level


def test_focus_resnet_shows_the_temb_add_and_the_shortcut(sd15_trace):
    graph = build_graph(sd15_trace, focus="down_blocks.1.resnets.0")
    assert graph.level == "focus" and graph.type == "ResnetBlock2D"
    short = {n.id: n.id.removeprefix("down_blocks.1.resnets.0").lstrip(".") for n in graph.nodes}
    edges = {(short[e.source], short[e.target]) for e in graph.edges}
    assert {("input:input_tensor", "norm1"), ("norm1", "nonlinearity"), ("nonlinearity", "conv1"),
            ("input:temb", "nonlinearity#2"), ("nonlinearity#2", "time_emb_proj"), ("time_emb_proj", "/add#1"),
            ("conv1", "/add#1"), ("/add#1", "norm2"), ("input:input_tensor", "conv_shortcut"),
            ("conv_shortcut", "/add#2"), ("conv2", "/add#2"), ("/div#1", "output:out")} <= edges
    assert graph.node("down_blocks.1.resnets.0.time_emb_proj").on_path is False  # the time path conditions


def test_focus_transformer_has_self_and_cross_attention(sd15_trace):
    graph = build_graph(sd15_trace, focus="mid_block.attentions.0")
    clusters = {c.id.removeprefix("mid_block.attentions.0.") for c in graph.clusters}
    assert {"transformer_blocks.0", "transformer_blocks.0.attn1", "transformer_blocks.0.attn2",
            "transformer_blocks.0.ff"} <= clusters
    text = "input:encoder_hidden_states"
    readers = {e.target.rsplit(".", 1)[-1] for e in graph.edges if e.source == text}
    assert readers == {"to_k", "to_v"}  # of attn2 only: keys and values from the text
    assert sum(n.type == "scaled_dot_product_attention" for n in graph.nodes) == 2


def test_unknown_focus_and_level_are_one_line_errors(tiny_trace):
    with pytest.raises(UnetInspectError, match="no module 'down_blocks.9'"):
        build_graph(tiny_trace, focus="down_blocks.9")
    with pytest.raises(UnetInspectError, match="unknown level"):
        build_graph(tiny_trace, "everything")  # type: ignore[arg-type]


def test_node_ids_are_stable_across_runs_and_configs(tiny_trace):
    graph = build_graph(tiny_trace, "blocks")
    first = to_dot(graph)
    assert first == to_dot(build_graph(trace_for_diagram(resolve_source("tiny")), "blocks"))
    other = to_dot(build_graph(trace_for_diagram(config_source(UNetConfig.from_dict(SMALL_CONFIGS["sd21-like"]))),
                               "blocks"))
    node_ids = re.compile(r'^\t+(?!(?:graph|node|edge) )"?([^"\s]+)"? \[', re.M)  # one statement a line
    assert sorted(node_ids.findall(first)) == sorted(dot_name(n.id) for n in graph.nodes)
    assert node_ids.findall(first) == node_ids.findall(other)  # so a diff shows only what changed in them


@pytest.mark.parametrize("name", ["sd15-like", "sdxl-like", "class-and-extras", "class-projection-concat"])
def test_every_small_config_has_one_skip_per_down_residual(name):
    config = UNetConfig.from_dict(SMALL_CONFIGS[name])
    trace = trace_for_diagram(config_source(config))
    residuals = 1 + sum(config.layers_per_block_list) + config.num_blocks - 1  # conv_in, resnets, downsamplers
    assert len(build_graph(trace, "blocks").edges_of("skip")) == residuals
    assert len(build_graph(trace, "layers").edges_of("skip")) == residuals


def test_diagram_graph_is_named_after_its_source():
    graph = diagram_graph("tiny", InputSpec(height=64, width=64), level="layers")
    assert (graph.name, graph.scope, graph.type, graph.level) == ("tiny", "", "UNet2DConditionModel", "layers")
    assert graph.node("input:sample").shape == (1, 4, 8, 8)


def test_diffusers_model_gives_the_same_graph():
    """The graph comes from the trace, so diffusers' own UNet draws the same."""
    config = SMALL_CONFIGS["sd15-like"]
    model = diffusers_unet(config)
    src = config_source(UNetConfig.from_dict(config))
    inputs = make_inputs(src.config, InputSpec())
    theirs = build_graph(trace_model(model, inputs, record_ops=True), "layers")
    ours = build_graph(trace_for_diagram(src), "layers")
    assert [(e.source, e.target, e.shape) for e in theirs.edges_of("skip")] == \
        [(e.source, e.target, e.shape) for e in ours.edges_of("skip")]


def test_ops_are_recorded_only_on_request(tiny_trace):
    src = resolve_source("tiny")
    from unetinspect.sources.loading import load_unet

    model = load_unet(src, device="meta")
    plain = trace_model(model, make_inputs(src.config, InputSpec(), device="meta"))
    assert plain.ops == []
    cats = [op for op in tiny_trace.ops if op.name == "cat"]
    assert len(cats) == 9 and all(tiny_trace.records[op.parent].path.startswith("up_blocks.") for op in cats)
    leaves = {r.index for r in tiny_trace.records if not r.children}
    assert not any(op.parent in leaves for op in tiny_trace.ops)  # a leaf's work is its call's


def test_kind_of_tells_blocks_apart():
    assert kind_of("CrossAttnDownBlock2D") == kind_of("CrossAttnUpBlock2D") == "attn_block"
    assert kind_of("DownBlock2D") == kind_of("UpBlock2D") == "res_block"
    assert kind_of("UNetMidBlock2DCrossAttn") == "mid_block"
    assert kind_of("Transformer2DModel") == "attention"
    assert kind_of("Something") == "other"


@pytest.mark.parametrize("names,kind", [
    (("SimpleCrossAttnDownBlock2D", "SimpleCrossAttnUpBlock2D"), "simple_attn_block"),
    (("AttnDownBlock2D", "AttnUpBlock2D"), "self_attn_block"),
    (("ResnetDownsampleBlock2D", "ResnetUpsampleBlock2D"), "resample_block"),
    (("KDownBlock2D", "KUpBlock2D"), "k_block"),
    (("KCrossAttnDownBlock2D", "KCrossAttnUpBlock2D"), "k_attn_block"),
    (("UNetMidBlock2DCrossAttn", "UNetMidBlock2DSimpleCrossAttn"), "mid_block"),
    (("UNetMidBlock2D",), "mid_plain_block"),
    (("DualTransformer2DModel",), "dual_attention"),
    (("ResnetBlockCondNorm2D", "ResnetBlock2D"), "resnet"),
    (("KAttentionBlock", "GatedSelfAttentionDense", "Attention"), "attention"),
    (("KDownsample2D", "KUpsample2D", "Downsample2D"), "resample"),
    (("GaussianFourierProjection", "TextImageProjection", "ImageHintTimeEmbedding", "TextTimeEmbedding"), "embedding"),
    (("AdaGroupNorm",), "norm"),
])
def test_kind_of_knows_every_family_s_blocks(names, kind):
    assert {kind_of(name) for name in names} == {kind}


def test_legend_names_the_kinds_of_block_drawn(tiny_trace):
    blocks = to_dot(build_graph(tiny_trace, "blocks"))
    assert "resnets + transformers (self- and cross-attention)" in blocks and "middle: resnets" in blocks
    assert "simple cross-attention" not in blocks  # only what is drawn
    assert "down- / upsampler" in to_dot(build_graph(tiny_trace, "layers"))


def test_dot_options_drop_shapes_and_params(tiny_trace):
    graph = build_graph(tiny_trace, "blocks")
    full = to_dot(graph)
    bare = to_dot(graph, Style(shapes=False, params=False, theme="dark", direction="LR"))
    assert "1×32×16×16" in full and "1×32×16×16" not in bare
    assert " params" in full and " params" not in bare
    assert "rankdir=LR" in bare and "#16181d" in bare


def config_source(config: UNetConfig):
    """A Source for an in-memory config, as a config.json would give."""
    from unetinspect.sources.resolve import Source

    return Source("config.json", "config", config)
