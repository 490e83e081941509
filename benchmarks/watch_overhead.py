"""What `ui.watch` costs: per hooked module call, and over a denoising loop at each depth.

1. The price of one hooked call: a chain of small linear layers, run bare and watched at depth 1 (each layer is
   a block), in alternating rounds; (watched − bare) / (calls × layers) is the cost of one block's two hooks
   and two clock marks, in µs.
2. A loop of `--steps` UNet calls of `--preset` at `--height`×`--width`, run bare and inside a watch, in
   alternating rounds: the median over rounds of watched / bare at each depth.

    python benchmarks/watch_overhead.py [--preset tiny] [--height 128 --width 128] [--depths 1,2,3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from torch import nn

from unetinspect.engine.timing import clock_for, timed_call
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import load_unet
from unetinspect.views.watch import watch


def loop_overhead(model: nn.Module, inputs: dict[str, Any], *, steps: int, depth: int, rounds: int) -> float:
    """Median over rounds of (a loop of `steps` calls inside a watch) / (the same loop bare)."""
    clock = clock_for(next(model.parameters()).device)

    def loop() -> None:
        for _ in range(steps):
            model(**inputs)

    ratios = []
    with torch.inference_mode():
        loop()  # warm-up
        for _ in range(rounds):
            bare = timed_call(clock, loop)
            with watch(model, depth=depth) as w:
                watched = timed_call(clock, loop)
            w.report()  # reading the marks is part of a watch's price, but after the loop
            ratios.append(watched / bare)
    return statistics.median(ratios)


def per_hook_us(layers: int = 200, calls: int = 20, rounds: int = 7) -> float:
    """µs one watched block adds to a call: a chain of `layers` tiny linears, watched at depth 1."""
    chain = nn.Sequential(*[nn.Linear(4, 4) for _ in range(layers)])
    x = torch.zeros(1, 4)
    clock = clock_for(torch.device("cpu"))

    def loop() -> None:
        for _ in range(calls):
            chain(x)

    costs = []
    with torch.inference_mode():
        loop()
        for _ in range(rounds):
            bare = timed_call(clock, loop)
            with watch(chain):
                watched = timed_call(clock, loop)
            costs.append((watched - bare) * 1e3 / (calls * layers))
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--height", type=int)
    parser.add_argument("--width", type=int)
    parser.add_argument("--depths", default="1,2,3")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (fewer are steadier on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"one watched block call costs {per_hook_us():.1f} µs on the CPU (two hooks, two perf_counter marks)")
    model = load_unet(args.preset)
    inputs = make_inputs(model.config, InputSpec(height=args.height, width=args.width))
    for depth in map(int, args.depths.split(",")):
        ratio = loop_overhead(model, inputs, steps=args.steps, depth=depth, rounds=args.rounds)
        print(f"{args.preset} depth {depth}: a watched loop of {args.steps} calls takes ×{ratio:.3f} the bare loop")


if __name__ == "__main__":
    main()
