"""The output layer: one declaration of columns gives the same rows in table, CSV and Markdown; one JSON schema key
everywhere, never NaN; tables that fit 80, 100 and 200 columns without losing the module path or cutting a number."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math

import pytest
from conftest import our_unet, save_folder, tiny
from rich.console import Console

from unetinspect.engine.hardware import DeviceInfo
from unetinspect.engine.timing import BlockMemory, BlockTiming, Stats, StepTiming
from unetinspect.render.compare_view import CompareView
from unetinspect.render.formats import CSV, MARKDOWN, SCHEMA, TABLE, View, cells, json_text, plain, render, shown_columns
from unetinspect.render.profile_view import ProfileView, SweepView
from unetinspect.render.summary_view import SummaryView
from unetinspect.sources.session import Setup
from unetinspect.views.compare import compare
from unetinspect.views.profile import Profile, Sweep, Variant
from unetinspect.views.summary import summarize

WIDTHS = (80, 100, 200)


H200 = DeviceInfo("cuda", "NVIDIA H200", 141 * 2**30, 989e12)


def on_gpu(setup: Setup) -> Setup:
    return dataclasses.replace(setup, device="cuda:0", dtype="float16", weights="random weights")


def stats(median: float) -> Stats:
    return Stats(median, 0.9 * median, 1.2 * median, 0.8 * median, 1.5 * median, 10)


@pytest.fixture(scope="module")
def sdxl():
    return summarize("sdxl")


@pytest.fixture(scope="module")
def sd15_vs_sdxl():
    return compare("sd15", "sdxl")


@pytest.fixture(scope="module")
def gpu_profile(sdxl) -> Profile:
    """SDXL's blocks as a GPU would time them: every optional column (MFU, memory) present, long numbers."""
    records = sdxl.trace.at_depth(1)
    step = stats(1234.5)
    blocks = [BlockTiming(r.name, r.path, r.type, r.depth, r.params, r.flops, stats(100.0 + i), (100.0 + i) / 1234.5,
                          r.flops / 0.1 if r.flops else None, 0.4 if r.flops else None,
                          BlockMemory(12 * 2**30 + i, 512 * 2**20))
              for i, r in enumerate(records)]
    totals = StepTiming(step, stats(1250.0), stats(1200.0), stats(50.0), 1.013, 0.97, sdxl.trace.flops,
                        sdxl.trace.flops / 1.2345, 0.41, 14 * 2**30)
    return Profile(on_gpu(sdxl.setup), H200, 1, 2, 10, "auto", None, None, blocks, totals,
                   ["a note that is long enough to wrap on a narrow terminal"])


@pytest.fixture(scope="module")
def sweep_result(sdxl) -> Sweep:
    sizes = sdxl.setup.sizes
    variants = [Variant("512×512", "flash", dataclasses.replace(sizes, latent=(64, 64), pixels=(512, 512)), 10**12,
                        stats(20.0), 5 * 2**30),
                Variant("1024×1024", "math", dataclasses.replace(sizes, batch=4), 10**13, None, None,
                        "out of memory: CUDA out of memory. Tried to allocate 20.00 GiB")]
    return Sweep(on_gpu(sdxl.setup), H200, 2, 10, None, variants)


def views(sdxl, gpu_profile, sweep_result, sd15_vs_sdxl) -> list[tuple[View, object]]:
    return [(SummaryView(2), sdxl), (ProfileView(), gpu_profile), (SweepView(), sweep_result),
            (CompareView(), sd15_vs_sdxl)]


def drawn(view: View, result: object, width: int) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), no_color=True)
    console.print(view.table(result))
    return console.export_text()


# ---- one declaration ---------------------------------------------------------------------------------------------


def test_table_csv_and_markdown_have_the_same_rows(sdxl, gpu_profile, sweep_result, sd15_vs_sdxl):
    for view, result in views(sdxl, gpu_profile, sweep_result, sd15_vs_sdxl):
        rows = [*view.rows(result), *view.footer(result)]
        first = shown_columns(view, result, TABLE)[0]
        names = [plain(cells([first], row, TABLE)[0]).strip() for row in rows]

        table = drawn(view, result, 200)
        position = 0
        for name in names:  # every row in the table, in order
            position = table.index(name, position) + len(name)

        records = list(csv.reader(io.StringIO(render(view, CSV, result))))
        assert len(records) == 1 + len(rows), view.kind
        assert records[0] == [column.key for column in shown_columns(view, result, CSV)]

        markdown = render(view, MARKDOWN, result)
        table_lines = [line for line in markdown.splitlines() if line.startswith("| ")]
        assert len(table_lines) == 2 + len(rows), view.kind  # the header, its alignment, a line per row
        assert len(table_lines[0].split(" | ")) == len(shown_columns(view, result, MARKDOWN))


def test_csv_keeps_every_column_where_the_table_leaves_some_out(gpu_profile):
    """A CPU profile has no MFU or memory: the table and Markdown leave them out, the CSV header stays the same."""
    on_cpu = dataclasses.replace(gpu_profile, device=DeviceInfo("cpu", "a CPU", None, None),
                                 totals=dataclasses.replace(gpu_profile.totals, peak_memory=None))
    view = ProfileView()
    for fmt in (TABLE, MARKDOWN):
        assert "mfu" not in [c.key for c in shown_columns(view, on_cpu, fmt)]
        assert "mfu" in [c.key for c in shown_columns(view, gpu_profile, fmt)]
    assert [c.key for c in shown_columns(view, on_cpu, CSV)] == [c.key for c in shown_columns(view, gpu_profile, CSV)]


