"""The `profile` command as a user runs it: formats, overhead and totals printed, traces, sweeps, backends, errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
from bad_input import assert_one_line_failure
from conftest import exhausted_model

from unetinspect.views import profile as profile_module

FAST = ["tiny", "--device", "cpu", "--warmup", "0", "--repeat", "2"]


def test_json_has_the_documented_fields(one_thread, invoke):
    result = invoke("profile", *FAST, "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # nothing but the JSON on stdout: no progress bar, no messages
    assert data["schema"] == 1 and data["kind"] == "profile" and data["setup"]["label"] == "tiny"
    assert data["setup"]["dtype"] == "float32" and data["device"]["type"] == "cpu" and data["repeat"] == 2
    blocks = {b["path"]: b for b in data["blocks"]}
    assert {"conv_in", "down_blocks.0", "mid_block", "up_blocks.2", "conv_out"} <= set(blocks)
    for block in data["blocks"]:
        assert {"path", "type", "median_ms", "p10_ms", "p90_ms", "min_ms", "max_ms", "share", "flops",
                "flops_per_s", "mfu", "peak_memory_bytes"} <= set(block)
        assert block["p10_ms"] <= block["median_ms"] <= block["p90_ms"]
    assert blocks["mid_block"]["type"] == "UNetMidBlock2DCrossAttn" and blocks["mid_block"]["flops"] > 0
    totals = data["totals"]
    for key in ("step_ms", "hooked_step_ms", "blocks_ms", "unattributed_ms", "overhead", "coverage", "flops"):
        assert totals[key] is not None and totals[key] > 0, key
    assert totals["flops"] == sum(b["flops"] for b in data["blocks"])


def test_table_prints_the_totals_that_make_it_trustworthy(one_thread, invoke):
    result = invoke("profile", *FAST)
    assert result.exit_code == 0, result.output
    for words in ("down_blocks.0", "with no hooks installed", "hook overhead ×", "of the step", "ran in no row",
                  "achieved"):
        assert words in result.stdout, words


def test_csv_and_markdown(one_thread, tmp_path, invoke):
    out = tmp_path / "profile.csv"
    result = invoke("profile", *FAST, "--format", "csv", "-o", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert rows[0]["path"] == "time_proj" and rows[-1]["path"] == "(step)" and rows[-2]["path"] == "(unattributed)"
    assert float(rows[-1]["median_ms"]) > 0 and int(rows[-1]["flops"]) > 0
    markdown = invoke("profile", *FAST, "--format", "markdown").stdout
    assert "| `mid_block` | UNetMidBlock2DCrossAttn |" in markdown and "**hooked step**" in markdown


def test_depth_two_shows_blocks_and_their_layers_as_summary_does(one_thread, invoke):
    data = json.loads(invoke("profile", *FAST, "--depth", "2", "-f", "json").stdout)
    paths = [b["path"] for b in data["blocks"]]
    assert "down_blocks.0.attentions.0" in paths and "mid_block" in paths
    assert paths.index("down_blocks.0") < paths.index("down_blocks.0.resnets.0")  # parents before children
    # coverage counts the blocks, not their layers a second time
    assert data["totals"]["blocks_ms"] <= data["totals"]["hooked_step_ms"]
    depth_one = sum(b["median_ms"] for b in data["blocks"] if b["depth"] == 1)
    assert data["totals"]["blocks_ms"] <= 1.5 * depth_one


def test_chrome_trace_has_a_range_per_block(one_thread, tmp_path, invoke):
    trace = tmp_path / "trace.json"
    result = invoke("profile", *FAST, "--trace", str(trace), "-f", "json")
    assert result.exit_code == 0, result.output
    names = {event.get("name") for event in json.loads(trace.read_text())["traceEvents"]}
    blocks = {b["name"] for b in json.loads(result.stdout)["blocks"]}
    assert {"unet step", "down_blocks.0", "mid_block", "up_blocks.1"} <= names and blocks <= names


def test_trace_profiles_one_run_only(tmp_path, invoke):
    result = invoke("profile", *FAST, "--sweep", "64,128", "--trace", str(tmp_path / "t.json"))
    assert result.exit_code == 2 and not (tmp_path / "t.json").exists()


def test_sweep_prints_latency_and_throughput(one_thread, invoke):
    result = invoke("profile", *FAST, "--sweep", "64,96x128")
    assert result.exit_code == 0, result.output
    assert "images/s" in result.stdout and "96×128" in result.stdout
    data = json.loads(invoke("profile", *FAST, "--sweep", "batch=1,2", "-f", "json").stdout)
    assert data["kind"] == "sweep"
    assert [(v["label"], v["batch"]) for v in data["variants"]] == [("batch 1", 1), ("batch 2", 2)]
    assert all(v["step_ms"] > 0 and v["images_per_s"] > 0 and v["error"] is None for v in data["variants"])


def test_attention_math_and_all(one_thread, invoke):
    math = json.loads(invoke("profile", *FAST, "--attention", "math", "-f", "json").stdout)
    assert math["attention"] == "math" and math["totals"]["step_ms"] > 0
    result = invoke("profile", *FAST, "--attention", "all", "--height", "64", "--width", "64", "-f", "json")
    variants = {v["attention"]: v for v in json.loads(result.stdout)["variants"]}
    assert set(variants) == {"auto", "math", "flash", "efficient", "cudnn"}
    assert variants["math"]["error"] is None
    assert all(v["error"] is None or "not available" in v["error"] for v in variants.values())


def test_an_unavailable_backend_is_one_line(invoke):
    result = invoke("profile", *FAST, "--attention", "cudnn")
    assert result.exit_code == 1, result.output  # no cuDNN attention on a CPU: reported, with what to try
    message = assert_one_line_failure(result)
    assert "not available" in message and "--attention all" in message


def test_compile_times_the_whole_step_and_says_why(one_thread, monkeypatch, invoke):
    monkeypatch.setattr(profile_module, "COMPILE_BACKEND", "eager")  # inductor takes minutes on a small CPU
    result = invoke("profile", *FAST, "--compile")
    assert result.exit_code == 0, result.output
    assert "cannot see inside a compiled graph" in result.stdout and "compilation" in result.stdout
    data = json.loads(invoke("profile", *FAST, "--compile", "-f", "json").stdout)
    assert data["compiled"] == "eager" and data["blocks"] == [] and data["totals"]["hooked_step_ms"] is None


def test_out_of_memory_is_one_line_with_sizes(monkeypatch, invoke):
    exhausted_model(monkeypatch)
    result = invoke("profile", *FAST, "--batch", "8")
    assert result.exit_code == 1
    assert "out of memory" in result.output and "batch 8" in result.output and "smaller --batch" in result.output
    assert "Traceback" not in result.output


def test_bad_inputs_are_one_line_errors(invoke):
    for args, words in ((["--sweep", "batch=x"], "cannot read --sweep"), (["--device", "meta"], "meta device"),
                        (["--dtype", "fp8"], "unknown dtype"), (["--height", "100"], "multiple of 8")):
        result = invoke("profile", *FAST, *args)
        assert result.exit_code == 1 and words in result.output, (args, result.output)


@pytest.mark.cuda
def test_cuda_defaults_to_fp16_and_reports_memory(invoke):
    data = json.loads(invoke("profile", "tiny", "--device", "cuda", "--repeat", "3", "-f", "json").stdout)
    assert data["dtype"] == "float16" and data["device"]["type"] == "cuda"
    assert data["totals"]["peak_memory_bytes"] > 0
    assert all(b["peak_memory_bytes"] > 0 for b in data["blocks"])
