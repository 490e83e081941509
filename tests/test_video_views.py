"""Video UNets in every view: what each view says of SVD and AnimateDiff is what they are (an image embedding for
SVD's context, motion modules' buffers not counted as parameters, …), checked against diffusers' own modules."""

from __future__ import annotations

import pytest


def test_svds_context_is_an_image_embedding_of_one_token(invoke):
    """The header said "text 1 tokens" for SVD, whose context is the CLIP image embedding of the first frame."""
    result = invoke("summary", "svd", "--latent", "8", "--frames", "2")
    assert result.exit_code == 0, result.output
    heading = result.stdout.splitlines()[0]
    assert "image embedding, 1 token" in heading and "text" not in heading
    result = invoke("summary", "tiny", "--text-len", "1")
    assert "text 1 token ·" in result.stdout.splitlines()[0]


def _saved(model, folder):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    return folder


def test_weights_of_an_animatediff_unet_count_parameters_not_buffers(tmp_path, invoke):
    """The motion modules' position tables (`pos_embed.pe`) are saved buffers: they were counted as parameters
    (1,980,836 against diffusers' 1,963,428), and the nearest preset was sd15, not an AnimateDiff one."""
    import json

    import torch
    from test_video import SMALL_ADAPTER, SMALL_SVD, SMALL_UNET

    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    motion = diffusers.UNetMotionModel.from_unet2d(diffusers.UNet2DConditionModel(**SMALL_UNET),
                                                   diffusers.MotionAdapter(**SMALL_ADAPTER))
    svd = diffusers.UNetSpatioTemporalConditionModel(**SMALL_SVD)
    for model, preset in ((motion, "animatediff"), (svd, "svd")):
        folder = _saved(model, tmp_path / preset)
        result = invoke("weights", folder, "-f", "json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        truth = sum(p.numel() for p in model.parameters())
        assert [p["params"] for p in data["components"]] == [truth]
        assert sum(b["params"] for b in data["blocks"]) == truth
        assert data["nearest_preset"]["name"] == preset


def test_the_saved_buffer_rule_names_every_buffer_and_no_parameter():
    """SAVED_BUFFER (what weights does not count) against the models themselves: their state-dict keys that are
    not parameters."""
    from test_video import SMALL_ADAPTER, SMALL_SVD, SMALL_UNET

    from unetinspect.configs.unet import UNetConfig
    from unetinspect.configs.video import MotionAdapterConfig, SVDConfig
    from unetinspect.models.motion import MotionAdapter, UNetMotionModel
    from unetinspect.models.svd import UNetSpatioTemporalConditionModel
    from unetinspect.models.unet import UNet2DConditionModel
    from unetinspect.views.weights import SAVED_BUFFER

    unet = UNet2DConditionModel(UNetConfig.from_dict(SMALL_UNET))
    motion = UNetMotionModel.from_unet2d(unet, MotionAdapter(MotionAdapterConfig.from_dict(SMALL_ADAPTER)))
    found = []
    for model in (motion, unet, UNetSpatioTemporalConditionModel(SVDConfig.from_dict(SMALL_SVD))):
        parameters = dict(model.named_parameters())
        buffers = {k for k in model.state_dict() if k not in parameters}
        assert {k for k in model.state_dict() if SAVED_BUFFER.search(k)} == buffers
        found.append(len(buffers))
    assert found[0] > 0 and found[1:] == [0, 0]


@pytest.mark.parametrize("kind", ["cross", "self"])
def test_attention_maps_of_a_video_unet_frame_by_frame(kind):
    """A video UNet's maps, per frame and averaged over frames (they were refused: "the 4-d sample"). The truth:
    diffusers' AnimateDiff UNet with its motion modules silenced (proj_out zero: each adds nothing) runs every
    frame as its base UNet runs it as an image; the base's maps of the frames, as a batch, are the frames' maps."""
    import torch
    from test_video import SMALL_ADAPTER, SMALL_UNET

    import unetinspect as ui

    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(**SMALL_UNET).eval()
    motion = diffusers.UNetMotionModel.from_unet2d(unet, diffusers.MotionAdapter(**SMALL_ADAPTER)).eval()
    with torch.no_grad():
        for name, param in motion.named_parameters():
            if ".motion_modules." in name and ".proj_out." in name:
                param.zero_()
    frames, text = 3, torch.randn(1, 5, 32)
    video = torch.randn(1, 4, frames, 8, 8)
    options = dict(kind=kind, query=(3, 5) if kind == "self" else None)
    text = text.repeat(frames, 1, 1)  # one row per frame, as AnimateDiff's pipelines pass it
    maps = ui.attention_maps(motion, {"sample": video, "timestep": 10, "encoder_hidden_states": text}, **options)
    images = video.permute(0, 2, 1, 3, 4).reshape(frames, 4, 8, 8)
    truth = ui.attention_maps(unet, {"sample": images, "timestep": 10, "encoder_hidden_states": text}, **options)
    assert maps.frames is not None and set(maps.frames) == set(truth.layers) and truth.layers
    for path, layer in truth.layers.items():
        assert maps.frames[path].shape == (1, frames, *layer.shape[1:])
        torch.testing.assert_close(maps.frames[path][0], layer, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(maps.layers[path][0], layer.mean(0), atol=1e-5, rtol=1e-4)
    assert "the mean of 3 frames" in maps.batch_note


def test_watch_records_attention_over_a_video_unet():
    """`watch(pipe.unet, attention=True)` raised mid-pipeline on a video UNet: now one step per call."""
    import torch
    from test_video import SMALL_SVD

    import unetinspect as ui

    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    svd = diffusers.UNetSpatioTemporalConditionModel(**SMALL_SVD).eval()
    inputs = {"sample": torch.randn(1, 3, 8, 8, 8), "timestep": 10, "encoder_hidden_states": torch.randn(1, 1, 32),
              "added_time_ids": torch.randn(1, 3)}
    with torch.no_grad(), ui.watch(svd, attention=True) as w:
        svd(**inputs)
        svd(**inputs)
    maps = w.attention.mean()
    assert maps.steps == 2 and maps.frames is not None
    assert all(m.shape[:2] == (1, 3) for m in maps.frames.values())
    assert not any("temporal" in path for path in maps.layers)


def test_a_motion_adapter_is_read_on_its_own(tmp_path, invoke):
    """A MotionAdapter folder was refused ("builds UNet2DConditionModel only") and its lone file called a "unet":
    now a motion adapter, its parameters per motion module as diffusers' own MotionAdapter counts them."""
    import json

    import torch
    from test_video import SMALL_ADAPTER

    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    adapter = diffusers.MotionAdapter(**SMALL_ADAPTER)
    folder = _saved(adapter, tmp_path / "adapter")
    modules = {f"{name}.motion_modules.{i}": sum(p.numel() for p in module.parameters())
               for blocks, prefix in ((adapter.down_blocks, "down_blocks"), (adapter.up_blocks, "up_blocks"))
               for index, block in enumerate(blocks)
               for name in [f"{prefix}.{index}"] for i, module in enumerate(block.motion_modules)}
    if adapter.mid_block is not None:
        modules |= {f"mid_block.motion_modules.{i}": sum(p.numel() for p in m.parameters())
                    for i, m in enumerate(adapter.mid_block.motion_modules)}
    for path in (folder, folder / "diffusion_pytorch_model.safetensors"):
        result = invoke("weights", path, "-f", "json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["file_kind"] == "motion adapter"
        assert [p["params"] for p in data["components"]] == [sum(p.numel() for p in adapter.parameters())]
        assert {b["name"]: b["params"] for b in data["blocks"]} == modules
    table = invoke("weights", folder).stdout
    assert "parameters per motion module" in table and "kind motion adapter" in table


def _svd_graphs(level):
    """The diagram of a small SVD as our model and as diffusers' own module run it (a live source)."""
    import torch
    from test_video import SMALL_SVD

    from unetinspect.configs.video import SVDConfig
    from unetinspect.sources.resolve import Source
    from unetinspect.views.graph import diagram_graph

    diffusers = pytest.importorskip("diffusers")
    ours = diagram_graph(Source("config.json", "config", SVDConfig.from_dict(SMALL_SVD)), level=level)
    torch.manual_seed(0)
    theirs = diagram_graph(diffusers.UNetSpatioTemporalConditionModel(**SMALL_SVD), level=level)
    return ours, theirs


@pytest.mark.parametrize("level", ["blocks", "layers"])
def test_the_svd_diagram_draws_skips_as_skips_and_conditioning_as_conditioning(level):
    """SVD's time embedding (repeated per frame) was drawn as dashed skip edges into every block, through a
    `sample → new_zeros → concat → add_embedding` chain and tags such as "1 → 1 cat": `sample.new_zeros` reads
    the latent's shape, not its values, and the empty text it makes carries nothing."""
    from test_video import SMALL_SVD

    from unetinspect.render.graph import to_dot

    for graph in _svd_graphs(level):
        layers = SMALL_SVD["layers_per_block"] * len(SMALL_SVD["block_out_channels"])
        residuals = 1 + layers + len(SMALL_SVD["block_out_channels"]) - 1  # conv_in, resnets, downsamplers
        skips = graph.edges_of("skip")
        assert len(skips) == residuals
        assert all(graph.node(e.source).side == "down" and graph.node(e.target).side == "up" for e in skips)
        assert not any(n.type in ("new_zeros", "cat") for n in graph.nodes if not n.on_path)
        conditioning = {n.id for n in graph.nodes if not n.on_path}
        assert {"time_embedding", "add_embedding", "input:encoder_hidden_states"} <= conditioning
        assert all(e.kind == "condition" for e in graph.edges
                   if e.source in conditioning and e.target not in conditioning)
        outputs = [n for n in graph.nodes if n.kind == "output"]
        assert outputs and all(n.on_path for n in outputs)  # reshaped back to frames after conv_out: still on it
        dot = to_dot(graph)
        assert "&nbsp;image&nbsp;" in dot and "image-only flag" in dot  # a CLIP image embedding, not text
        assert "→ 1 cat" not in dot and "&nbsp;text&nbsp;" not in dot


def test_our_svd_and_diffusers_own_give_the_same_diagram():
    ours, theirs = _svd_graphs("blocks")

    def edges(graph):  # diffusers returns an output object: its tensor is `out.sample`
        return {(e.source, e.target.removesuffix(".sample"), e.kind) for e in graph.edges}

    assert edges(ours) == edges(theirs)


def test_animatediff_blocks_are_coloured_as_blocks_with_motion_modules():
    """They were drawn in the gray of an unknown module, with nothing in the legend."""
    from unetinspect.render.graph import to_dot
    from unetinspect.sources.inputs import InputSpec
    from unetinspect.views.graph import diagram_graph

    graph = diagram_graph("animatediff", InputSpec(latent=(8, 8), frames=2))
    kinds = {n.id: n.kind for n in graph.nodes}
    assert kinds["down_blocks.0"] == "motion_attn_block" and kinds["down_blocks.3"] == "motion_block"
    assert kinds["mid_block"] == "motion_mid_block" and kinds["up_blocks.0"] == "motion_block"
    assert "resnets + transformers + motion modules" in to_dot(graph)
