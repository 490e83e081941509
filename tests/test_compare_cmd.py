"""The `compare` command as a user runs it: table width, JSON and Markdown, latencies, our model against diffusers'."""

from __future__ import annotations

import json

import pytest


def test_compare_table_fits_120_columns_and_json_has_pairs(invoke):
    table = invoke("compare", "sd15", "sdxl", env={"COLUMNS": "120"})
    assert table.exit_code == 0, table.output
    assert max(len(line) for line in table.stdout.splitlines()) <= 120
    assert "2.99×" in table.stdout and "up_blocks.1 / up_blocks.0" in table.stdout
    data = json.loads(invoke("compare", "sd15", "sdxl", "-f", "json").stdout)
    assert data["a"]["totals"]["params"] == 859_520_964 and data["b"]["totals"]["params"] == 2_567_463_684
    assert {"stage", "a", "b", "differs"} <= set(data["pairs"][0])
    markdown = invoke("compare", "sd15", "sdxl", "-f", "markdown").stdout
    assert "| up 0 | up_blocks.3 / up_blocks.2 | 18,810,560 |" in markdown
    same = invoke("compare", "sd15", "sd21", "-f", "markdown").stdout
    assert "| down_blocks.0 | 10,524,480 | 10,852,160 |" in same


def test_compare_needs_two_sources(invoke):
    result = invoke("compare", "sd15")
    assert result.exit_code == 1 and "two sources" in result.stderr


def test_profile_adds_block_latencies(invoke):
    result = invoke("compare", "tiny", "tiny", "--profile", "--height", "64", "--width", "64", "--repeat", "1",
                    "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["step_ms"]) == 2 and all(ms > 0 for ms in data["step_ms"])
    blocks = {pair["stage"]: pair for pair in data["pairs"]}
    assert blocks["mid_block"]["a"]["latency_ms"] > 0 and blocks["mid_block"]["b"]["latency_ms"] > 0


def test_ours_against_diffusers_on_the_cpu(invoke):
    pytest.importorskip("diffusers")
    result = invoke("compare", "tiny", "--impl", "diffusers", "--device", "cpu")
    assert result.exit_code == 0 and "identical block by block" in result.stdout


def test_the_side_by_side_page_draws_the_sources_it_opened_once(monkeypatch, tmp_path, invoke):
    """`compare A B -o diff.html` (the page is compare's html format) opens A and B once, not again for the
    diagrams; `-f html` asks for the same page by name."""
    from unetinspect.sources import open as open_module
    from unetinspect.sources.session import Session
    from unetinspect.views import compare as compare_module

    opened: list[object] = []
    real = open_module.open_session

    def counting(source, *args, **kwargs):
        if not isinstance(source, Session):
            opened.append(source)
        return real(source, *args, **kwargs)

    monkeypatch.setattr(open_module, "open_session", counting)
    monkeypatch.setattr(compare_module, "open_session", counting)
    result = invoke("compare", "tiny", "sd15", "-o", tmp_path / "diff.html")
    assert result.exit_code == 0, result.output
    assert opened == ["tiny", "sd15"]
    assert (tmp_path / "diff.html").read_text().lower().startswith("<!doctype html")
    by_name = invoke("compare", "tiny", "sd15", "-f", "html", "-o", tmp_path / "page.txt")
    assert by_name.exit_code == 0 and (tmp_path / "page.txt").read_text().lower().startswith("<!doctype html")
