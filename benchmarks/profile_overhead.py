"""What the block hooks cost, and how much of the step the rows explain, at each depth, in one run.

For each depth: the unhooked step, the hooked step, hook overhead (target on CUDA: ≤ 3% at depth 1), the rows'
coverage of the unhooked step (target: within 10% at depth 1) and the time that ran in no row.

    python benchmarks/profile_overhead.py [--preset sd15] [--height 256 --width 256] [--depths 1,2,3]
"""

from __future__ import annotations

import argparse

import torch

from unetinspect.sources.inputs import InputSpec
from unetinspect.views.profile import profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="sd15")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--depths", default="1,2,3")
    parser.add_argument("--device")
    parser.add_argument("--dtype")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, help="CPU threads for torch (fewer are steadier on a busy machine)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    spec = InputSpec(height=args.height, width=args.width)
    print(f"{'depth':>5} {'rows':>5} {'step ms':>10} {'hooked ms':>10} {'overhead':>9} {'coverage':>9} "
          f"{'in no row ms':>13}")
    for depth in map(int, args.depths.split(",")):
        result = profile(args.preset, spec, device=args.device, dtype=args.dtype, depth=depth, warmup=args.warmup,
                         repeat=args.repeat)
        t = result.totals
        print(f"{depth:>5} {len(result.blocks):>5} {t.step.median:>10.2f} {t.hooked_step.median:>10.2f} "
              f"{t.overhead:>9.3f} {t.coverage:>9.3f} {t.unattributed.median:>13.3f}")
    print(f"({result.source} · {result.height}×{result.width} px · {result.device.name} · {result.dtype})")


if __name__ == "__main__":
    main()
