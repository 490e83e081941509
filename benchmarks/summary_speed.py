"""How long `unetinspect summary sdxl` takes as a whole process, beside a bare `import torch`, in one run.

Target (issue 3): at most 2 s more than the torch import, and under 1 GB of peak memory. Each command runs
several times, interleaved, and the best time of each is compared, so that a busy machine hurts both alike.
If torchinfo is installed, it is timed on diffusers' SD 1.5 UNet for comparison (it needs a real forward pass).

    python benchmarks/summary_speed.py [--repeat 5] [--preset sdxl]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

TORCHINFO = """
import json, torch, torchinfo
from diffusers import UNet2DConditionModel
from unetinspect.presets import load_preset_dict
model = UNet2DConditionModel.from_config(load_preset_dict("sd15")).eval()
torchinfo.summary(model, input_data={"sample": torch.randn(1, 4, 64, 64), "timestep": torch.tensor([999]),
                  "encoder_hidden_states": torch.randn(1, 77, 768)}, verbose=0)
"""


def measure(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GiB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return elapsed, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--preset", default="sdxl")
    args = parser.parse_args()

    bare = [sys.executable, "-c", "import torch"]
    summary = [sys.executable, "-m", "unetinspect", "summary", args.preset, "--format", "json"]
    runs: dict[str, list[tuple[float, float]]] = {"import torch": [], f"summary {args.preset}": []}
    for _ in range(args.repeat):
        runs["import torch"].append(measure(bare))
        runs[f"summary {args.preset}"].append(measure(summary))

    best = {name: min(t for t, _ in results) for name, results in runs.items()}
    peak = {name: max(m for _, m in results) for name, results in runs.items()}
    for name in runs:
        print(f"{name:>22}: best {best[name]:.2f} s of {args.repeat}, peak memory {peak[name]:.2f} GiB")
    extra = best[f"summary {args.preset}"] - best["import torch"]
    print(f"{'summary - import':>22}: {extra:+.2f} s (target <= +2.00 s), "
          f"ratio {best[f'summary {args.preset}'] / best['import torch']:.2f}x the bare import")

    try:
        import torchinfo  # noqa: F401
    except ImportError:
        print(f"{'torchinfo sd15':>22}: not installed (pip install torchinfo to compare)")
        return
    elapsed, memory = measure([sys.executable, "-c", TORCHINFO])
    print(f"{'torchinfo sd15':>22}: {elapsed:.2f} s, peak memory {memory:.2f} GiB "
          f"({elapsed / best[f'summary {args.preset}']:.1f}x our summary of {args.preset})")


if __name__ == "__main__":
    main()
