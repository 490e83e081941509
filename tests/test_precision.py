"""Ranges (`watch(ranges=True)`) and block-by-block precision (`precision`, `unetinspect precision`).

The truths are independent of the code under test: a UNet with one block planted to overflow float16 *inside*
(its first resnet's conv1 weights × 1e6, which the next GroupNorm normalises away before the block returns), the
block's tensors seen by plain forward hooks, and bf16 errors from the block wrapped by hand in a module that casts
(not through our hooks), with the norms taken by torch.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import types

import pytest
import torch
from conftest import diffusers_unet, our_unet, save_folder, tiny
from torch import nn

import unetinspect as ui
from unetinspect.engine import ranges as ranges_module
from unetinspect.engine.precision import (
    FORMATS,
    in_format,
    int8_fake_quant_channels,
    int8_fake_quant_tensor,
)
from unetinspect.engine.ranges import FLOAT16_MAX
from unetinspect.errors import RunError
from unetinspect.views.precision import RANDOM_WEIGHTS_NOTE, precision

PLANTED = "down_blocks.1"


def planted(model: nn.Module) -> nn.Module:
    """`model` with down_blocks.1's first conv multiplied by 1e6: ~1e6 inside the block, ordinary at its output."""
    with torch.no_grad():
        model.down_blocks[1].resnets[0].conv1.weight.mul_(1e6)
    return model


@pytest.fixture(scope="module")
def unet() -> nn.Module:
    return planted(our_unet(tiny()))


def blocks_of(model: nn.Module) -> list[str]:
    """The UNet's blocks as a trace names them, in order: conv_in, ..., down_blocks.0, ..., conv_out."""
    return [p for p, m in model.named_modules() if p and not isinstance(m, (nn.ModuleList, nn.ModuleDict))
            and (p.count(".") == 0 or (p.count(".") == 1 and p.split(".")[1].isdigit()))]


def hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().clone() for name, t in model.state_dict().items()}


def same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(before[n].dtype == t.dtype and torch.equal(before[n], t) for n, t in model.state_dict().items())


def loop(model: nn.Module, timesteps=(999, 50)) -> None:
    inputs = ui.make_inputs(model.config, ui.InputSpec(batch=2))
    with torch.no_grad():
        for t in timesteps:
            model(**{**inputs, "timestep": torch.tensor(t)})


# ---- ranges ---------------------------------------------------------------------------------------------------------


def test_ranges_find_the_overflow_inside_a_block_whose_output_is_in_range(unet):
    outputs: dict[str, float] = {}  # the truth: every submodule's output, through plain forward hooks

    def keep(path):
        def hook(module, args, output):
            if isinstance(output, torch.Tensor):
                outputs[path] = max(outputs.get(path, 0.0), output.abs().max().item())
        return hook

    handles = [m.register_forward_hook(keep(p)) for p, m in unet.named_modules() if p]
    try:
        loop(unet, (999,))
    finally:
        for handle in handles:
            handle.remove()
    assert outputs[PLANTED + ".resnets.0.conv1"] > 1e5 > 100 > outputs[PLANTED + ".resnets.0"]  # normed away

    before = hooks(unet)
    with ui.watch(unet, ranges=True) as w:
        loop(unet)
    assert hooks(unet) == before
    ranges = w.ranges()
    assert ranges.calls == 2 and list(ranges.max_abs) == blocks_of(unet)
    assert ranges.above_float16() == [PLANTED]
    for block, values in ranges.max_abs.items():
        inside = max(v for p, v in outputs.items() if p == block or p.startswith(block + "."))
        assert len(values) == 2 and values[0] >= inside * (1 - 1e-6)  # every tensor made: at least the outputs
        assert (values[0] > FLOAT16_MAX) == (block == PLANTED)
        assert ranges.headroom[block][0] == pytest.approx(FLOAT16_MAX / values[0])
    # what makes the planted maximum is the conv (plus the time embedding it is added to): the same size
    assert ranges.max_abs[PLANTED][0] == pytest.approx(outputs[PLANTED + ".resnets.0.conv1"], rel=1e-2)
    assert all(n == [0, 0] for n in ranges.nonfinite.values()) and ranges.first_nonfinite is None
    # attention blocks give their largest logit, the others none
    assert ranges.logit_max["down_blocks.0"][0] > 0 and ranges.logit_max["conv_in"] == [None, None]


