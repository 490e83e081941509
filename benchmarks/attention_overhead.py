"""What collecting attention maps costs: a UNet step with maps on, as a ratio to the same step bare.

A step of `--preset` at `--height`×`--width` (batch 2 as classifier-free guidance runs it) is timed bare and
inside an `AttentionRecorder`, in alternating rounds; the median over rounds of recorded / bare is printed for
cross-attention maps (heads averaged, and heads kept) and for one query pixel's self-attention maps.

    python benchmarks/attention_overhead.py [--preset sd15] [--height 256 --width 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from torch import nn

from unetinspect.engine.attention import AttentionOptions, AttentionRecorder
from unetinspect.engine.timing import clock_for, timed_call
from unetinspect.sources.inputs import InputSpec, make_inputs
from unetinspect.sources.loading import load_unet


def ratio(model: nn.Module, inputs: dict[str, Any], options: AttentionOptions, rounds: int) -> float:
    """Median over rounds of (one step with the maps recorded) / (one bare step)."""
    clock = clock_for(next(model.parameters()).device)
    ratios = []
    with torch.inference_mode():
        model(**inputs)  # warm-up
        for _ in range(rounds):
            bare = timed_call(clock, lambda: model(**inputs))
            with AttentionRecorder(model, options):
                recorded = timed_call(clock, lambda: model(**inputs))
            ratios.append(recorded / bare)
    return statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (fewer are steadier on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_unet(args.preset, device=args.device)
    inputs = make_inputs(model.config, InputSpec(batch=2, height=args.height, width=args.width),
                         device=torch.device(args.device))
    latent = inputs["sample"].shape[-2:]
    cases = {
        "cross, heads averaged": AttentionOptions(),
        "cross, heads kept": AttentionOptions(heads=True),
        "self, one query pixel": AttentionOptions(kind="self", query=(latent[0] // 2, latent[1] // 2)),
    }
    print(f"{args.preset} at {args.height}x{args.width} (latent {latent[0]}x{latent[1]}), batch 2, {args.device}")
    for name, options in cases.items():
        print(f"  {name}: a step with maps takes x{ratio(model, inputs, options, args.rounds):.3f} the bare step")


if __name__ == "__main__":
    main()
