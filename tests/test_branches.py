"""Partial-UNet (caching) costs: the shallow branch of every skip connection, computed from the trace."""

from __future__ import annotations

import json

import pytest
from conftest import SMALL_CONFIGS

from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.resolve import resolve_source
from unetinspect.views.branches import LAYER_DEPTH, attention_flops, branch_costs, find_branches
from unetinspect.views.graph import trace_for_diagram


def trace_of(config: dict, write_config):
    return trace_for_diagram(resolve_source(str(write_config(config))), InputSpec())


@pytest.fixture(scope="module")
def tiny_trace():
    return trace_for_diagram(resolve_source("tiny"), InputSpec())


def test_a_branch_costs_the_sum_of_the_rows_it_runs(tiny_trace):
    rows = {r.name: r for r in tiny_trace.at_depth(LAYER_DEPTH)}
    for branch in find_branches(tiny_trace):
        assert branch.flops == sum(rows[name].flops for name in branch.runs)
        assert branch.attention_flops == sum(attention_flops(tiny_trace, rows[name]) for name in branch.runs)
        assert branch.params == sum({rows[n].path: rows[n].params for n in branch.runs}.values())


def test_branches_grow_with_depth_and_each_runs_the_conditioning_and_both_ends(tiny_trace):
    branches = find_branches(tiny_trace)
    assert [b.index for b in branches] == list(range(len(branches)))
    for shallow, deep in zip(branches, branches[1:]):
        assert shallow.flops < deep.flops and shallow.params <= deep.params
        assert set(shallow.runs) < set(deep.runs)
    for branch in branches:
        assert {"time_proj", "conv_in", "conv_out", branch.producer, branch.consumer} <= set(branch.runs)
    assert branches[0].producer == "conv_in" and branches[0].consumer == "up_blocks.2.resnets.2"
    assert branches[1].producer == "down_blocks.0.attentions.0" and branches[1].consumer == "up_blocks.2.resnets.1"


def test_one_branch_per_skip_and_the_deepest_is_the_step_less_the_mid_block(tiny_trace):
    branches = find_branches(tiny_trace)
    up_resnets = [r for r in tiny_trace.at_depth(LAYER_DEPTH) if r.path.startswith("up_blocks.") and ".resnets." in r.path]
    assert len(branches) == len(up_resnets)
    assert branches[-1].flops == tiny_trace.flops - tiny_trace.find("mid_block").flops
    assert not any(name.startswith("mid_block") for name in branches[-1].runs)


@pytest.mark.parametrize("name", ["sdxl-like", "class-and-extras"])
def test_branches_of_other_configs_follow_the_same_rules(name, write_config):
    trace = trace_of(SMALL_CONFIGS[name], write_config)
    branches = find_branches(trace)
    assert branches[-1].flops == trace.flops - trace.find("mid_block").flops
    assert all(a.flops < b.flops for a, b in zip(branches, branches[1:]))


def test_without_a_mid_block_the_deepest_branch_is_the_whole_step(write_config):
    trace = trace_of(SMALL_CONFIGS["class-projection-concat"], write_config)
    branches = find_branches(trace)
    assert branches[-1].flops == trace.flops


def test_branch_latency_is_the_sum_of_its_rows(tiny_trace):
    latencies = {r.name: 1.0 for r in tiny_trace.at_depth(LAYER_DEPTH)}
    for branch in find_branches(tiny_trace, latencies):
        assert branch.latency_ms == pytest.approx(len(branch.runs))


def test_sd15_totals_and_the_deepcache_branch():
    result = branch_costs("sd15")
    assert result.flops == 803_273_441_280 and len(result.branches) == 12
    assert (result.flops - result.attention_flops) // 2 == 338_610_585_600  # DeepCache reports 338.83G for SD 1.5
    deepcache = result.branches[1]  # DeepCache's cache_layer_id=0, cache_block_id=0
    assert (deepcache.producer, deepcache.consumer) == ("down_blocks.0.attentions.0", "up_blocks.3.resnets.1")


def test_summary_branches_command_json_and_table(invoke):
    result = invoke("summary", "tiny", "--branches", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["full_step"]["flops"] > data["branches"][-1]["flops"] > data["branches"][0]["flops"]
    assert [b["index"] for b in data["branches"]] == list(range(len(data["branches"])))
    assert any("CFG" in c or "classifier-free" in c for c in data["conventions"])
    table = invoke("summary", "tiny", "--branches")
    assert table.exit_code == 0 and "MACs w/o attn" in table.stdout and "conv_in" in table.stdout


def test_profile_branches_adds_latency(invoke):
    result = invoke("profile", "tiny", "--branches", "--device", "cpu", "--warmup", "0", "--repeat", "1", "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["full_step"]["latency_ms"] > 0
    assert all(b["latency_ms"] > 0 for b in data["branches"])


def test_profile_branches_refuses_a_sweep(invoke):
    result = invoke("profile", "tiny", "--branches", "--sweep", "64,128")
    assert result.exit_code == 2


def test_k_diffusion_up_blocks_read_only_the_last_skip_they_are_handed():
    result = branch_costs("sd-x2-latent-upscaler")  # KUpBlock2D: handed every skip of a level, reads the last
    assert [(b.producer, b.consumer) for b in result.branches] == [
        ("down_blocks.0.resnets.3", "up_blocks.3.resnets.0"),
        ("down_blocks.1.attentions.3", "up_blocks.2.resnets.0"),
        ("down_blocks.2.attentions.3", "up_blocks.1.resnets.0"),
    ]
