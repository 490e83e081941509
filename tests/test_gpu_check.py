"""benchmarks/gpu_check.py runs in the suite at tiny sizes (on the CPU), so the GPU check cannot rot."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "gpu_check.py"


def test_gpu_check_runs_tiny_and_writes_its_report(tmp_path, one_thread, monkeypatch):
    pytest.importorskip("diffusers")
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_check", gpu_check)  # its dataclasses look their module up
    spec.loader.exec_module(gpu_check)
    out = gpu_check.main(["--tiny", "--out", str(tmp_path / "gpu.md")])
    text = out.read_text()
    assert "## Our model against diffusers' on the same weights" in text
    assert "| tiny | 64² | float32 |" in text
    row = next(line for line in text.splitlines() if line.startswith("| tiny |"))
    assert float(row.split("|")[7]) <= 1e-4  # max |Δ| of the outputs: the same model, two implementations
    assert "calls recorded: 2 (batch 2)" in text
    assert "## Per block: our model, first size" in text and "`down_blocks.0`" in text