def test_ranges_logit_is_q_k_scale_as_torch_computes_it(monkeypatch):
    model = our_unet(tiny())
    block = model.mid_block.attentions[0].transformer_blocks[0]
    seen = []

    def truth(module, args, kwargs, output):
        named = inspect.signature(module.forward).bind(*args, **kwargs).arguments
        x, context = named["hidden_states"], named.get("encoder_hidden_states")
        q, k = module.to_q(x), module.to_k(x if context is None else context)
        h = module.heads
        head = q.shape[-1] // h
        q, k = (t.view(t.shape[0], t.shape[1], h, head).transpose(1, 2) for t in (q, k))
        seen.append((q @ k.transpose(-1, -2) * head ** -0.5).abs().max().item())

    handles = [layer.register_forward_hook(truth, with_kwargs=True) for layer in (block.attn1, block.attn2)]
    try:
        with ui.watch(model, depth=2, ranges=True) as w:
            loop(model, (500,))
    finally:
        for handle in handles:
            handle.remove()
    assert len(seen) == 2  # self- and cross-attention
    assert w.ranges().logit_max["mid_block.attentions.0"][0] == pytest.approx(max(seen), rel=1e-5)
    # attention maps in the same watch recompute logits in their hooks: not counted as the layers' own numbers
    with ui.watch(model, depth=2, ranges=True, attention=True) as both:
        loop(model, (500,))
    assert both.ranges().max_abs == w.ranges().max_abs
    # nor is our own logit recompute: without attention layers to recompute, the same maxima
    monkeypatch.setattr(ranges_module, "attention_layers", lambda model: {})
    with ui.watch(model, depth=2, ranges=True) as bare:
        loop(model, (500,))
    assert bare.ranges().max_abs == w.ranges().max_abs


def test_ranges_point_at_the_first_non_finite_value_and_count_them():
    model = our_unet(tiny())
    with torch.no_grad():
        model.up_blocks[1].resnets[0].conv2.bias.fill_(math.inf)
    with ui.watch(model, ranges=True) as w:
        loop(model, (999,))
    ranges = w.ranges()
    first = ranges.first_nonfinite
    assert (first.block, first.call, first.layer) == ("up_blocks.1", 0, "up_blocks.1.resnets.0.conv2")
    assert all(ranges.nonfinite[b] == [0] for b in ranges.nonfinite if not b.startswith(("up_blocks.1", "up_blocks.2",
                                                                                         "conv")))
    assert ranges.nonfinite["up_blocks.1"][0] > 0
    # its attention layers then read non-finite inputs: their logits are no number, never a reassuring 0
    assert not math.isfinite(ranges.logit_max["up_blocks.1"][0])


def test_ranges_leave_the_module_as_found_when_the_loop_raises(unet):
    before = hooks(unet)
    with pytest.raises(ValueError), ui.watch(unet, ranges=True):
        loop(unet, (999,))
        raise ValueError("the user's loop broke")
    assert hooks(unet) == before
    assert torch._C._len_torch_dispatch_stack() == 0  # the dispatch mode is gone too
    with pytest.raises(RunError, match="records no ranges"):
        with ui.watch(unet) as w:
            pass
        w.ranges()


# ---- precision ------------------------------------------------------------------------------------------------------


def test_precision_ranks_the_overflowing_block_first_in_fp16(unet):
    before, count = snapshot(unet), hooks(unet)
    result = precision(unet, dtypes=["fp16"], timesteps=[999], max_seconds=None)
    assert result.ranked("fp16")[0] == PLANTED and result.error["fp16"][PLANTED] == [math.inf]
    assert result.nonfinite["fp16"][PLANTED][0] > 0
    assert all(math.isfinite(result.error["fp16"][b][0]) for b in result.blocks if b != PLANTED)
    assert set(result.blocks) == set(blocks_of(unet))
    assert same_state(unet, before) and hooks(unet) == count
    assert RANDOM_WEIGHTS_NOTE not in result.notes  # a live model holds its own weights


