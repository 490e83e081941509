"""The HTML report in a real browser: headless Debian Chromium driven by Playwright, pages loaded from file://.

Skipped where Playwright or the browser is missing. With UNETINSPECT_SCREENSHOTS=1 the sd15 and sdxl
screenshots are written to docs/images/ (otherwise to a temporary folder, so the code path still runs).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from unetinspect.render.colormap import COLOURS, level
from unetinspect.render.report import report_html
from unetinspect.views.report import build_report

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Exception as exc:  # a browser that cannot start here (no shared memory, sandbox): skip, not fail
            pytest.skip(f"chromium did not start: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


class Page:
    """A report opened from disk, with every console error and uncaught exception kept."""

    def __init__(self, browser, html: str, path: Path) -> None:
        path.write_text(html, encoding="utf-8")
        self.errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1500, "height": 1100})
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.as_uri())

    def fills(self, container: str = "#diagram") -> dict[str, str]:
        return self.page.eval_on_selector_all(
            f"{container} .node[data-value]",
            "nodes => Object.fromEntries(nodes.map(n => [n.id, (n.querySelector('path,polygon') || n)"
            ".getAttribute('fill') || n.style.background]))")


@pytest.fixture(scope="module")
def tiny_report():
    return build_report("tiny")


def check_report(browser, report, path: Path) -> Page:
    """The checks every report must pass: no errors, one coloured node per block, recolouring, click-to-focus."""
    page = Page(browser, report_html(report), path)
    blocks = [r.name for r in report.summary.trace.records if r.depth == 1]
    before = page.fills()
    assert sorted(before) == sorted(blocks)  # one block node per traced block, each coloured by the metric
    page.page.select_option("#metric", "activation")
    after = page.fills()
    assert after != before and sorted(after) == sorted(blocks)
    downs = [r for r in report.rows if r.depth == 1 and r.name.startswith("down_blocks")]
    target = next((r for r in downs if "CrossAttn" in r.type), downs[0])  # a block with attention shows most
    page.page.locator(f'#diagram .node[id="{target.name}"]').click()
    selected = page.page.locator("#tree tr.selected")
    assert selected.count() == 1 and target.name in selected.inner_text()
    children = [r.name.split(".", 2)[-1] for r in report.rows if r.parent == target.index]
    tree_text = page.page.locator("#tree tbody").inner_text()
    assert all(child in tree_text for child in children)  # the block is open in the tree
    assert page.page.locator("#layers .node").count() >= len(children)  # and its layer diagram shows
    assert page.errors == []
    return page


def test_tiny_report_in_the_browser(browser, tiny_report, tmp_path):
    page = check_report(browser, tiny_report, tmp_path / "tiny.html")
    page.page.locator('#tree th[data-key="flops"]').click()  # sort each level by FLOPs, largest first
    first = page.page.locator("#tree tbody tr").first.inner_text()
    top = max((r for r in tiny_report.rows if r.depth == 1), key=lambda r: r.flops)
    assert first.split("\t")[0].strip("▸▾ ") == top.name
    page.page.locator("#tree tbody tr button[data-toggle]").first.click()  # a toggle closes/opens a row
    assert page.errors == []


def test_a_branch_shows_on_the_diagram(browser, tiny_report, tmp_path):
    page = Page(browser, report_html(tiny_report), tmp_path / "branches.html")
    shallowest = tiny_report.branches[0]  # conv_in → the last up block: every inner level is skipped
    page.page.locator('#branches tr[data-branch="0"]').click()
    skipped = set(page.page.eval_on_selector_all("#diagram .node.skipped", "ns => ns.map(n => n.id)"))
    ran_blocks = {name.split(".")[0] if not name.startswith(("down_blocks", "up_blocks")) else
                  ".".join(name.split(".")[:2]) for name in shallowest.runs}
    blocks = {r.name for r in tiny_report.rows if r.depth == 1}
    assert skipped == blocks - ran_blocks and "mid_block" in skipped
    page.page.locator('#branches tr[data-branch="0"]').click()  # again: cleared
    assert page.page.locator("#diagram .node.skipped").count() == 0
    assert page.errors == []


def test_report_without_dot_still_works_in_the_browser(browser, tiny_report, tmp_path, monkeypatch):
    import unetinspect.render.report as report_render

    monkeypatch.setattr(report_render.shutil, "which", lambda name: None)
    page = Page(browser, report_html(tiny_report), tmp_path / "nodot.html")
    assert page.page.locator("#diagram button.node[data-value]").count() == sum(
        1 for r in tiny_report.rows if r.depth == 1)
    page.page.locator('#diagram button.node[id="mid_block"]').click()
    assert "mid_block" in page.page.locator("#tree tr.selected").inner_text()
    assert page.errors == []


def test_comparison_page_in_the_browser(browser, tmp_path):
    from unetinspect.render.report import comparison_html
    from unetinspect.views.compare import compare
    from unetinspect.views.report import comparison_graphs

    result = compare("tiny", "sd15")
    page = Page(browser, comparison_html(result, comparison_graphs("tiny", "sd15")), tmp_path / "diff.html")
    marked = page.page.eval_on_selector_all("#diagram-a .node[data-status]", "ns => ns.map(n => n.dataset.status)")
    assert len(marked) == sum(1 for r in result.a.trace.records if r.depth == 1) and "changed" in marked
    page.page.locator("#comparison tbody tr").nth(4).click()
    assert page.page.locator(".node.focused").count() >= 1
    assert page.errors == []


@pytest.mark.skipif(shutil.which("dot") is None, reason="screenshots show the diagram: needs Graphviz's dot")
@pytest.mark.parametrize("preset", ["sd15", "sdxl"])
def test_screenshots_of_real_reports(browser, preset, tmp_path):
    report = build_report(preset)
    page = check_report(browser, report, tmp_path / f"{preset}.html")
    page.page.select_option("#metric", "flops")
    page.page.evaluate("window.scrollTo(0, 0)")
    folder = DOCS_IMAGES if os.environ.get("UNETINSPECT_SCREENSHOTS") else tmp_path
    page.page.screenshot(path=str(folder / f"report-{preset}.png"), full_page=True)
    assert (folder / f"report-{preset}.png").stat().st_size > 10_000


def test_attention_section_draws_the_hovered_tokens_map_in_every_block(browser, tmp_path):
    import dataclasses

    from unetinspect.views.attention import attention_maps

    maps = attention_maps("tiny", device="cpu", tokens="a,photo,of,a,cat")
    c = 2  # a block's column
    report = dataclasses.replace(build_report("tiny"), attention=maps.grid())
    page = Page(browser, report_html(report), tmp_path / "attention.html")
    tokens = page.page.locator("#attention .token")
    assert tokens.all_inner_texts() == ["a", "photo", "of", "a", "cat"]
    canvases = page.page.locator("#attention canvas")
    assert canvases.count() == len(report.attention.columns) == 6  # tiny's 5 blocks with attention, all layers
    pixels = "cs => cs.map(c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data))"
    first = page.page.eval_on_selector_all("#attention canvas", pixels)
    tokens.nth(1).hover()
    assert page.page.eval_on_selector_all("#attention canvas", "cs => cs.map(c => c.dataset.token)") == ["1"] * 6
    hovered = page.page.eval_on_selector_all("#attention canvas", pixels)
    assert hovered != first
    # painted with the PNG grid's own colour map: the level of each value of the block's map, in the one table
    grid = report.attention
    expected = [[*COLOURS[level(v, grid.column_max[c])], 255] for line in grid.cells[1][c] for v in line]
    assert [hovered[c][i:i + 4] for i in range(0, len(hovered[c]), 4)] == expected
    assert "selected" in tokens.nth(1).get_attribute("class")
    assert page.errors == []


def test_training_memory_in_the_report(browser, tmp_path):
    """`report --train`: the blocks coloured by what they save for backward, a `saved` column, the totals and
    where the peak falls — the figures `memory --train` gives."""
    from unetinspect.views.memory import Training, memory

    training = Training(checkpointing=True)
    report = build_report("tiny", train=True, training=training)
    measured = memory("tiny", train=True, training=training)
    page = check_report(browser, report, tmp_path / "train.html")
    page.page.select_option("#metric", "saved")
    fills = page.fills()
    assert len(set(fills.values())) > 2  # the blocks save different amounts, so their colours differ
    most = max(measured.rows(1), key=lambda c: c.saved_bytes)
    value = page.page.locator(f'#diagram .node[id="{most.path}"]').get_attribute("data-value")
    assert int(value) == most.saved_bytes
    assert page.page.locator('#tree th[data-key="saved"]').count() == 1
    section = page.page.locator("#memory").inner_text()
    assert measured.peak_at in section and "optimizer step" in section
    assert page.page.locator("#memory-blocks tbody tr").count() == len(measured.rows(1))
    page.page.locator("#memory").scroll_into_view_if_needed()
    page.page.screenshot(path=str(tmp_path / "report-train.png"), full_page=True)
    shutil.copy(tmp_path / "report-train.png", os.environ.get("UNETINSPECT_TRAIN_SHOT", tmp_path / "copy.png"))
    assert page.errors == []
