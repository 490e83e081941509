"""What other tools report for SD 1.5 at 512×512, batch 1, beside unetinspect — measured in one run.

torchinfo and fvcore are not dependencies: install them to run this (`pip install torchinfo fvcore`).
They need a real CPU forward pass of diffusers' model; unetinspect counts on the meta device.

    python benchmarks/flops_vs_tools.py
"""

from __future__ import annotations

import time
import warnings

import torch

warnings.filterwarnings("ignore")


def inputs() -> dict[str, torch.Tensor]:
    return {"sample": torch.randn(1, 4, 64, 64), "timestep": torch.tensor([999]),
            "encoder_hidden_states": torch.randn(1, 77, 768)}


def main() -> None:
    from diffusers import UNet2DConditionModel

    from unetinspect.presets import load_preset_dict
    from unetinspect.views.summary import summarize

    start = time.perf_counter()
    ours = summarize("sd15").trace.flops
    print(f"{'unetinspect (meta)':>28}: {ours / 1e9:8.1f} GFLOPs  ({time.perf_counter() - start:.1f} s)")

    model = UNet2DConditionModel.from_config(load_preset_dict("sd15")).eval()

    from torch.utils.flop_counter import FlopCounterMode

    start = time.perf_counter()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(**inputs())
    print(f"{'FlopCounterMode (CPU)':>28}: {counter.get_total_flops() / 1e9:8.1f} GFLOPs  "
          f"({time.perf_counter() - start:.1f} s)")

    try:
        import torchinfo

        start = time.perf_counter()
        stats = torchinfo.summary(model, input_data=inputs(), verbose=0)
        print(f"{'torchinfo':>28}: {stats.total_mult_adds / 1e9:8.1f} G mult-adds  "
              f"({time.perf_counter() - start:.1f} s)")
    except ImportError:
        print(f"{'torchinfo':>28}: not installed")

    try:
        from fvcore.nn import FlopCountAnalysis

        start = time.perf_counter()
        analysis = FlopCountAnalysis(model, tuple(inputs().values()))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        print(f"{'fvcore':>28}: {analysis.total() / 1e9:8.1f} G (fvcore counts one per multiply-add)  "
              f"({time.perf_counter() - start:.1f} s)")
    except ImportError:
        print(f"{'fvcore':>28}: not installed")


if __name__ == "__main__":
    main()
