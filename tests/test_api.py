"""The public API: short, lazy, and the same results as the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import unetinspect as ui


def test_api_names_resolve_and_match_the_cli(tmp_path, invoke):
    for name in ui.__all__:
        value = getattr(ui, name)
        if name == "__version__":
            assert re.fullmatch(r"\d+\.\d+\.\d+\S*", value), value
            continue
        # ours (not a name leaking in from torch or diffusers), callable, and saying what it is for
        assert callable(value) and value.__doc__, name
        assert value.__module__.startswith("unetinspect."), (name, value.__module__)
    assert dir(ui) == sorted(ui.__all__)
    with pytest.raises(AttributeError, match="no attribute 'summarise'"):
        ui.summarise  # noqa: B018 — a misspelt name fails at once, it does not resolve to None
    summary = ui.summarize("sdxl")
    data = json.loads(invoke("summary", "sdxl", "-f", "json").stdout)
    assert summary.trace.total_params == data["totals"]["params"]
    assert summary.trace.flops == data["totals"]["flops"]
    graph = ui.diagram_graph("tiny")
    assert ui.write_diagram(graph, tmp_path / "tiny.dot").read_text().startswith("digraph")


def test_importing_the_cli_does_not_import_torch():
    code = "import sys, unetinspect.cli; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_every_documented_entry_point_is_exported():
    """docs/api.md names `ui.sweep`; the lazy API map must hold every name the docs use as `ui.NAME(`."""
    import re
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    for name in sorted(set(re.findall(r"\bui\.([a-z_]+)\(", docs))):
        assert hasattr(ui, name), f"docs/api.md uses ui.{name}, which unetinspect does not export"
