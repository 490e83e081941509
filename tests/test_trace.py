"""The trace: every module call, with shapes, parameters and FLOPs — and the same for diffusers' model."""

from __future__ import annotations

import pytest
import torch
from conftest import SMALL_CONFIGS, diffusers_unet
from torch import nn

from unetinspect import UNetConfig, load_unet
from unetinspect.engine.trace import trace_model
from unetinspect.errors import InputError
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import build_model


def _flat_shapes(metas):
    return [m.shape for m in metas]


@pytest.mark.parametrize("name", ["sd15-like", "sdxl-like", "class-and-extras"])
def test_trace_matches_diffusers_trace(name):
    """Same calls in the same order, same output shapes, same parameters and FLOPs per call."""
    config = SMALL_CONFIGS[name]
    reference = diffusers_unet(config)
    ours = build_model(UNetConfig.from_dict(config))
    ours.load_state_dict(reference.state_dict(), assign=True)
    inputs = make_inputs(ours.config, InputSpec(batch=2))
    ours_trace, ref_trace = trace_model(ours, inputs), trace_model(reference, inputs)

    assert [r.path for r in ours_trace.records] == [r.path for r in ref_trace.records]
    for mine, theirs in zip(ours_trace.records[1:], ref_trace.records[1:]):
        assert _flat_shapes(mine.outputs) == _flat_shapes(theirs.outputs), mine.path
        assert (mine.params, mine.flops) == (theirs.params, theirs.flops), mine.path
    assert ours_trace.flops == ref_trace.flops > 0


def test_sd15_flops_count_attention_on_meta():
    model = load_unet("sd15", device="meta")
    trace = trace_model(model, make_inputs(model.config, InputSpec(), device="meta"))
    assert trace.flops == 803_273_441_280
    attention = sum(r.own_flops for r in trace.records if r.type == "Attention")
    assert attention == 126_052_270_080  # the two attention matmuls of every Attention call


def test_cpu_and_meta_count_the_same_flops():
    """On the CPU SDPA runs a kernel with no FLOP formula in torch; we count it anyway."""
    cpu = load_unet("tiny", device="cpu")
    meta = load_unet("tiny", device="meta")
    on_cpu = trace_model(cpu, make_inputs(cpu.config))
    on_meta = trace_model(meta, make_inputs(meta.config, device="meta"))
    assert on_cpu.flops == on_meta.flops
    assert [r.flops for r in on_cpu.records] == [r.flops for r in on_meta.records]


def test_flops_add_up_and_params_are_per_module():
    model = load_unet("tiny", device="meta")
    trace = trace_model(model, make_inputs(model.config, device="meta"))
    for record in trace.records:
        assert record.flops == record.own_flops + sum(trace.records[c].flops for c in record.children)
    assert trace.root.params == trace.total_params == sum(p.numel() for p in model.parameters())
    block = trace.find("down_blocks.1")
    assert block.params == sum(p.numel() for p in model.down_blocks[1].parameters())
    assert block.depth == 1 and trace.records[block.parent].path == ""


def test_modules_called_twice_get_one_record_per_call():
    model = load_unet("tiny", device="meta")
    trace = trace_model(model, make_inputs(model.config, device="meta"))
    calls = [r for r in trace.records if r.path == "down_blocks.0.resnets.0.nonlinearity"]
    assert [r.call for r in calls] == [0, 1, 2]
    assert calls[2].name.endswith("#3")


def test_skip_tensors_know_their_producers():
    model = load_unet("tiny", device="meta")
    trace = trace_model(model, make_inputs(model.config, device="meta"))
    last_up = trace.find("up_blocks.2")
    skips = [t for t in last_up.inputs if t.name.startswith("res_hidden_states_tuple")]
    assert [trace.producer_at(t, 1).path for t in skips] == ["conv_in", "down_blocks.0", "down_blocks.0"]
    text = next(t for t in last_up.inputs if t.name == "encoder_hidden_states")
    assert trace.producer_at(text, 1).path == ""  # a model input


def test_hooks_are_removed_even_when_the_forward_raises():
    model = load_unet("tiny", device="meta")
    inputs = make_inputs(model.config, device="meta")
    inputs["encoder_hidden_states"] = torch.empty(1, 77, 3, device="meta")  # wrong width
    with pytest.raises(InputError):
        trace_model(model, inputs)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_works_on_any_module():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    trace = trace_model(model, {"input": torch.randn(3, 8)})
    assert [r.path for r in trace.records] == ["", "0", "1", "2"]
    assert trace.flops == 2 * 3 * (8 * 16 + 16 * 4)
    assert trace.records[3].outputs[0].shape == (3, 4)


def test_flops_are_counted_under_inference_mode():
    """Under inference_mode composite ops reach the counter whole (aten.linear instead of t + addmm): they are
    decomposed there, so a summary made inside a user's `torch.inference_mode()` block counts the same FLOPs."""
    import unetinspect as ui

    outside = ui.summarize("tiny").trace.flops
    with torch.inference_mode():
        inside = ui.summarize("tiny").trace.flops
    assert inside == outside > 0
