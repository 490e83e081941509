"""The page `unetinspect run -o run.html` writes, in a real browser (headless Debian Chromium via Playwright, from
file://): the image shows, the tables of times and drift are there, the cached image sits beside the uncached one,
and hovering a token draws its map see-through over the generated image in every block. Skipped where
Playwright, the browser, diffusers or transformers is missing.
"""

from __future__ import annotations

import os

import pytest
from test_report_browser import CHROMIUM_ARGS, DOCS_IMAGES, Page, sync_api
from test_report_browser import browser as browser  # noqa: F401  the module's browser fixture, shared

from unetinspect.render.run_view import run_html

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
assert CHROMIUM_ARGS and sync_api  # the skip rules of the report's browser tests apply here too


@pytest.fixture(scope="module")
def run_page(tiny_pipeline, tmp_path_factory):
    from unetinspect.views.run import CacheOption, run_pipeline

    folder = tmp_path_factory.mktemp("run") / "pipe"
    tiny_pipeline.save_pretrained(folder)
    return run_pipeline(folder, "a cat", steps=3, seed=0, device="cpu", cache=CacheOption(interval=2))


def test_the_run_page_shows_the_image_times_drift_cache_and_maps_over_the_image(browser, run_page, tmp_path):  # noqa: F811
    page = Page(browser, run_html(run_page), tmp_path / "run.html")
    images = page.page.locator("img")
    assert images.count() == 4  # the image, the drift heatmap, then uncached and cached side by side
    widths = page.page.evaluate("() => Array.from(document.images, i => i.complete ? i.naturalWidth : 0)")
    assert widths[0] == widths[2] == widths[3] == 32 and widths[1] > 100
    page.page.locator("#drift summary").click()  # the numbers under the heatmap
    assert page.page.locator("#times table tbody tr").count() == len(run_page.block_ms) + 1  # + the UNet call
    assert page.page.locator("#drift table tbody tr").count() == len(run_page.drift.blocks)
    tokens = page.page.locator("#attention .token")
    assert tokens.all_inner_texts()[:4] == ["a", "c", "a", "t"]
    canvases = page.page.locator("#attention canvas.over")
    assert canvases.count() == len(run_page.attention.grid().columns)
    alpha = "cs => cs.map(c => c.getContext('2d').getImageData(0, 0, 1, 1).data[3])"
    tokens.nth(2).hover()
    assert set(page.page.eval_on_selector_all("#attention canvas", alpha)) == {150}  # see-through: image below
    assert page.page.eval_on_selector_all("#attention canvas", "cs => cs.map(c => c.dataset.token)") == ["2"] * 6
    assert page.errors == []
    folder = DOCS_IMAGES if os.environ.get("UNETINSPECT_SCREENSHOTS") else tmp_path
    page.page.screenshot(path=str(folder / "run-tiny.png"), full_page=True)
    assert (folder / "run-tiny.png").stat().st_size > 10_000
