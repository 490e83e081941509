"""What `watch(drift=True)` costs per step, and whether a cache plan saves what it predicts — in one CPU run.

1. Drift's price: a denoising-like loop of `--steps` UNet calls of `--preset` (each call's output moves the
   sample, so the blocks really drift), run bare, inside `watch()` and inside `watch(drift=True)` in alternating
   rounds; the median over rounds of each watched loop over the bare one, per step.
2. A cache's saving: the drift measured in (1) gives Block Caching's plan at `--threshold`, and DeepCache's
   uniform schedule `--interval`/`--branch` is the other; each loop is run uncached and cached in alternating
   rounds, and the measured speedup (median of uncached / cached) is printed beside the two predictions the
   cache's own result makes (from the blocks' times measured in the loop, and from their FLOPs).

    python benchmarks/drift_overhead.py [--preset tiny] [--height 128 --width 128] [--steps 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from unetinspect.engine.cache import CachePlan
from unetinspect.engine.timing import clock_for, timed_call
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


def drift_overhead(model: nn.Module, loop: Callable[[], Any], rounds: int) -> tuple[float, float, Drift]:
    """Median over rounds of watch() / bare and watch(drift=True) / bare, and the drift of the last round."""
    clock = clock_for(next(model.parameters()).device)
    plain, drifting = [], []
    drift = None
    for _ in range(rounds):
        bare = timed_call(clock, loop)
        with watch(model) as w:
            watched = timed_call(clock, loop)
        w.report()
        with watch(model, drift=True) as w:
            with_drift = timed_call(clock, loop)
        drift = w.drift()  # reading the device's sums is part of the price, but after the loop
        plain.append(watched / bare)
        drifting.append(with_drift / bare)
    assert drift is not None
    return statistics.median(plain), statistics.median(drifting), drift


def cache_speedup(model: nn.Module, loop: Callable[[], Any], rounds: int, **schedule: Any) -> dict[str, Any]:
    """Measured (median of uncached / cached over rounds) and predicted speedups of one schedule."""
    clock = clock_for(next(model.parameters()).device)
    measured, result = [], None
    for _ in range(rounds):
        bare = timed_call(clock, loop)
        with cache(model, **schedule) as cached:
            fast = timed_call(clock, loop)
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
    parser.add_argument("--threads", type=int, help="CPU threads for torch (fewer are steadier on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_unet(args.preset)
    inputs = make_inputs(model.config, InputSpec(batch=args.batch, height=args.height, width=args.width))
    loop = denoising_loop(model, inputs, args.steps)
    with torch.inference_mode():
        loop()  # warm-up
        plain, drifting, drift = drift_overhead(model, loop, args.rounds)
        print(f"{args.preset}, {args.steps} calls of batch {args.batch}, {args.rounds} rounds:")
        print(f"  watch()           ×{plain:.3f} the bare loop ({100 * (plain - 1):+.1f}% per step)")
        print(f"  watch(drift=True) ×{drifting:.3f} the bare loop ({100 * (drifting - 1):+.1f}% per step; "
              f"drift alone {100 * (drifting / plain - 1):+.1f}%), {drift.held_bytes / 2**10:.0f} KiB held")
        plan: CachePlan = drift.cache_plan(args.threshold)
        for schedule in ({"plan": plan}, {"interval": args.interval, "branch": args.branch}):
            row = cache_speedup(model, loop, args.rounds, **schedule)
            print(f"  {row['schedule']}: {row['reused']} block calls reused over {row['calls']} calls; speedup "
                  f"measured ×{row['measured']:.2f}, predicted ×{row['time']:.2f} from block times, "
                  f"×{row['flops']:.2f} from FLOPs")


if __name__ == "__main__":
    main()
