"""unetinspect: build the Stable Diffusion UNet from a config or real weights and see what happens inside.

The public API — everything else is internal and may change:

    load_unet(source, device=, dtype=)      our UNet2DConditionModel from a preset, config, folder or file
    summarize(source, InputSpec(...))        a traced forward pass: shapes, parameters, FLOPs per call
    compare(a, b)                            two UNets block against block
    trace_model(model, inputs)               the trace of any nn.Module
"""

from unetinspect.analysis.compare import Comparison, compare
from unetinspect.analysis.inputs import InputSpec, make_inputs
from unetinspect.analysis.summary import Summary, summarize
from unetinspect.analysis.trace import CallRecord, Trace, trace_model
from unetinspect.config import UNetConfig
from unetinspect.errors import UnetInspectError
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.weights.loading import build_model, load_unet

__version__ = "0.1.0"

__all__ = [
    "CallRecord", "Comparison", "InputSpec", "Summary", "Trace", "UNet2DConditionModel", "UNetConfig",
    "UnetInspectError", "__version__", "build_model", "compare", "load_unet", "make_inputs", "summarize",
    "trace_model",
]
