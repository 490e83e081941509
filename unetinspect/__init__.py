"""unetinspect: build the Stable Diffusion UNet from a config or real weights and see what happens inside."""

from unetinspect.config import UNetConfig
from unetinspect.errors import UnetInspectError
from unetinspect.models.unet import UNet2DConditionModel
from unetinspect.weights.loading import build_model, load_unet

__version__ = "0.1.0"

__all__ = ["UNetConfig", "UNet2DConditionModel", "UnetInspectError", "build_model", "load_unet", "__version__"]
