"""Timing: statistics, hook plumbing and totals arithmetic on a fake clock; CUDA clocks and memory where a GPU is
present. The profile built from them (`views/profile.py`) is tested in test_profile.py."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from unetinspect.engine.timing import BlockHooks, CudaClock, Samples, Stats, block_statistics, measure, measure_memory
from unetinspect.engine.trace import trace_model
from unetinspect.sources.inputs import InputSpec

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


# ---- CUDA ---------------------------------------------------------------------------------------------------------


@pytest.mark.cuda
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


@pytest.mark.cuda
def test_measure_memory_reads_each_block():
    from unetinspect import load_unet
    from unetinspect.sources.inputs import make_inputs
    from unetinspect.views.profile import flops_trace

    model = load_unet("tiny", device="cuda", dtype=torch.float16)
    inputs = make_inputs(model.config, InputSpec(), device="cuda", dtype=torch.float16)
    blocks = flops_trace(model.config, InputSpec(), torch.float16).at_depth(1)
    step_peak, per_block = measure_memory(model, inputs, blocks, torch.device("cuda"))
    assert set(per_block) == {b.name for b in blocks}
    assert step_peak >= max(m.peak for m in per_block.values()) > 0
