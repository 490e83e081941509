"""Timing: statistics, hook plumbing and totals arithmetic on a fake clock; the real profile on the CPU with `tiny`;
the CUDA path where a GPU is present."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import exhausted_model
from torch import nn

from unetinspect.analysis import profile as profile_module
from unetinspect.analysis.inputs import InputSpec
from unetinspect.analysis.profile import parse_sweep, profile, sweep
from unetinspect.analysis.timing import (BlockHooks, CudaClock, Samples, Stats, WallClock, measure, measure_memory,
                                         block_statistics)
from unetinspect.analysis.trace import trace_model
from unetinspect.errors import RunError

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# ---- statistics ---------------------------------------------------------------------------------------------------


def test_stats_of_known_samples():
    stats = Stats.of([float(v) for v in range(11, 0, -1)])  # 1..11, unsorted
    assert (stats.median, stats.p10, stats.p90, stats.min, stats.max, stats.n) == (6, 2, 10, 1, 11, 11)


def test_stats_interpolate_and_take_a_single_sample():
    assert Stats.of([0.0, 10.0]).p10 == pytest.approx(1.0)
    assert Stats.of([0.0, 10.0]).median == 5.0
    single = Stats.of([3.5])
    assert single.median == single.p10 == single.p90 == single.min == single.max == 3.5
    with pytest.raises(ValueError):
        Stats.of([])


# ---- hooks and arithmetic on a fake clock -------------------------------------------------------------------------


class FakeClock:
    """Time advances only when the toy model says so: every figure of a run is known exactly."""

    def __init__(self) -> None:
        self.now = 0.0

    def mark(self) -> float:
        return self.now

    def wait(self) -> None:
        return None

    def elapsed_ms(self, start: float, end: float) -> float:
        return end - start


class Cost(nn.Module):
    def __init__(self, clock: FakeClock, ms: float) -> None:
        super().__init__()
        self.clock, self.ms = clock, ms
        self.scale = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.ms
        return self.scale(x)


class Toy(nn.Module):
    """Three blocks (one called twice) and 0.5 ms of glue between them, as a UNet's forward has."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.first = Cost(clock, 2.0)
        self.shared = Cost(clock, 1.0)
        self.last = Cost(clock, 4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shared(self.first(x))
        self.clock.now += 0.5
        return self.last(self.shared(x))


@pytest.fixture
def toy():
    clock = FakeClock()
    model = Toy(clock)
    inputs = {"x": torch.ones(1, 2)}
    return clock, model, inputs, trace_model(model, inputs)


def test_block_hooks_name_each_call_and_go_away(toy):
    clock, model, inputs, trace = toy
    events: list[str] = []
    blocks = trace.at_depth(1)
    assert [r.name for r in blocks] == ["first", "shared", "shared#2", "last"]
    with BlockHooks(model, blocks, enter=lambda n: events.append(f"+{n}"), leave=lambda n: events.append(f"-{n}")):
        model(**inputs)
    assert events == ["+first", "-first", "+shared", "-shared", "+shared#2", "-shared#2", "+last", "-last"]
    model(**inputs)
    assert len(events) == 8  # removed: nothing more was recorded
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_block_hooks_only_the_chosen_calls(toy):
    clock, model, inputs, trace = toy
    events: list[str] = []
    second_shared = [r for r in trace.at_depth(1) if r.name == "shared#2"]
    with BlockHooks(model, second_shared, enter=events.append, leave=events.append):
        model(**inputs)
    assert events == ["shared#2", "shared#2"]


def test_measure_and_totals_arithmetic(toy):
    clock, model, inputs, trace = toy
    blocks = trace.at_depth(1)
    seen = []
    samples = measure(model, inputs, blocks, warmup=2, repeat=3, clock=clock,
                      progress=lambda *args: seen.append(args))
    assert samples.step == [8.5] * 3 and samples.hooked_step == [8.5] * 3
    assert samples.blocks == {"first": [2.0] * 3, "shared": [1.0] * 3, "shared#2": [1.0] * 3, "last": [4.0] * 3}
    assert samples.blocks_sum() == [8.0] * 3 and samples.unattributed() == [0.5] * 3
    assert seen[-1] == ("timing", 3, 3) and ("warmup", 2, 2) in seen

    rows, totals = block_statistics(samples, blocks, trace.flops, peak_flops=1e6)
    assert totals.overhead == 1.0 and totals.coverage == pytest.approx(8.0 / 8.5)
    assert totals.unattributed.median == 0.5
    last = rows[-1]
    assert last.share == pytest.approx(4.0 / 8.5)
    assert last.flops == trace.find("last").flops > 0
    assert last.flops_per_s == pytest.approx(last.flops / 4e-3)
    assert last.mfu == pytest.approx(last.flops_per_s / 1e6)
    assert last.memory is None and totals.peak_memory is None


def test_summarize_without_hooked_runs():
    samples = Samples(step=[10.0, 12.0, 11.0], hooked_step=[], blocks={})
    rows, totals = block_statistics(samples, [], total_flops=1_000)
    assert rows == [] and totals.step.median == 11.0
    assert totals.hooked_step is totals.blocks_sum is totals.overhead is totals.coverage is None
    assert totals.flops_per_s == pytest.approx(1_000 / 0.011) and totals.mfu is None


# ---- sweeps -------------------------------------------------------------------------------------------------------


def test_parse_sweep():
    base = InputSpec(batch=2, text_len=10)
    sizes = parse_sweep("256, 512x768", base)
    assert [label for label, _ in sizes] == ["256×256", "512×768"]
    assert sizes[1][1] == InputSpec(batch=2, height=512, width=768, text_len=10)
    batches = parse_sweep("batch=1,4", base)
    assert [(label, spec.batch, spec.text_len) for label, spec in batches] == [("batch 1", 1, 10), ("batch 4", 4, 10)]
    for bad in ("batch=0", "height=1,2", "", "batch=a", "size=1x2x3,"):
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


# ---- CUDA ---------------------------------------------------------------------------------------------------------


@cuda
def test_cuda_clock_times_the_device_not_the_host():
    device = torch.device("cuda")
    clock = CudaClock(device)
    a = torch.randn(2048, 2048, device=device)
    start = clock.mark()
    for _ in range(20):
        a @ a
    end = clock.mark()
    clock.wait()
    assert clock.elapsed_ms(start, end) > 0


@cuda
def test_cuda_profile_has_memory_and_device_facts():
    result = profile("tiny", device="cuda", warmup=1, repeat=3, chrome_trace=True)
    assert result.dtype == "float16" and result.device.type == "cuda" and result.device.total_memory > 0
    assert result.totals.peak_memory > 0
    assert all(b.memory is not None and b.memory.peak >= b.memory.added >= 0 for b in result.blocks)
    names = {event.get("name") for event in json.loads(result.chrome_trace)["traceEvents"]}
    assert "mid_block" in names


@cuda
def test_measure_memory_reads_each_block():
    from unetinspect import load_unet
    from unetinspect.analysis.inputs import make_inputs
    from unetinspect.analysis.profile import flops_trace

    model = load_unet("tiny", device="cuda", dtype=torch.float16)
    inputs = make_inputs(model.config, InputSpec(), device="cuda", dtype=torch.float16)
    blocks = flops_trace(model.config, InputSpec(), torch.float16).at_depth(1)
    step_peak, per_block = measure_memory(model, inputs, blocks, torch.device("cuda"))
    assert set(per_block) == {b.name for b in blocks}
    assert step_peak >= max(m.peak for m in per_block.values()) > 0


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
