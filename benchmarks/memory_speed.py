"""How long `unetinspect memory sdxl --train` at 1024² takes as a whole process, beside `summary sdxl`, in one run.

Target (issue 20): a few seconds on the meta device. Each command runs several times and the best time of
each is compared, so that a moment of load on a busy machine does not count.

    python benchmarks/memory_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from summary_speed import measure  # noqa: E402  (a sibling script, not a package)

SIZE = ["--height", "1024", "--width", "1024", "--format", "json"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = [sys.executable, "-m", "unetinspect"]
    commands = {"summary sdxl": [*base, "summary", "sdxl", *SIZE],
                "memory sdxl --train": [*base, "memory", "sdxl", "--train", *SIZE],
                "memory sdxl --train --checkpointing": [*base, "memory", "sdxl", "--train", "--checkpointing", *SIZE]}
    best = {name: min(measure(command)[0] for _ in range(args.repeat)) for name, command in commands.items()}
    for name, seconds in best.items():
        print(f"{name:>36}: best {seconds:.2f} s of {args.repeat}, "
              f"{seconds / best['summary sdxl']:.2f}x summary sdxl")


if __name__ == "__main__":
    main()
