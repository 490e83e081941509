"""unetinspect: build the Stable Diffusion UNet from a config or real weights and see what happens inside.

The public API — everything else is internal and may change:

    open_session(source, InputSpec(...))     the one way in: model, inputs and setup header, opened once
    load_unet(source, device=, dtype=)      our UNet2DConditionModel from a preset, config, folder or file
    summarize(source, InputSpec(...))        a traced forward pass: shapes, parameters, FLOPs per call
    profile(source, InputSpec(...))          per-block latency (and memory on CUDA) of one denoising step
    sweep(source, [(label, InputSpec), ...]) the whole step timed over sizes and attention backends
    diagram_graph(source) / write_diagram    the architecture as a graph, and drawn to svg/png/pdf/dot
    compare(a, b)                            two UNets block against block
    memory(source, InputSpec(...), train=True, training=Training(...))   weights, saved activations, peak
    branch_costs(source)                     each shallow branch a caching method runs: FLOPs, MACs, params
    build_report(source) / report_html       the self-contained HTML report of one UNet
    trace_model(model, inputs)               the trace of any nn.Module
    watch(module)                            per-block latency of every call inside your own loop (with-block)
    watch(module, drift=True).drift()        how much each block's output changes from one step to the next
    cache(module, interval=N, branch=k)      reuse blocks' outputs across steps (DeepCache's schedule, or plan=)
    compare_cached(run, module, ...)         one seeded generation uncached and cached: speedup, max diff, PSNR
    attention_maps(source)                   which pixels each prompt token steers, per attention layer
    run_pipeline(folder, prompt)             one generation of a local pipeline, watched: times, drift, maps
    precision(source, dtypes=[...])          each block alone in fp16/bf16/fp8/int8: the output's error, ranked
    activation_ranges(source)                per block the largest |x| inside it: headroom under fp16/bf16/fp8

Names are imported on first use, so that `unetinspect --help` does not wait for torch to load.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "ActivationRanges": "unetinspect.views.ranges",
    "AttentionMaps": "unetinspect.engine.attention",
    "AttentionOptions": "unetinspect.engine.attention",
    "CacheComparison": "unetinspect.views.cache",
    "CacheOption": "unetinspect.views.run",
    "CachePlan": "unetinspect.engine.cache",
    "CacheResult": "unetinspect.views.cache",
    "CallRecord": "unetinspect.engine.trace",
    "ControlNetConfig": "unetinspect.configs.controlnet",
    "ControlNetModel": "unetinspect.models.controlnet",
    "ControlledUNet": "unetinspect.models.controlled",
    "Comparison": "unetinspect.views.compare",
    "Drift": "unetinspect.views.drift",
    "InputSpec": "unetinspect.sources.inputs",
    "Memory": "unetinspect.views.memory",
    "RunResult": "unetinspect.views.run",
    "Precision": "unetinspect.views.precision",
    "Ranges": "unetinspect.engine.ranges",
    "Session": "unetinspect.sources.session",
    "Setup": "unetinspect.sources.session",
    "Sizes": "unetinspect.families.sizes",
    "Summary": "unetinspect.views.summary",
    "Trace": "unetinspect.engine.trace",
    "Training": "unetinspect.views.memory",
    "UNet2DConditionModel": "unetinspect.models.unet",
    "UNetConfig": "unetinspect.configs.unet",
    "UnetInspectError": "unetinspect.errors",
    "activation_ranges": "unetinspect.views.ranges",
    "analyze_lora": "unetinspect.views.lora",
    "attention_maps": "unetinspect.views.attention",
    "block_names": "unetinspect.views.block_names",
    "branch_costs": "unetinspect.views.branches",
    "build_model": "unetinspect.sources.loading",
    "build_report": "unetinspect.views.report",
    "cache": "unetinspect.views.cache",
    "compare_cached": "unetinspect.views.cache",
    "compare": "unetinspect.views.compare",
    "diagram_graph": "unetinspect.views.graph",
    "load_unet": "unetinspect.sources.loading",
    "make_inputs": "unetinspect.sources.inputs",
    "memory": "unetinspect.views.memory",
    "open_session": "unetinspect.sources.open",
    "precision": "unetinspect.views.precision",
    "profile": "unetinspect.views.profile",
    "run_pipeline": "unetinspect.views.run",
    "sweep": "unetinspect.views.profile",
    "report_html": "unetinspect.render.report",
    "summarize": "unetinspect.views.summary",
    "token_labels": "unetinspect.views.attention",
    "trace_model": "unetinspect.engine.trace",
    "watch": "unetinspect.views.watch",
    "write_diagram": "unetinspect.render.diagram_view",
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
