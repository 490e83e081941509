"""The user's own object as a source: our UNet, diffusers' UNet, a pipeline's `.unet`, any module with `inputs=`;
and `impl="diffusers"`: the same source run by diffusers' class."""

from __future__ import annotations

import types

import pytest
import torch
from conftest import diffusers_unet, tiny
from torch import nn

import unetinspect as ui
from unetinspect.errors import RunError, SourceError
from unetinspect.sources.live import REBUILT_NOTE, left_as_found, open_live
from unetinspect.sources.twin import as_diffusers

FAST = dict(warmup=0, repeat=1)


@pytest.fixture(scope="module")
def preset_profile():
    return ui.profile("tiny", **FAST)


def state_of(model: nn.Module) -> tuple:
    """Everything a view must leave as it found it."""
    return ([m.training for m in model.modules()],
            [(p.data_ptr(), p.dtype, p.device, p.requires_grad) for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()])


def test_profile_times_a_diffusers_unet_object_and_leaves_it_as_found(preset_profile):
    pytest.importorskip("diffusers")
    model = diffusers_unet(tiny())
    model.train()
    model.conv_in.weight.requires_grad_(False)
    model.register_forward_hook(lambda *args: None)
    before = state_of(model)
    result = ui.profile(model, **FAST)
    assert state_of(model) == before
    assert result.setup.model_type == "UNet2DConditionModel" and "your object" in result.setup.label
    assert (result.setup.kind, result.setup.impl, result.setup.weights) == ("module", "diffusers", "its own weights")
    assert result.totals.flops == preset_profile.totals.flops
    assert [(b.name, b.params, b.flops) for b in result.blocks] == \
        [(b.name, b.params, b.flops) for b in preset_profile.blocks]
    assert sum(b.params for b in result.blocks) == sum(p.numel() for p in model.parameters())


def test_profile_of_our_own_unet_object_and_of_a_pipeline(tiny_pipeline, preset_profile):
    ours = ui.load_unet("tiny")
    assert ui.profile(ours, **FAST).totals.flops == preset_profile.totals.flops
    result = ui.profile(tiny_pipeline, **FAST)
    assert result.setup.label == "UNet2DConditionModel of StableDiffusionPipeline (your object)"
    assert result.totals.flops == preset_profile.totals.flops


def test_a_live_model_is_timed_where_it_is():
    model = ui.load_unet("tiny")
    with pytest.raises(RunError, match="on cpu in float32; it runs where it is, not on cpu in float16"):
        ui.profile(model, dtype="fp16", **FAST)
    assert next(model.parameters()).dtype == torch.float32


def test_any_module_with_inputs_is_profiled_by_its_own_calls():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    result = ui.profile(model, inputs={"input": torch.zeros(3, 8)}, **FAST)
    assert [b.name for b in result.blocks] == ["0", "1", "2"]
    assert result.totals.flops == 2 * 3 * (8 * 16 + 16 * 4)
    with pytest.raises(RunError, match="has no UNet config to make inputs from"):
        ui.profile(model, **FAST)


def test_a_sweep_of_a_module_without_config_is_a_clear_error():
    """A sweep makes each size's inputs from the config; a module of no family of ours has only the inputs= it came
    with, so sweeping it (timed or in memory) is refused in one line, not an AttributeError on its missing config."""
    from unetinspect.views.memory import memory_sweep

    model, inputs = nn.Sequential(nn.Linear(8, 4)), {"input": torch.zeros(3, 8)}
    specs = [("one", ui.InputSpec()), ("two", ui.InputSpec(batch=2))]
    refused = "a Sequential has no UNet config to make inputs of other sizes from"
    with pytest.raises(RunError, match=refused):
        ui.sweep(model, specs, inputs=inputs, device="cpu", max_seconds=None, **FAST)
    with pytest.raises(RunError, match=refused):
        memory_sweep(model, specs, inputs=inputs, device="cpu")


def test_our_model_whose_config_was_replaced_is_a_clear_error():
    model = ui.load_unet("tiny", device="meta")
    model.config = {"in_channels": 4}
    with pytest.raises(RunError, match=r"a UNet2DConditionModel's .config is dict \{'in_channels': 4\}, not its "
                                       "UNetConfig"):
        ui.summarize(model)


def test_what_is_not_a_model_is_a_clear_error():
    with pytest.raises(SourceError, match=r"cannot open SimpleNamespace namespace\(unet=1\) as a source"):
        ui.profile(types.SimpleNamespace(unet=1), **FAST)
    with pytest.raises(RunError, match="inputs= is for a live module"):
        ui.profile("tiny", inputs={}, **FAST)


