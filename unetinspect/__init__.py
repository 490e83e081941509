"""unetinspect: build the Stable Diffusion UNet from a config or real weights and see what happens inside.

The public API — everything else is internal and may change:

    open_session(source, InputSpec(...))     the one way in: model, inputs and setup header, opened once
    load_unet(source, device=, dtype=)      our UNet2DConditionModel from a preset, config, folder or file
    summarize(source, InputSpec(...))        a traced forward pass: shapes, parameters, FLOPs per call
    profile(source, InputSpec(...))          per-block latency (and memory on CUDA) of one denoising step
    diagram_graph(source) / write_diagram    the architecture as a graph, and drawn to svg/png/pdf/dot
    compare(a, b)                            two UNets block against block
    trace_model(model, inputs)               the trace of any nn.Module
    watch(module)                            per-block latency of every call inside your own loop (with-block)

Names are imported on first use, so that `unetinspect --help` does not wait for torch to load.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "CallRecord": "unetinspect.analysis.trace",
    "ControlNetConfig": "unetinspect.controlnet_config",
    "ControlNetModel": "unetinspect.models.controlnet",
    "ControlledUNet": "unetinspect.models.controlled",
    "Comparison": "unetinspect.analysis.compare",
    "InputSpec": "unetinspect.analysis.inputs",
    "Session": "unetinspect.analysis.session",
    "Setup": "unetinspect.analysis.session",
    "Sizes": "unetinspect.analysis.inputs",
    "Summary": "unetinspect.analysis.summary",
    "Trace": "unetinspect.analysis.trace",
    "UNet2DConditionModel": "unetinspect.models.unet",
    "UNetConfig": "unetinspect.config",
    "UnetInspectError": "unetinspect.errors",
    "analyze_lora": "unetinspect.analysis.lora",
    "build_model": "unetinspect.weights.loading",
    "compare": "unetinspect.analysis.compare",
    "diagram_graph": "unetinspect.analysis.graph",
    "load_unet": "unetinspect.weights.loading",
    "make_inputs": "unetinspect.analysis.inputs",
    "open_session": "unetinspect.analysis.session",
    "profile": "unetinspect.analysis.profile",
    "summarize": "unetinspect.analysis.summary",
    "trace_model": "unetinspect.analysis.trace",
    "watch": "unetinspect.analysis.watch",
    "write_diagram": "unetinspect.render.graph",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'unetinspect' has no attribute {name!r}")
    value = getattr(importlib.import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
