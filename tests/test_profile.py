"""Profiling a model: `profile` and `sweep` on the CPU with `tiny` (blocks that add up to the step, backends,
sweeps, compile, out of memory), and on CUDA where a GPU is present."""

from __future__ import annotations

import json

import pytest
from conftest import exhausted_model

from unetinspect.engine.timing import WallClock
from unetinspect.errors import RunError
from unetinspect.sources.inputs import InputSpec
from unetinspect.views import profile as profile_module
from unetinspect.views.profile import parse_sweep, profile, sweep

# ---- sweeps -------------------------------------------------------------------------------------------------------


def test_parse_sweep():
    base = InputSpec(batch=2, text_len=10)
    sizes = parse_sweep("256, 512x768", base)
    assert [label for label, _ in sizes] == ["256×256", "512×768"]
    assert sizes[1][1] == InputSpec(batch=2, height=512, width=768, text_len=10)
    batches = parse_sweep("batch=1,4", base)
    assert [(label, spec.batch, spec.text_len) for label, spec in batches] == [("batch 1", 1, 10), ("batch 4", 4, 10)]
    heights = parse_sweep("height=512,1024;batch=1,4", base)
    assert [label for label, _ in heights][1:3] == ["height 512, batch 4", "height 1024, batch 1"]
    assert heights[3][1] == InputSpec(batch=4, height=1024, text_len=10)
    for bad in ("batch=0", "depth=1,2", "", "batch=a", "size=1x2x3,", "height=512;frames=2"):
        with pytest.raises(RunError):
            parse_sweep(bad)


# ---- the real thing on the CPU ------------------------------------------------------------------------------------


def within_10_percent(totals) -> bool:
    return 0.9 <= totals.coverage <= 1.1 and 0.9 <= totals.overhead <= 1.1


def test_tiny_blocks_add_up_to_the_unhooked_step(one_thread):
    """The rows explain the unhooked step within 10%, and the hooks cost less than 10%.

    A machine that other jobs share preempts runs at random, and now and then a whole measurement (median of 15
    paired rounds) lands outside 10% although nothing is wrong; a real fault — a block missed, hooks that cost
    too much — fails every attempt. Hence up to three attempts, not a wider bound.
    """
    for _ in range(3):
        result = profile("tiny", device="cpu", warmup=2, repeat=15)
        if within_10_percent(result.totals):
            break
    totals = result.totals
    assert within_10_percent(totals), totals
    assert [b.path for b in result.blocks] == [
        "time_proj", "time_embedding", "conv_in", "down_blocks.0", "down_blocks.1", "down_blocks.2", "mid_block",
        "up_blocks.0", "up_blocks.1", "up_blocks.2", "conv_norm_out", "conv_act", "conv_out"]
    assert 0 <= totals.unattributed.median < 0.1 * totals.hooked_step.median
    assert totals.flops == sum(b.flops for b in result.blocks) > 0
    assert result.setup.dtype == "float32" and result.device.type == "cpu" and result.device.peak_flops is None
    assert totals.peak_memory is None and result.chrome_trace is None


def test_deeper_rows_and_the_chrome_trace(one_thread):
    result = profile("tiny", device="cpu", depth=2, warmup=0, repeat=1, chrome_trace=True)
    names = [b.name for b in result.blocks]
    assert "down_blocks.0.attentions.0" in names and "time_embedding.linear_1" in names
    events = {event.get("name") for event in json.loads(result.chrome_trace)["traceEvents"]}
    assert {"unet step", *names} <= events


def test_attention_backends_on_cpu(one_thread):
    assert profile("tiny", device="cpu", warmup=0, repeat=1, attention="math").attention == "math"
    comparison = sweep("tiny", [("small", InputSpec(height=64, width=64))], "all", device="cpu", warmup=0,
                         repeat=1)
    by_backend = {v.attention: v for v in comparison.variants}
    assert list(by_backend) == ["auto", "math", "flash", "efficient", "cudnn"]
    assert by_backend["auto"].step is not None and by_backend["math"].error is None
    for variant in comparison.variants:
        assert (variant.step is None) == (variant.error is not None)
        assert variant.error is None or "not available" in variant.error
    with pytest.raises(RunError, match="unknown attention backend"):
        profile("tiny", device="cpu", attention="fastest")


def test_sweep_over_sizes_and_batches(one_thread):
    comparison = sweep("tiny", parse_sweep("64,96") + parse_sweep("batch=1,2"), device="cpu", warmup=0,
                         repeat=2)
    assert [(v.label, v.sizes.batch, v.sizes.pixels[0]) for v in comparison.variants] == [
        ("64×64", 1, 64), ("96×96", 1, 96), ("batch 1", 1, 128), ("batch 2", 2, 128)]
    assert all(v.step is not None and v.images_per_s > 0 for v in comparison.variants)
    assert comparison.variants[3].flops == 2 * comparison.variants[2].flops


def test_compiled_model_is_timed_as_a_whole(one_thread, monkeypatch):
    monkeypatch.setattr(profile_module, "COMPILE_BACKEND", "eager")  # inductor takes minutes on a small CPU
    result = profile("tiny", device="cpu", warmup=1, repeat=2, compile=True, chrome_trace=True)
    assert result.compiled == "eager" and result.compile_s is not None and result.blocks == []
    assert result.totals.hooked_step is None and result.totals.step.n == 2
    assert any("compiled graph" in note for note in result.notes)
    assert "unet step" in result.chrome_trace


def test_out_of_memory_is_a_run_error(monkeypatch):
    exhausted_model(monkeypatch)
    with pytest.raises(RunError) as error:
        profile("tiny", InputSpec(batch=4), device="cpu", warmup=0, repeat=1)
    line = error.value.one_line()
    assert "out of memory" in line and "batch 4" in line and "128×128" in line and "Tried to allocate 20.00 GiB" in line
    assert "smaller --batch" in line and "fp16" in line
    comparison = sweep("tiny", device="cpu", warmup=0, repeat=1)
    assert comparison.variants[0].error.startswith("out of memory")


def test_the_meta_device_cannot_be_timed():
    with pytest.raises(RunError, match="meta"):
        profile("tiny", device="meta")


def test_scattered_runs_come_with_a_warning(monkeypatch):
    class ScatteredClock(WallClock):
        """Every other run ten times slower, as on a machine that something else keeps busy."""

        def __init__(self) -> None:
            self.reads = 0

        def elapsed_ms(self, start: float, end: float) -> float:
            self.reads += 1
            return 1.0 if self.reads % 2 else 10.0

    monkeypatch.setattr(profile_module, "clock_for", lambda device: ScatteredClock())
    result = profile("tiny", device="cpu", warmup=0, repeat=4, depth=0)
    assert any("scattered widely" in note for note in result.notes)


# ---- CUDA ---------------------------------------------------------------------------------------------------------


@pytest.mark.cuda
def test_cuda_profile_has_memory_and_device_facts():
    result = profile("tiny", device="cuda", warmup=1, repeat=3, chrome_trace=True)
    assert result.setup.dtype == "float16" and result.device.type == "cuda" and result.device.total_memory > 0
    assert result.totals.peak_memory > 0
    assert all(b.memory is not None and b.memory.peak >= b.memory.added >= 0 for b in result.blocks)
    names = {event.get("name") for event in json.loads(result.chrome_trace)["traceEvents"]}
    assert "mid_block" in names
