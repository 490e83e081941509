"""Work that fits in memory but would run for hours — refused (or announced) before the long runs, from one batch-1
run's FLOP rate — and Ctrl-C at any point of a command: exit code 130, one line, nothing half-written."""

from __future__ import annotations

import pytest
from bad_input import OUTPUT, assert_one_line_failure, refused, untouched

import unetinspect.views.profile as profile_module
from unetinspect.errors import LongRunWarning, RunError
from unetinspect.sources.inputs import InputSpec


def _no_timed_runs(*args, **kwargs):
    raise AssertionError("the timed runs started")


@pytest.mark.parametrize("options", [[], ["--sweep", "batch=1,3000"], ["--branches"]],
                         ids=["profile", "sweep", "branches"])
def test_long_work_is_refused_before_the_timed_runs(options, monkeypatch, tmp_path, invoke):
    monkeypatch.setattr(profile_module, "measure", _no_timed_runs)
    # 3000 steps' worth of FLOPs per run: 108 s at the rate the tests pin
    message = refused(invoke, tmp_path, "profile", "tiny", "--device", "cpu", "--batch", 3000, "--max-seconds", 1,
                      *options, "-o", tmp_path / OUTPUT, words="over the limit of 1.0 s")
    assert "GFLOP/s a batch-1 run reached" in message and "--max-seconds" in message and "--batch" in message


def test_the_library_refuses_and_no_limit_is_none(monkeypatch):
    monkeypatch.setattr(profile_module, "measure", _no_timed_runs)
    with pytest.raises(RunError, match="over the limit"):
        profile_module.profile("tiny", InputSpec(batch=3000), device="cpu", max_seconds=1)
    with pytest.raises(RunError, match="over the limit"):
        profile_module.sweep("tiny", [("big", InputSpec(batch=3000))], device="cpu", max_seconds=1)
    with pytest.raises(AssertionError, match="timed runs started"):  # None: no estimate stands in the way
        profile_module.profile("tiny", InputSpec(batch=2), device="cpu", max_seconds=None)


@pytest.mark.measured_rate
def test_a_long_estimate_is_said_before_the_runs(monkeypatch, tmp_path, invoke):
    monkeypatch.setattr(profile_module, "ANNOUNCE_SECONDS", 0.0)
    with pytest.warns(LongRunWarning, match="this will run about"):
        profile_module.profile("tiny", device="cpu", warmup=0, repeat=1)
    with untouched(tmp_path, "profile: announced"):
        result = invoke("profile", "tiny", "--device", "cpu", "--warmup", 0, "--repeat", 1, "-f", "json")
    assert result.exit_code == 0
    assert [line for line in result.stderr.splitlines() if line.startswith("warning: this will run about")]


# ---- Ctrl-C ---------------------------------------------------------------------------------------------------------


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("target,command", [
    ("unetinspect.render.export.check_output_path", ["summary", "tiny"]),  # in the CLI itself, before any work
    ("unetinspect.views.summary.summarize", ["summary", "tiny"]),  # inside the library's work
    ("unetinspect.views.profile.measure", ["profile", "tiny", "--device", "cpu", "--trace", "trace.json"]),
    ("unetinspect.render.export.os.replace", ["summary", "tiny"]),  # the output written, not yet in place
    ("unetinspect.render.graph.render", ["diagram", "tiny", "-f", "dot"]),
], ids=["cli", "summary", "profile", "writing", "diagram"])
def test_ctrl_c_exits_130_with_nothing_written(target, command, monkeypatch, tmp_path, invoke):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(target, _interrupt)
    with untouched(tmp_path, f"ctrl-c: {target}"):
        message = assert_one_line_failure(invoke(*command, "-o", tmp_path / OUTPUT), tmp_path, exit_code=130)
    assert message == "error: interrupted"
