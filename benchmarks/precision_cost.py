"""What `precision` and `watch(ranges=True)` cost, on SD 1.5 at 512² by default, without running for hours.

`precision` runs timesteps × (1 + blocks × formats) forwards: 3 × (1 + 13 × 4) = 159 for sd15 at depth 1 with the
defaults — hours on a CPU. Instead of running them, this times what they are made of and adds it up:

1. `ref`: a float32 forward (after one warm-up forward), timed again right before every other run, since on a
   shared machine the load moves between runs;
2. per format, one forward with *every* depth-1 block in that format at once: its excess over `ref` is the sum of
   the excesses of the blocks one at a time (a block's extra time — half kernels, casts, rounding — is its own,
   whatever the others run in). With `--sample-block B`, only B is put in the format and its excess is scaled by
   the FLOPs of all blocks over B's: an extrapolation (half kernels on a CPU can be many times slower than
   float32, and a whole model in fp16 there runs for many minutes);
3. total = timesteps × ((1 + blocks × formats) × ref + Σ_formats excess), set beside the estimate `precision`
   itself makes before running (FLOPs at the rate of one batch-1 run).

Then the price of ranges: one forward inside `watch(module, ranges=True)` (every operation's two reductions, the
hooks on every module, the attention logits recomputed) against `ref`, and the time `ranges()` takes to read it.

    python benchmarks/precision_cost.py [--preset sd15] [--size 512] [--timesteps 3] [--device cpu]
                                        [--sample-block down_blocks.1]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

import torch
from torch import nn

from unetinspect.engine.precision import FORMATS, in_format
from unetinspect.engine.timing import clock_for
from unetinspect.engine.trace import trace_model
from unetinspect.sources.inputs import InputSpec
from unetinspect.sources.open import open_session
from unetinspect.views.precision import tested_blocks
from unetinspect.views.watch import watch


def timed(model: nn.Module, inputs: dict[str, Any], device: torch.device) -> float:
    """Seconds of one forward, the device waited for."""
    clock = clock_for(device)
    start = time.perf_counter()
    with torch.no_grad():
        model(**inputs)
    clock.wait()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--timesteps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--sample-block", help="time only this block in each format and scale by FLOPs")
    args = parser.parse_args()

    session = open_session(args.preset, InputSpec(height=args.size, width=args.size), device=args.device,
                           dtype="float32")
    model, inputs, device = session.model.eval(), session.inputs, session.device
    meta = open_session(args.preset, InputSpec(height=args.size, width=args.size), device="meta")
    trace = trace_model(meta.model, meta.inputs)
    blocks = tested_blocks(model, trace.records, 1, None)
    modules = dict(model.named_modules())
    formats = [FORMATS[name] for name in args.formats.split(",")]
    print(f"{args.preset} at {args.size}² on {device} ({torch.get_num_threads()} threads): "
          f"{trace.flops / 1e9:,.2f} GFLOPs a forward, {len(blocks)} blocks at depth 1")

    first = timed(model, inputs, device)
    print(f"first forward {first:.1f} s (its FLOP rate is what precision's own estimate uses)")
    flops = {r.path: r.flops for r in trace.records if r.path in blocks}
    timed_blocks = [args.sample_block] if args.sample_block else blocks
    scale = sum(flops.values()) / sum(flops[b] for b in timed_blocks)
    excess, refs = {}, []
    for fmt in formats:
        ref = timed(model, inputs, device)
        refs.append(ref)  # beside each run: on a shared machine the load moves between runs
        with contextlib.ExitStack() as stack:
            for block in timed_blocks:
                stack.enter_context(in_format(modules[block], fmt))
            seconds = timed(model, inputs, device)
        excess[fmt.name] = (seconds - ref) * scale
        what = f"{args.sample_block} ({100 / scale:.1f}% of the FLOPs)" if args.sample_block else "every block"
        print(f"  {what} in {fmt.name}: {seconds:.1f} s against float32 {ref:.1f} s just before; excess over all "
              f"blocks {excess[fmt.name]:+.1f} s"
              + (" (scaled by FLOPs)" if args.sample_block else ""))
    runs = args.timesteps * (1 + len(blocks) * len(formats))
    ref = statistics.median(refs)
    total = args.timesteps * ((1 + len(blocks) * len(formats)) * ref + sum(excess.values()))
    rate_estimate = runs * trace.flops / (trace.flops / first)
    print(f"precision --dtypes {','.join(f.name for f in formats)} with {args.timesteps} timesteps: {runs} forwards, "
          f"about {total / 60:.1f} min from these timings (float32 forward {ref:.1f} s, the median; its own "
          f"estimate before running: "
          f"{rate_estimate / 60:.1f} min)")

    ref = timed(model, inputs, device)
    with watch(model, ranges=True) as w:
        ranged = timed(model, inputs, device)
    start = time.perf_counter()
    ranges = w.ranges()
    read = time.perf_counter() - start
    print(f"watch(ranges=True): {ranged:.1f} s a step against {ref:.1f} s bare ({ranged / ref:.2f}×); "
          f"ranges() read in {read:.2f} s; largest |x| {max(max(v) for v in ranges.max_abs.values()):.4g}")


if __name__ == "__main__":
    main()
