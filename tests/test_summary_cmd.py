"""The `summary` command as a user runs it: formats, options that change shapes, output files."""

from __future__ import annotations

import csv
import io
import json
import os


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


def test_output_files_get_the_usual_permissions(tmp_path, invoke):
    target = tmp_path / "s.csv"
    assert invoke("summary", "tiny", "-f", "csv", "-o", str(target)).exit_code == 0
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
