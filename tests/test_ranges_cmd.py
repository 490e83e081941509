"""`unetinspect ranges` and `activation_ranges`: per block the largest |x| made inside it, its headroom, its logits.

The truth is written here, independent of engine/ranges.py: a `TorchDispatchMode` of the test's own that takes
every operation's floating outputs in float64 (`abs().max()`, `isfinite`), charged to the blocks whose plain
forward pre/post hooks say they are running, and the attention logits q·kᵀ·scale recomputed by hand from each
attention layer's own projections. The model is the tiny preset with one block planted to overflow float16 inside
(test_precision.py's plant: its first conv's weights × 1e6, normalised away before the block returns).
"""

from __future__ import annotations

import csv
import io
import json
import math

import pytest
import torch
from conftest import our_unet, save_folder, tiny
from test_attention_maps import LdmModel
from test_precision import PLANTED, blocks_of, hooks, planted
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import unetinspect as ui
from unetinspect.engine.ranges import FLOAT16_MAX, RangeRecorder
from unetinspect.views.ranges import RANDOM_WEIGHTS_NOTE, activation_ranges

LATENT = ["--latent", "8"]
TIMESTEPS = (999.0, 1.0)


class Truth(TorchDispatchMode):
    """Every floating output of every operation that makes new numbers (views only show numbers made before),
    charged to each block running; its largest |x| in float64 and its non-finite values."""

    def __init__(self) -> None:
        super().__init__()
        self.running: list[str] = []
        self.paused = False
        self.max_abs: dict[str, float] = {}
        self.nonfinite: dict[str, int] = {}
        self.logits: dict[str, float] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused or func.is_view:
            return out
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
                values = tensor.detach().double()
                largest = float(values.abs().nan_to_num(nan=0.0).max())
                bad = int((~torch.isfinite(values)).sum())
                for block in self.running:
                    self.max_abs[block] = max(self.max_abs.get(block, 0.0), largest)
                    self.nonfinite[block] = self.nonfinite.get(block, 0) + bad
        return out


def truth(model: nn.Module, timesteps=TIMESTEPS):
    """Per block, per timestep: the largest |x| of any operation inside it, its non-finite values, and the largest
    |q·kᵀ·scale| of its attention layers (None without one), all from the test's own hooks and mode."""
    blocks = blocks_of(model)
    inputs = ui.make_inputs(model.config, ui.InputSpec(latent=(8, 8)))
    steps = [one_step(model, blocks, {**inputs, "timestep": torch.full_like(inputs["timestep"], t)})
             for t in timesteps]
    return ({b: [s.max_abs.get(b, 0.0) for s in steps] for b in blocks},
            {b: [s.nonfinite.get(b, 0) for s in steps] for b in blocks},
            {b: [s.logits.get(b) for s in steps] for b in blocks})


def one_step(model: nn.Module, blocks: list[str], inputs: dict) -> Truth:
    modules = dict(model.named_modules())
    attention = {path: m for path, m in modules.items() if hasattr(m, "to_q") and hasattr(m, "heads")}
    mode = Truth()

    def enter(block):
        return lambda module, args: mode.running.append(block)

    def leave(block):
        return lambda module, args, output: mode.running.remove(block)

    def logit(path):
        def hook(module, args, kwargs, output):
            mode.paused = True  # the recompute is the test's, not the layer's
            x = args[0] if args else kwargs["hidden_states"]
            context = kwargs.get("encoder_hidden_states", args[1] if len(args) > 1 else None)
            q, k = module.to_q(x), module.to_k(x if context is None else context)
            heads, width = module.heads, q.shape[-1] // module.heads
            q, k = (v.view(v.shape[0], v.shape[1], heads, width).transpose(1, 2).double() for v in (q, k))
            value = float((q @ k.transpose(-1, -2) * width ** -0.5).abs().max())
            block = next(b for b in blocks if path.startswith(b + "."))
            mode.logits[block] = max(mode.logits.get(block, 0.0), value)
            mode.paused = False
        return hook

    handles = [modules[b].register_forward_pre_hook(enter(b)) for b in blocks]
    handles += [modules[b].register_forward_hook(leave(b)) for b in blocks]
    handles += [m.register_forward_hook(logit(p), with_kwargs=True) for p, m in attention.items()]
    try:
        with torch.no_grad(), mode:
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
    return mode


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_folder(planted(our_unet(tiny())), tmp_path_factory.mktemp("ranges") / "unet")


@pytest.fixture(scope="module")
def expected():
    return truth(planted(our_unet(tiny())))


