"""`diagram --controlnet`: the UNet's U as without ControlNets, each ControlNet beside it, and one residual edge
into every skip and into the mid block, found from the adds in the trace."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_CONFIGS

from unetinspect.configs.unet import UNetConfig
from unetinspect.models.controlnet import ControlNetModel
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.render.graph import to_dot
from unetinspect.views.graph import diagram_graph


@pytest.fixture(scope="module")
def controlnets(tmp_path_factory):
    """Two original single-file ControlNets for the tiny config (no weights are read: the graph is traced on meta)."""
    from ldm_files import to_ldm_controlnet
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("controlnets")
    controlnet = ControlNetModel.from_unet(UNet2DConditionModel(UNetConfig.from_dict(SMALL_CONFIGS["sd15-like"])))
    state = {k: torch.zeros(v.shape) for k, v in controlnet.state_dict().items()}
    paths = (folder / "a.safetensors", folder / "b.safetensors")
    for path in paths:
        save_file(to_ldm_controlnet(state, controlnet.config.to_dict()), path)
    return paths


def skip_senders(graph) -> list[str]:
    """Where the skips leave, without the model's prefix: the outputs a ControlNet's residuals are added to."""
    return sorted(e.source.removeprefix("unet.") for e in graph.edges_of("skip"))


@pytest.mark.parametrize("count", [1, 2])
def test_residual_edges_reach_every_skip_and_the_mid_block(controlnets, count):
    graph = diagram_graph("tiny", controlnets=controlnets[:count])
    plain = diagram_graph("tiny")
    names = [f"controlnets.{k}" for k in range(count)]
    assert [n.id for n in graph.nodes if n.kind == "controlnet"] == names
    assert graph.scope == "unet" and graph.type == "UNet2DConditionModel"
    # the U is drawn as without ControlNets: same blocks, sides, levels and skips
    assert [(n.id.removeprefix("unet."), n.side, n.level) for n in graph.nodes if n.kind != "controlnet"] == \
        [(n.id, n.side, n.level) for n in plain.nodes]
    assert skip_senders(graph) == skip_senders(plain)
    control = graph.edges_of("control")
    for name in names:  # each ControlNet adds one residual per skip (9 in tiny) and one to the mid block's output
        mine = [e for e in control if e.source == name]
        assert sorted(e.target.removeprefix("unet.") for e in mine if e.name != "mid_block_additional_residual") \
            == skip_senders(plain)
        mid = [e for e in mine if e.name == "mid_block_additional_residual"]
        assert [e.target for e in mid] == ["unet.mid_block"] and mid[0].shape == graph.node("unet.mid_block").shape
    skip_shapes = sorted(e.shape for e in graph.edges_of("skip"))
    assert sorted(e.shape for e in control if e.source == "controlnets.0" and e.name.startswith("down")) == \
        skip_shapes


def test_layers_level_and_dot_render(controlnets):
    graph = diagram_graph("tiny", level="layers", controlnets=controlnets[:1])
    control = graph.edges_of("control")
    assert len(control) == 10 and {e.target.split(".")[1] for e in control} >= {"down_blocks", "mid_block"}
    assert not [n for n in graph.nodes if n.type == "input" and "residual" in n.id]
    dot = to_dot(graph)
    assert '"controlnets.0" -> "unet.mid_block.' in dot and 'class=control' in dot


def test_cli_draws_the_controlnets(controlnets, invoke, tmp_path):
    out = tmp_path / "step.dot"
    result = invoke("diagram", "tiny", "--controlnet", str(controlnets[0]), "--controlnet", str(controlnets[1]),
                    "-o", str(out))
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert '"controlnets.1" [' in text and "ControlNet residuals" in text
    wrong = invoke("diagram", "tiny", "--controlnet", "sd15", "-o", str(tmp_path / "x.dot"))
    assert wrong.exit_code == 1 and "not a ControlNet" in wrong.output and not (tmp_path / "x.dot").exists()


def test_summary_sees_the_skips_through_the_residual_adds(controlnets):
    from unetinspect.views.summary import summarize

    def up_skips(summary, prefix: str = ""):
        return {r.path.removeprefix(prefix): [(name.removeprefix(prefix), shape) for name, shape in r.skips]
                for r in summary.rows(2) if r.path.removeprefix(prefix).startswith("up_blocks.") and r.path.count(".")
                == prefix.count(".") + 1}

    plain = up_skips(summarize("tiny"))
    assert up_skips(summarize("tiny", controlnets=controlnets), "unet.") == plain
    assert all(len(skips) == 3 for skips in plain.values())  # tiny: 3 skips into each up block
