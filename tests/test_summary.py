"""The summary view and the `summary` command."""

from __future__ import annotations

import csv
import io
import json
import os

from conftest import SMALL_CONFIGS, our_unet, save_folder
from unetinspect.analysis.inputs import InputSpec
from unetinspect.analysis.summary import summarize

def test_sdxl_json_reports_exact_parameters(invoke):
    result = invoke("summary", "sdxl", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == 1
    assert data["totals"]["params"] == 2_567_463_684
    assert data["totals"]["macs"] * 2 == data["totals"]["flops"]
    assert data["inputs"]["sample"] == [1, 4, 128, 128]
    assert data["inputs"]["added_cond_kwargs.time_ids"] == [1, 6]
    paths = [m["path"] for m in data["modules"]]
    assert paths[:2] == ["time_proj", "time_embedding"] and "mid_block" in paths and paths[-1] == "conv_out"
    assert all({"path", "type", "depth", "inputs", "outputs", "params", "flops"} <= set(m) for m in data["modules"])


def test_sd15_flops_at_512(invoke):
    data = json.loads(invoke("summary", "sd15", "-f", "json", "--height", "512", "--width", "512").stdout)
    assert data["totals"]["flops"] == 803_273_441_280
    assert data["totals"]["params"] == 859_520_964


def test_skip_connections_are_visible():
    rows = {row.path: row for row in summarize("sd15").rows(1)}
    assert [name for name, _ in rows["up_blocks.3"].skips] == ["conv_in", "down_blocks.0", "down_blocks.0"]
    assert [name for name, _ in rows["up_blocks.0"].skips] == ["down_blocks.2", "down_blocks.3", "down_blocks.3"]
    assert sum(len(r.skips) for r in rows.values()) == 12  # one per down-block residual
    assert not rows["down_blocks.1"].skips


def test_depth_two_shows_layers_and_table_renders(invoke):
    result = invoke("summary", "tiny", "--depth", "2")
    assert result.exit_code == 0
    assert "down_blocks.0" in result.stdout and "  attentions.0 " in result.stdout
    assert "Transformer2DModel" in result.stdout
    assert "359,761,920" in result.stdout


def test_tree_csv_markdown_formats(invoke):
    tree = invoke("summary", "tiny", "-f", "tree", "--depth", "2")
    assert tree.exit_code == 0 and "down_blocks.1.resnets.0" in tree.stdout
    rows = list(csv.DictReader(io.StringIO(invoke("summary", "tiny", "-f", "csv").stdout)))
    assert rows[0]["path"] == "time_proj" and int(rows[-1]["params"]) == 1156
    markdown = invoke("summary", "tiny", "-f", "markdown").stdout
    assert markdown.count("| `up_blocks.") == 3


def test_batch_and_size_options_change_shapes(invoke):
    data = json.loads(invoke("summary", "tiny", "-f", "json", "-b", "2", "--height", "256", "--width", "192",
                             "--text-len", "10").stdout)
    assert data["inputs"]["sample"] == [2, 4, 32, 24]
    assert data["inputs"]["encoder_hidden_states"] == [2, 10, 48]


def test_output_file_is_written(tmp_path, invoke):
    target = tmp_path / "summary.json"
    result = invoke("summary", "tiny", "-f", "json", "-o", str(target))
    assert result.exit_code == 0
    assert json.loads(target.read_text())["totals"]["params"] == 2_181_860


def test_cpu_device_gives_the_same_numbers_as_meta():
    on_meta = summarize("tiny", InputSpec())
    on_cpu = summarize("tiny", InputSpec(), device="cpu")
    assert on_cpu.trace.flops == on_meta.trace.flops
    assert [r.outputs for r in on_cpu.rows(2)] == [r.outputs for r in on_meta.rows(2)]


def test_weights_folder_is_checked_from_the_header(tmp_path, invoke):
    reference = our_unet(SMALL_CONFIGS["sd15-like"])
    save_folder(reference, tmp_path)
    result = summarize(str(tmp_path))
    assert result.setup.weight_dtypes == ("F32",) and "weights F32" in result.setup.weights
    assert result.trace.total_params == sum(p.numel() for p in reference.parameters())

    config = json.loads((tmp_path / "config.json").read_text())
    config["cross_attention_dim"] = 24  # same keys, other shapes
    (tmp_path / "config.json").write_text(json.dumps(config))
    bad = invoke("summary", str(tmp_path))
    assert bad.exit_code == 1
    assert "has shape" in bad.stderr and "needs" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.output


def test_output_files_get_the_usual_permissions(tmp_path, invoke):
    target = tmp_path / "s.csv"
    assert invoke("summary", "tiny", "-f", "csv", "-o", str(target)).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
