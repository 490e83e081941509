"""The product's text, as reviewers read it: the main tables compared with files kept in tests/golden/.

A change to what `summary sd15`, `compare sd15 sdxl` or the layout of `profile` prints fails here and shows up as
a diff of the golden file in review. After an intended change, regenerate them:

    UNETINSPECT_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py

The profile's numbers (times, rates, the CPU's name) differ on every run and machine: they are masked, so its
golden file holds the layout — the rows, the columns, the lines under the table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UNETINSPECT_UPDATE_GOLDEN") == "1"


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with UNETINSPECT_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(), f"{name} changed: if on purpose, regenerate it (see this module's docstring)"


def table(invoke, *args: str) -> str:
    result = invoke(*args, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()) + "\n"


def masked(text: str) -> str:
    """The layout of a timed table: numbers → #, the device's name → DEVICE, runs of spaces → one."""
    text = re.sub(r"(tokens · ).*?( · float32)", r"\1DEVICE\2", text)
    text = re.sub(r"[-+]?\d[\d.,]*", "#", text)
    text = re.sub(r"# [kMGTP]?(FLOP/s|FLOPs|s|ms|µs|B|iB)\b", r"# \1", text)  # the unit's prefix moves with the number
    text = re.sub(r"─+", "─", text)  # a rule is as wide as the columns, which the numbers widen
    return "\n".join(re.sub(r" {2,}", " ", line) for line in text.splitlines()) + "\n"


def test_summary_sd15(invoke):
    check("summary_sd15.txt", table(invoke, "summary", "sd15"))


def test_compare_sd15_sdxl(invoke):
    check("compare_sd15_sdxl.txt", table(invoke, "compare", "sd15", "sdxl"))


@pytest.mark.usefixtures("one_thread")
def test_profile_layout(invoke):
    text = table(invoke, "profile", "tiny", "--device", "cpu", "--warmup", "0", "--repeat", "1")
    check("profile_tiny_layout.txt", masked(text))
