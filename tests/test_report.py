"""The HTML report and the HTML comparison, as files: self-contained, complete, and honest without Graphviz.

What they do in a browser is tested in test_report_browser.py.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import SMALL_CONFIGS

import unetinspect.render.report as report_render
from unetinspect.render.report import comparison_html, report_html
from unetinspect.views.report import build_report


@pytest.fixture(scope="module")
def tiny_report():
    return build_report("tiny")


def data_of(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_report_is_one_self_contained_file(tiny_report):
    page = report_html(tiny_report)
    assert page.startswith("<!DOCTYPE html>") and "<!--slot:" not in page
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', page), "nothing may load from the network"
    assert "@import" not in page and "url(http" not in page
    assert page.count("<svg") == 1 + len(tiny_report.layers)  # the U, and one layer diagram per block
    assert "function initReport" in page and ".tree-wrap" in page  # the JS and CSS files, inline


def test_report_data_has_every_call_and_the_blocks(tiny_report):
    data = data_of(report_html(tiny_report))
    trace = tiny_report.summary.trace
    assert len(data["rows"]) == len(trace.records) - 1
    assert [r["name"] for r in data["rows"] if r["depth"] == 1] == [r.name for r in trace.records if r.depth == 1]
    assert [m["key"] for m in data["metrics"]] == ["params", "flops", "activation"]  # latency only when timed
    assert [len(runs) for runs in data["branches"]] == [len(b.runs) for b in tiny_report.branches]
    parents = {r["index"]: r for r in data["rows"]}
    assert all(r["parent"] is None or parents[r["parent"]]["depth"] == r["depth"] - 1 for r in data["rows"])


def test_report_with_latency_times_blocks_and_layers():
    report = build_report("tiny", profile=True, device="cpu", repeat=1)
    assert "latency" in report.metrics
    assert all((r.latency_ms is not None) == (r.depth <= 2) for r in report.rows)
    data = data_of(report_html(report))
    assert data["metrics"][-1]["key"] == "latency" and len(data["branches"]) == len(report.branches)
    assert all(b.latency_ms > 0 for b in report.branches)


def test_without_dot_the_report_says_so_and_keeps_the_blocks(tiny_report, monkeypatch):
    monkeypatch.setattr(report_render.shutil, "which", lambda name: None)
    page = report_html(tiny_report)
    assert "<svg" not in page and "dot program was not installed" in page
    assert page.count('<button type="button" class="node"') == sum(1 for r in tiny_report.rows if r.depth == 1)


def test_report_command_writes_the_page(tmp_path, invoke):
    out = tmp_path / "r.html"
    result = invoke("report", "tiny", "-o", out)
    assert result.exit_code == 0, result.output
    assert data_of(out.read_text())["kind"] == "report"


def test_report_command_refuses_a_missing_folder_before_working(tmp_path, invoke):
    result = invoke("report", "tiny", "-o", tmp_path / "nope" / "r.html")
    assert result.exit_code == 1 and "does not exist" in result.output
    assert "Traceback" not in result.output


def test_compare_to_html_marks_added_removed_and_changed_blocks(tmp_path, write_config, invoke):
    other = write_config(SMALL_CONFIGS["sdxl-like"])
    out = tmp_path / "diff.html"
    result = invoke("compare", "tiny", other, "-o", out)
    assert result.exit_code == 0, result.output
    page = out.read_text()
    status = data_of(page)["status"]
    assert status["b"]["add_embedding"] == "added" and status["a"]["time_proj"] == "same"
    assert "changed" in status["a"].values()
    assert page.count("<svg") == 2 and 'id="comparison"' in page


def test_identical_sources_compare_as_all_same():
    from unetinspect.views.compare import compare
    from unetinspect.views.report import comparison_graphs

    result = compare("tiny", "tiny")
    status = data_of(comparison_html(result, comparison_graphs("tiny", "tiny")))["status"]
    assert set(status["a"].values()) == {"same"} == set(status["b"].values())