def run_json(invoke, *args):
    result = invoke("ranges", *args, *LATENT, "--device", "cpu", "-f", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_every_block_s_figures_equal_the_test_s_own_dispatch_mode(invoke, folder, expected):
    max_abs, nonfinite, logits = expected
    assert max_abs[PLANTED][0] > FLOAT16_MAX > 10 * max(v[0] for b, v in max_abs.items() if b != PLANTED)
    data = run_json(invoke, folder, "--timesteps", "999,1")
    assert data["kind"] == "ranges" and data["timesteps"] == list(TIMESTEPS) and data["depth"] == 1
    assert data["limits"] == {"fp16": 65504.0, "bf16": float(torch.finfo(torch.bfloat16).max), "fp8": 448.0}
    rows = {row["block"]: row for row in data["blocks"]}
    assert sorted(rows) == sorted(max_abs)
    for block, row in rows.items():
        assert row["max_abs"] == pytest.approx(max_abs[block], rel=1e-6), block
        assert row["nonfinite"] == nonfinite[block] == [0, 0]
        if logits[block][0] is None:
            assert row["logit_max"] == [None, None], block
        else:
            assert row["logit_max"] == pytest.approx(logits[block], rel=1e-4), block
        for fmt, limit in data["limits"].items():
            assert row["headroom"][fmt] == pytest.approx([limit / x for x in max_abs[block]], rel=1e-6)
    # ranked by the largest |x| over the timesteps: the planted block first
    order = sorted(max_abs, key=lambda b: -max(max_abs[b]))
    assert [row["block"] for row in data["blocks"]] == order and order[0] == PLANTED
    assert data["first_nonfinite"] is None
    assert data["setup"]["weights"].startswith("weights") and RANDOM_WEIGHTS_NOTE not in data["notes"]


def test_the_table_ranks_the_overflowing_block_first_and_marks_it(invoke, folder, expected):
    result = invoke("ranges", folder, *LATENT, "--timesteps", "999,1", "--device", "cpu", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    rows = [line for line in lines if line.strip()[:1].isdigit()]
    assert rows[0].split()[:2] == ["1", PLANTED] and rows[0].count("overflow") == 2  # fp16 and fp8, not bf16
    # marked where the largest |x| passes 448 (fp8): the timestep itself, 999, in time_proj's sinusoid argument
    assert {row.split()[1] for row in rows if "overflow" in row} == {PLANTED, "time_proj"}
    assert len(rows) == len(expected[0])
    assert "first non-finite" in result.output and "none" in result.output
    assert "timesteps 999, 1" in result.output


def test_csv_and_markdown_come_from_the_same_rows(invoke, folder, expected):
    max_abs = expected[0]
    args = ("ranges", folder, *LATENT, "--timesteps", "999,1", "--device", "cpu")
    table = list(csv.DictReader(io.StringIO(invoke(*args, "-f", "csv").stdout)))
    assert [r["block"] for r in table][0] == PLANTED and len(table) == len(max_abs)
    first = table[0]
    assert float(first["max_abs"]) == pytest.approx(max(max_abs[PLANTED]), rel=1e-6)
    assert float(first["headroom_fp16"]) < 1 and float(first["at_timestep"]) in TIMESTEPS
    assert first["max_abs_per_timestep"].startswith("999:")
    markdown = invoke(*args, "-f", "markdown").stdout
    assert f"| 1 | `{PLANTED}` |" in markdown and "overflow" in markdown and "**first non-finite**: none" in markdown


def test_names_ldm_names_the_rows_and_blocks_takes_any_naming(invoke, folder, expected):
    data = run_json(invoke, folder, "--timesteps", "999", "--blocks", "IN04,mid_block", "--names", "ldm")
    assert data["depth"] is None
    named = {row["block"]: row for row in data["blocks"]}
    # IN04 is down_blocks.1's first resnet and transformer (input_blocks.4.0 and .1): the planted conv is in the first
    assert set(named) == {"down_blocks.1.resnets.0", "down_blocks.1.attentions.0", "mid_block"}
    assert named["down_blocks.1.resnets.0"]["ldm"] == "input_blocks.4.0"
    assert named["down_blocks.1.resnets.0"]["max_abs"][0] == pytest.approx(expected[0][PLANTED][0], rel=1e-6)
    table = invoke("ranges", folder, *LATENT, "--timesteps", "999", "--device", "cpu", "--names", "ldm",
                   env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "input_blocks.4" in table.output and "down_blocks.1 " not in table.output


def test_a_live_module_s_first_non_finite_value_is_located_and_left_as_found():
    model = our_unet(tiny())
    with torch.no_grad():
        model.up_blocks[1].resnets[0].conv2.bias.fill_(math.inf)
    model.train()
    before = hooks(model)
    result = activation_ranges(model, ui.InputSpec(latent=(8, 8)), timesteps=[500])
    assert hooks(model) == before and model.training and torch._C._len_torch_dispatch_stack() == 0
    max_abs, nonfinite, _ = truth(model, (500.0,))
    assert result.nonfinite == nonfinite and result.nonfinite["up_blocks.1"][0] > 0
    first = result.first_nonfinite
    assert (first.block, first.call, first.layer) == ("up_blocks.1", 0, "up_blocks.1.resnets.0.conv2")
    assert result.ranked()[0] in {b for b, n in nonfinite.items() if n[0]}  # non-finite ones first
    assert RANDOM_WEIGHTS_NOTE not in result.notes  # the user's own weights


def test_depth_two_watches_the_layers_too():
    result = activation_ranges("tiny", ui.InputSpec(latent=(8, 8)), depth=2, timesteps="999", device="cpu")
    assert "down_blocks.0" in result.blocks and "down_blocks.0.resnets.0" in result.blocks
    assert result.max_abs["down_blocks.0"][0] >= result.max_abs["down_blocks.0.resnets.0"][0] > 0
    assert RANDOM_WEIGHTS_NOTE in result.notes


@pytest.mark.parametrize("args, message", [
    (["--timesteps", "2000"], "timestep 2000 is outside 0..999"),
    (["--timesteps", "a,b"], "cannot read --timesteps"),
    (["--blocks", "nosuch"], "no module 'nosuch'"),
    (["--device", "meta"], "not on the meta device"),
])
def test_bad_values_are_one_line(invoke, args, message):
    result = invoke("ranges", "tiny", *LATENT, "--device", "cpu", *args)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output


def test_the_cost_is_estimated_and_refused_before_it_runs(invoke):
    result = invoke("ranges", "tiny", *LATENT, "--device", "cpu", "--timesteps", "999,500,1", "--max-seconds", "0")
    assert result.exit_code == 1
    assert "6 runs" in result.output and "over the limit" in result.output  # 2 forwards' worth per timestep


def test_in_fp16_the_overflow_is_real_ranked_first_and_located(invoke, folder):
    model = planted(our_unet(tiny())).half()
    inputs = ui.make_inputs(model.config, ui.InputSpec(latent=(8, 8)), dtype=torch.float16)
    broken: list[str] = []  # the truth: leaves in the order they finish, the first with a non-finite output

    def hook(path):
        def check(module, args, output):
            if isinstance(output, torch.Tensor) and not torch.isfinite(output).all():
                broken.append(path)
        return check

    handles = [m.register_forward_hook(hook(p)) for p, m in model.named_modules() if p and not list(m.children())]
    try:
        with torch.no_grad():
            model(**{**inputs, "timestep": torch.full_like(inputs["timestep"], 999)})
    finally:
        for handle in handles:
            handle.remove()
    assert broken and broken[0].startswith(PLANTED + ".")
    data = run_json(invoke, folder, "--timesteps", "999", "--dtype", "fp16")
    assert data["setup"]["dtype"] == "float16"
    assert data["first_nonfinite"] == {"block": PLANTED, "call": 0, "timestep": 999.0, "layer": broken[0]}
    top = data["blocks"][0]
    assert top["block"] == PLANTED and top["nonfinite"][0] > 0 and top["max_abs"] == [None]
    assert top["headroom"] == {"fp16": [None], "bf16": [None], "fp8": [None]}  # unknown past fp16's own range
    # the blocks its non-finite values flowed into come next, before every block that stayed finite
    tainted = [row["nonfinite"][0] > 0 for row in data["blocks"]]
    assert tainted == sorted(tainted, reverse=True)


def test_an_attention_layer_called_without_hidden_states_has_no_logit_and_a_note():
    """LDM's layout (`forward(x, context)`): found by its to_q/to_k/heads, its logits cannot be recomputed from
    arguments by diffusers' names; its numbers are still measured (it raised a KeyError before)."""
    model = LdmModel()
    with RangeRecorder(model, ["attn"]) as recorder:
        model(torch.randn(1, 8, 4, 4))
    ranges = recorder.result()
    assert ranges.logit_max["attn"] == [None] and ranges.max_abs["attn"][0] > 0
    assert any(note.startswith("no attention logits for attn: called without hidden_states") for note in ranges.notes)