def test_every_json_document_has_the_schema_key_and_kind(sdxl, gpu_profile, sweep_result, sd15_vs_sdxl,
                                                           invoke):
    for view, result in views(sdxl, gpu_profile, sweep_result, sd15_vs_sdxl):
        data = json.loads(render(view, "json", result))
        assert data["schema"] == SCHEMA and data["kind"] == view.kind and "schema_version" not in data
    for args in (["summary", "tiny"], ["compare", "tiny", "tiny"], ["presets"]):
        data = json.loads(invoke(*args, "-f", "json").stdout)
        assert data["schema"] == SCHEMA and data["kind"] == args[0]


def test_weights_json_says_schema_not_schema_version(tmp_path, invoke):
    save_folder(our_unet(tiny()), tmp_path)
    result = invoke("weights", tmp_path, "-f", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["schema"] == SCHEMA and data["kind"] == "weights" and "schema_version" not in data


def test_the_setup_header_is_the_same_in_every_format(sdxl):
    view = SummaryView(1)
    heading = view.heading(sdxl)[0]
    assert "1024×1024 px (latent 128×128)" in heading
    assert heading in drawn(view, sdxl, 200)
    assert f"**{heading}**" in render(view, MARKDOWN, sdxl)
    setup = json.loads(render(view, "json", sdxl))["setup"]
    assert setup["label"] == "sdxl" and setup["latent"] == [128, 128]
    assert setup["pixels"] == [1024, 1024] and setup["dtype"] == "float32"


# ---- JSON never holds NaN or Infinity ------------------------------------------------------------------------------


def _no_constants(name: str) -> float:
    raise AssertionError(f"{name} in JSON")


def test_non_finite_numbers_become_null():
    text = json_text({"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": {"d": (math.nan, 2)}})
    assert json.loads(text, parse_constant=_no_constants) == {"a": None, "b": [None, None, 1.5], "c": {"d": [None, 2]}}


def test_a_profile_with_nan_timings_is_still_json(gpu_profile):
    broken = dataclasses.replace(gpu_profile, totals=dataclasses.replace(gpu_profile.totals, overhead=math.nan,
                                                                           mfu=math.inf))
    data = json.loads(render(ProfileView(), "json", broken), parse_constant=_no_constants)
    assert data["totals"]["overhead"] is None and data["totals"]["mfu"] is None
    csv_rows = list(csv.DictReader(io.StringIO(render(ProfileView(), CSV, broken))))
    assert csv_rows[-1]["path"] == "(step)" and csv_rows[-1]["mfu"] == ""


# ---- narrow terminals ------------------------------------------------------------------------------------------


def _fits(text: str, width: int) -> None:
    assert max(len(line.rstrip()) for line in text.splitlines()) <= width
    assert "…" not in text  # nothing cut


def _keeps(view: View, result: object, text: str, keys: tuple[str, ...]) -> None:
    """Every row starts a line of the table with its first cell, and that line holds its `keys` cells whole."""
    columns = [column for column in view.columns if column.key in keys]
    lines = iter(text.splitlines())
    for row in [*view.rows(result), *view.footer(result)]:
        name = plain(view.columns[0].text(row)).strip()
        line = next(t for t in lines if t.split() and t.split()[0] == name)  # rows in order, names may repeat
        for column in columns:
            assert plain(column.text(row)) in line, (name, column.key)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("depth", [1, 3])
def test_summary_keeps_module_params_and_flops(sdxl, width, depth):
    view = SummaryView(depth)
    text = drawn(view, sdxl, width)
    _fits(text, width)
    _keeps(view, sdxl, text, ("params", "flops"))
    for part in view.heading(sdxl)[0].split(" · "):
        assert part in text  # the heading wraps between its parts, it is not cut
    if depth == 1:
        assert ("skips in ←" not in text) == (width == 80) and ("input" not in text) == (width < 200)


@pytest.mark.parametrize("width", WIDTHS)
def test_profile_keeps_block_median_and_share(gpu_profile, width):
    view = ProfileView()
    text = drawn(view, gpu_profile, width)
    _fits(text, width)
    _keeps(view, gpu_profile, text, ("median_ms", "share"))
    assert "NVIDIA H200" in text
    assert ("p10–p90 ms" in text) == (width == 200)  # the spread is the first to go


@pytest.mark.parametrize("width", WIDTHS)
def test_sweep_keeps_variants_and_their_status(sweep_result, width):
    text = drawn(SweepView(), sweep_result, width)
    _fits(text, width)
    assert "1024×1024" in text and "20.00" in text and "out of memory" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_compare_keeps_blocks_and_both_sides_numbers(sd15_vs_sdxl, width):
    text = drawn(CompareView(), sd15_vs_sdxl, width)
    _fits(text, width)
    for number in ("258.3M", "1.2B", "151.5G", "2.4T"):  # up 2: params and FLOPs of A and of B
        assert number in text
    assert "up_blocks.1 /" in text and "A = sd15" in text and "B = sdxl" in text


def test_cells_are_not_read_as_markup():
    from unetinspect.render.presets_view import PresetRow, PresetsView

    rows = [PresetRow("[bold]x", 1, "a [red]description[/red] from a file")]
    text = drawn(PresetsView(), rows, 120)
    assert "[bold]x" in text and "a [red]description[/red] from a file" in text