def bf16_by_hand(model: nn.Module, block: str, inputs: dict, reference: torch.Tensor) -> float:
    """The block swapped for a module that casts its inputs to bf16, runs a bf16 copy, casts back: no hooks."""
    class InBF16(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = copy.deepcopy(inner).to(torch.bfloat16)

        def __getattr__(self, name):  # what the UNet reads of its blocks (skip_count, has_cross_attention)
            try:
                return super().__getattr__(name)
            except AttributeError:
                return getattr(self.inner, name)

        def forward(self, *args, **kwargs):
            def cast(v, dtype):
                if isinstance(v, torch.Tensor):
                    return v.to(dtype) if v.is_floating_point() else v
                if isinstance(v, (tuple, list)):
                    return type(v)(cast(i, dtype) for i in v)
                return v
            out = self.inner(*cast(args, torch.bfloat16), **{k: cast(v, torch.bfloat16) for k, v in kwargs.items()})
            return cast(out, torch.float32)

    copied = copy.deepcopy(model)
    parent, _, name = block.rpartition(".")
    owner = copied.get_submodule(parent) if parent else copied
    setattr(owner, name, InBF16(getattr(owner, name)))
    with torch.no_grad():
        y = copied(**inputs)[0]
    return (torch.linalg.vector_norm(y.double() - reference) / torch.linalg.vector_norm(reference)).item()


def test_bf16_errors_equal_the_block_run_in_bf16_by_hand():
    model = our_unet(tiny())
    blocks = ["down_blocks.0", "mid_block", "up_blocks.1.attentions.0"]
    result = precision(model, dtypes=["bf16"], blocks=blocks, timesteps=[500], max_seconds=None)
    inputs = {**ui.make_inputs(model.config), "timestep": torch.tensor(500.0)}
    with torch.no_grad():
        reference = model(**inputs)[0].double()
    for block in blocks:
        expected = bf16_by_hand(model, block, inputs, reference)
        assert expected > 0 and result.error["bf16"][block][0] == pytest.approx(expected, rel=1e-3)
        assert result.sqnr_db["bf16"][block][0] == pytest.approx(-20 * math.log10(expected), rel=1e-3)


def test_fake_quant_follows_its_convention_and_gives_finite_figures():
    weight = torch.randn(6, 3, 3, 3)
    scale = weight.abs().flatten(1).amax(1) / 127
    by_hand = (weight / scale[:, None, None, None]).round().clamp(-127, 127) * scale[:, None, None, None]
    assert torch.allclose(int8_fake_quant_channels(weight), by_hand, atol=1e-7)
    x = torch.randn(100) * 3
    assert torch.allclose(int8_fake_quant_tensor(x), (x / (x.abs().max() / 127)).round() * (x.abs().max() / 127),
                          atol=1e-6)
    model = our_unet(tiny())
    before = snapshot(model)
    result = precision(model, dtypes=["fp8", "int8"], blocks=["up_blocks.1", "conv_in"], timesteps=[999, 50],
                       max_seconds=None)
    for fmt in ("fp8", "int8"):
        assert result.conventions[fmt] == FORMATS[fmt].convention
        for block in ("up_blocks.1", "conv_in"):
            assert all(math.isfinite(e) and 0 < e < 1 for e in result.error[fmt][block])
    assert "absmax is 448" in result.conventions["fp8"] and "per output channel" in result.conventions["int8"]
    assert result.timesteps == [999.0, 50.0] and same_state(model, before)


def test_a_block_put_back_exactly_also_when_its_forward_raises():
    model = our_unet(tiny())
    before, block = snapshot(model), model.mid_block

    def refuse_half(module, args):
        if next(module.parameters()).dtype != torch.float32:
            raise RuntimeError("no half here")

    handle = block.register_forward_pre_hook(refuse_half)
    try:
        count = hooks(model)
        with pytest.raises(RuntimeError, match="no half"):
            precision(model, dtypes=["fp16"], blocks=["mid_block"], timesteps=[999], max_seconds=None)
        assert same_state(model, before) and hooks(model) == count
        assert all(p.dtype == torch.float32 for p in block.parameters())
    finally:
        handle.remove()
    with in_format(block, FORMATS["int8"]):
        assert not same_state(model, before)
    assert same_state(model, before)


def test_diffusers_unet_of_a_pipeline_is_watched_and_tested_as_found():
    unet = planted(diffusers_unet(tiny()))
    pipe = types.SimpleNamespace(unet=unet)  # what a pipeline offers: its .unet
    before, count = snapshot(unet), hooks(unet)
    with ui.watch(unet, ranges=True) as w:
        loop(unet, (999,))
    assert w.ranges().above_float16() == [PLANTED]
    result = precision(pipe, dtypes=["fp16", "int8"], blocks=[PLANTED, "mid_block"], timesteps=[999],
                       max_seconds=None)
    assert result.ranked("fp16")[0] == PLANTED and result.error["fp16"][PLANTED] == [math.inf]
    assert math.isfinite(result.error["int8"][PLANTED][0]) and result.setup.impl == "diffusers"
    assert same_state(unet, before) and hooks(unet) == count


def test_recorded_inputs_replay_a_real_loop():
    model = our_unet(tiny())
    with ui.watch(model, record_inputs=True) as w:
        loop(model, (999, 500, 10))
    recorded = w.recorded_inputs
    assert [float(call["timestep"]) for call in recorded] == [999, 500, 10] and recorded[0]["sample"].shape[0] == 2
    result = precision(model, dtypes=["bf16"], blocks=["conv_out"], inputs=recorded, timesteps=[0, 600],
                       max_seconds=None)
    assert result.timesteps == [10.0, 500.0] and result.setup.sizes.batch == 2


def test_bad_values_are_refused_in_one_line(unet):
    for kwargs, message in [(dict(dtypes=["fp12"]), "unknown precision 'fp12'"),
                            (dict(dtypes=[]), "no precision"),
                            (dict(timesteps=[]), "timesteps"),
                            (dict(blocks=["down_blocks.9"]), "no module 'down_blocks.9'"),
                            (dict(depth=0), "depth 0")]:
        with pytest.raises(RunError, match=message):
            precision(unet, **{"dtypes": ["fp16"], **kwargs})
    with pytest.raises(RunError, match="float32"):
        precision(copy.deepcopy(unet).half(), dtypes=["fp16"])


# ---- the command ----------------------------------------------------------------------------------------------------


def test_cli_prints_the_table_and_json_for_a_saved_folder(invoke, tmp_path):
    folder = save_folder(planted(our_unet(tiny())), tmp_path / "unet")
    options = ["--dtypes", "fp16,int8", "--blocks", "down_blocks.1,conv_out", "--timesteps", "999", "--device",
               "cpu", "--max-seconds", "100000"]
    table = invoke("precision", folder, *options)
    assert table.exit_code == 0, table.output
    assert "down_blocks.1" in table.output and "non-finite" in table.output and "int8 symmetric" in table.output
    result = invoke("precision", folder, *options, "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "precision" and data["timesteps"] == [999.0]
    fp16 = data["formats"][0]
    assert fp16["name"] == "fp16" and fp16["blocks"][0]["block"] == "down_blocks.1"
    assert fp16["blocks"][0]["error"] == [None] and fp16["blocks"][0]["nonfinite"][0] > 0
    assert data["setup"]["weights"].startswith("weights")
    assert not any(RANDOM_WEIGHTS_NOTE in n for n in data["notes"])
    preset = invoke("precision", "tiny", "--dtypes", "bf16", "--blocks", "conv_out", "--timesteps", "999",
                    "--device", "cpu", "-f", "json")
    assert preset.exit_code == 0 and RANDOM_WEIGHTS_NOTE in json.loads(preset.stdout)["notes"]


@pytest.mark.parametrize("args, message", [
    (["--dtypes", "fp12"], "unknown precision 'fp12'"),
    (["--timesteps", ""], "cannot read --timesteps"),
    (["--timesteps", "a,b"], "cannot read --timesteps"),
])
def test_cli_bad_values_are_one_line(invoke, args, message):
    result = invoke("precision", "tiny", "--device", "cpu", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_the_cost_is_estimated_and_refused_before_it_runs(invoke):
    result = invoke("precision", "tiny", "--device", "cpu", "--dtypes", "fp16,int8", "--blocks", "conv_in,conv_out",
                    "--timesteps", "999,50", "--max-seconds", "0")
    assert result.exit_code == 1
    assert "10 runs" in result.output and "over the limit" in result.output  # 2 × (1 + 2 × 2) forwards
    assert "--blocks, --dtypes or --timesteps" in result.output


def test_the_precision_page_ranks_every_format(tmp_path, invoke):
    """-o precision.html: one section per format, the blocks in the table's order, every timestep's error."""
    page = tmp_path / "precision.html"
    result = invoke("precision", "tiny", "--device", "cpu", "--latent", "8", "--dtypes", "fp16,int8",
                    "--timesteps", "999,50", "-o", page)
    assert result.exit_code == 0, result.output
    html = page.read_text()
    table = invoke("precision", "tiny", "--device", "cpu", "--latent", "8", "--dtypes", "fp16,int8",
                   "--timesteps", "999,50", "-f", "json").stdout
    import json

    for fmt in json.loads(table)["formats"]:
        section = html.split(f'id="precision-{fmt["name"]}"', 1)[1].split("</section>", 1)[0]
        assert [b["block"] for b in fmt["blocks"]] == [
            line.split("<td>", 1)[1].split("</td>", 1)[0] for line in section.split("<tr")[2:]]
        assert "error at t=999" in section and "error at t=50" in section
