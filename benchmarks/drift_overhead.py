"""What `watch(drift=True)` costs per step, and whether a cache plan saves what it predicts — in one CPU run.

1. Drift's price, two ways. Directly: the UNet's real block outputs of two calls are replayed through identity
   modules watched with and without drift, so the difference is the drift's own work per step (its hooks, five
   reductions and one copy per block), against the bare step's time — steady, whatever else the machine runs.
   And in the loop: a denoising-like loop of `--steps` UNet calls of `--preset` (each call's output moves the
   sample, so the blocks really drift), run bare, inside `watch()` and inside `watch(drift=True)` in alternating
   rounds; the median over rounds of each watched loop over the bare one, per step.
2. A cache's saving: the drift measured in (1) gives Block Caching's plan at `--threshold`, and DeepCache's
   uniform schedule `--interval`/`--branch` is the other; each loop is run uncached and cached in alternating
   rounds, and the measured speedup (median of uncached / cached) is printed beside the two predictions the
   cache's own result makes (from the blocks' times measured in the loop, and from their FLOPs).

Loops are timed in this process's CPU time (`time.process_time`), with one torch thread by default: on a shared
machine the other jobs inflate wall time by tens of percent from one round to the next, CPU time hardly at all.

    python benchmarks/drift_overhead.py [--preset tiny] [--height 128 --width 128] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from unetinspect.engine.cache import CachePlan
from unetinspect.engine.drift import hidden_state
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import load_unet
from unetinspect.views.cache import cache
from unetinspect.views.drift import Drift
from unetinspect.views.watch import watch


def denoising_loop(model: nn.Module, inputs: dict[str, Any], steps: int) -> Callable[[], torch.Tensor]:
    """`steps` calls from the same start, each at a lower timestep, each output moving the sample a little."""
    timesteps = torch.linspace(900, 100, steps).round()

    def loop() -> torch.Tensor:
        sample = inputs["sample"]
        for t in timesteps:
            output = model(**{**inputs, "sample": sample, "timestep": t})
            sample = sample - 0.05 * (output if isinstance(output, torch.Tensor) else output[0])
        return sample

    return loop


def cpu_time(loop: Callable[[], Any]) -> float:
    """CPU seconds this process spent in one run of `loop` (the CPU only: nothing to wait for)."""
    start = time.process_time()
    loop()
    return time.process_time() - start


class Replay(nn.Module):
    """One identity module per block: a call returns the outputs it is given, through hooks as the blocks would."""

    def __init__(self, blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Identity() for _ in range(blocks))

    def forward(self, outputs: list[torch.Tensor]) -> list[torch.Tensor]:
        return [block(output) for block, output in zip(self.blocks, outputs)]


def drift_ms_per_step(model: nn.Module, loop: Callable[[], Any], rounds: int, calls: int = 50) -> float:
    """The drift's own CPU ms per step on the model's real block outputs (the least over rounds of the watched
    replay with drift less the one without)."""
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, a, out: outputs.append(hidden_state(out).clone()))
             for m in _blocks(model)]
    try:
        loop()
    finally:
        for handle in hooks:
            handle.remove()
    per_call = len(list(_blocks(model)))
    first, second = outputs[:per_call], outputs[per_call:2 * per_call]
    replay = Replay(per_call)
    costs = []
    for _ in range(rounds):
        with watch(replay):
            plain = cpu_time(lambda: [replay(first if i % 2 else second) for i in range(calls)])
        with watch(replay, drift=True) as w:
            drifting = cpu_time(lambda: [replay(first if i % 2 else second) for i in range(calls)])
        w.drift()
        costs.append((drifting - plain) * 1e3 / calls)
    return min(costs)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The modules a depth-1 watch hooks: the children, a ModuleList's items instead of the list."""
    return [item for child in model.children()
            for item in (child if isinstance(child, nn.ModuleList) else [child])]


def drift_overhead(model: nn.Module, loop: Callable[[], Any], rounds: int) -> tuple[float, float, float, Drift]:
    """Medians over rounds of watch() / bare, watch(drift=True) / bare and watch(drift=True) / watch() (the
    drift's own price, paired within a round), and the drift of the last round."""
    plain, drifting, own = [], [], []
    drift = None
    for _ in range(rounds):
        bare = cpu_time(loop)
        with watch(model) as w:
            watched = cpu_time(loop)
        w.report()
        with watch(model, drift=True) as w:
            with_drift = cpu_time(loop)
        drift = w.drift()  # reading the device's sums is part of the price, but after the loop
        plain.append(watched / bare)
        drifting.append(with_drift / bare)
        own.append(with_drift / watched)
    assert drift is not None
    return statistics.median(plain), statistics.median(drifting), statistics.median(own), drift


def cache_speedup(model: nn.Module, loop: Callable[[], Any], rounds: int, **schedule: Any) -> dict[str, Any]:
    """Measured (median of uncached / cached over rounds) and predicted speedups of one schedule."""
    measured, result = [], None
    for _ in range(rounds):
        bare = cpu_time(loop)
        with cache(model, **schedule) as cached:
            fast = cpu_time(loop)
        result = cached.result()
        measured.append(bare / fast)
    assert result is not None
    return {"schedule": result.schedule, "measured": statistics.median(measured), "reused": result.reused,
            "calls": result.calls, "time": result.predicted_speedup_time, "flops": result.predicted_speedup_flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--batch", type=int, default=2, help="2: a classifier-free-guidance batch")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.3, help="δ of the Block Caching plan")
    parser.add_argument("--interval", type=int, default=3)
    parser.add_argument("--branch", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (CPU time is summed over them)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_unet(args.preset)
    inputs = make_inputs(model.config, InputSpec(batch=args.batch, height=args.height, width=args.width))
    loop = denoising_loop(model, inputs, args.steps)
    with torch.inference_mode():
        loop()  # warm-up
        step_ms = statistics.median(cpu_time(loop) for _ in range(args.rounds)) * 1e3 / args.steps
        own_ms = drift_ms_per_step(model, loop, args.rounds)
        plain, drifting, own, drift = drift_overhead(model, loop, args.rounds)
        print(f"{args.preset}, {args.steps} calls of batch {args.batch}, {args.rounds} rounds:")
        print(f"  drift's own work: {own_ms:.3f} ms per step against a bare step of {step_ms:.1f} ms: "
              f"{100 * own_ms / step_ms:+.2f}% per step")
        print(f"  watch()           ×{plain:.3f} the bare loop ({100 * (plain - 1):+.1f}% per step)")
        print(f"  watch(drift=True) ×{drifting:.3f} the bare loop ({100 * (drifting - 1):+.1f}% per step; "
              f"drift alone {100 * (own - 1):+.1f}%), {drift.held_bytes / 2**10:.0f} KiB held")
        plan: CachePlan = drift.cache_plan(args.threshold)
        for schedule in ({"plan": plan}, {"interval": args.interval, "branch": args.branch}):
            row = cache_speedup(model, loop, args.rounds, **schedule)
            print(f"  {row['schedule']}: {row['reused']} block calls reused over {row['calls']} calls; speedup "
                  f"measured ×{row['measured']:.2f}, predicted ×{row['time']:.2f} from block times, "
                  f"×{row['flops']:.2f} from FLOPs")


if __name__ == "__main__":
    main()