def test_impl_diffusers_profiles_diffusers_class_on_the_same_weights(preset_profile):
    pytest.importorskip("diffusers")
    result = ui.profile("tiny", impl="diffusers", **FAST)
    assert (result.setup.label, result.setup.impl) == ("tiny", "diffusers")
    assert result.totals.flops == preset_profile.totals.flops
    with pytest.raises(RunError, match="unknown --impl 'theirs'"):
        ui.profile("tiny", impl="theirs", **FAST)
    with pytest.raises(RunError, match="a Sequential is not one"):
        ui.profile(nn.Sequential(nn.Linear(2, 2)), inputs={"input": torch.zeros(1, 2)}, impl="diffusers", **FAST)


def test_as_diffusers_shares_our_weights_and_gives_our_output():
    pytest.importorskip("diffusers")
    ours = ui.load_unet("tiny")
    theirs = as_diffusers(ours)
    assert {n: p.data_ptr() for n, p in theirs.named_parameters()} == \
        {n: p.data_ptr() for n, p in ours.named_parameters()}
    inputs = ui.make_inputs(ours.config)
    with torch.no_grad():
        assert torch.allclose(ours(**inputs), theirs(**inputs).sample, atol=1e-5)


def test_make_inputs_takes_diffusers_config():
    pytest.importorskip("diffusers")
    model = diffusers_unet(tiny())
    inputs = ui.make_inputs(model.config, ui.InputSpec(batch=2))
    assert inputs["sample"].shape == (2, 4, 16, 16) and inputs["encoder_hidden_states"].shape == (2, 77, 48)
    with pytest.raises(RunError, match="not a str"):
        ui.make_inputs("tiny")


def test_a_module_changed_after_loading_is_traced_itself():
    model = ui.load_unet("tiny")
    model.conv_out = nn.Sequential(model.conv_out, nn.Identity())  # as an adapter injected after loading would
    live = open_live(model)
    assert live.meta_copy() is None
    trace = live.structure_trace(ui.InputSpec())
    assert trace.total_params == sum(p.numel() for p in model.parameters())


def test_left_as_found_restores_modes_hooks_and_grad_flags_after_an_error():
    model = nn.Sequential(nn.Linear(2, 2))
    before = state_of(model)
    with pytest.raises(ValueError), left_as_found(model):
        model.eval()
        model[0].weight.requires_grad_(False)
        model.register_forward_pre_hook(lambda *args: None)
        raise ValueError
    assert state_of(model) == before


# ---- every view ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def preset_summary():
    return ui.summarize("tiny")


def test_summary_of_a_diffusers_unet_traces_a_meta_copy(preset_summary):
    pytest.importorskip("diffusers")
    model = diffusers_unet(tiny())
    before = state_of(model)
    summary = ui.summarize(model)
    assert state_of(model) == before
    assert summary.setup.device == "meta" and REBUILT_NOTE in summary.setup.notes
    assert summary.trace.total_params == sum(p.numel() for p in model.parameters())
    assert summary.trace.flops == preset_summary.trace.flops
    assert [r.name for r in summary.trace.records] == [r.name for r in preset_summary.trace.records]


def test_summary_of_a_module_without_config_traces_it_where_it_is():
    model = nn.Sequential(nn.Conv2d(4, 8, 3), nn.SiLU())
    summary = ui.summarize(model, inputs={"input": torch.zeros(2, 4, 16, 16)})
    assert summary.setup.device == "cpu" and summary.setup.notes == ("traced the object itself on cpu",)
    assert (summary.setup.sizes.batch, summary.setup.sizes.latent, summary.setup.sizes.pixels) == (2, (16, 16), None)
    assert summary.trace.flops == 2 * 8 * 14 * 14 * 4 * 9 * 2
    from unetinspect.render.formats import render
    from unetinspect.render.summary_view import SummaryView

    assert '"kind": "module"' in render(SummaryView(1), "json", summary)


def test_a_pipeline_goes_through_every_view(tiny_pipeline, preset_summary):
    summary = ui.summarize(tiny_pipeline)
    assert summary.trace.flops == preset_summary.trace.flops
    graph = ui.diagram_graph(tiny_pipeline)
    assert graph.setup.kind == "module" and graph.node("down_blocks.0")
    comparison = ui.compare(tiny_pipeline, "tiny")
    assert comparison.identical
    assert ui.compare(tiny_pipeline.unet, impl="diffusers").identical
    from unetinspect.views.profile import sweep

    result = sweep(tiny_pipeline, [("64", ui.InputSpec(height=64, width=64))], **FAST)
    assert result.variants[0].sizes.latent == (8, 8) and result.variants[0].flops > 0


def test_impl_diffusers_without_diffusers_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "diffusers", None)  # import diffusers now raises ImportError
    with pytest.raises(RunError, match="--impl diffusers needs diffusers installed"):
        ui.summarize("tiny", impl="diffusers")
