"""Original (CompVis / LDM) single-file checkpoints: recognising them, renaming keys, inferring the config."""

from __future__ import annotations

from collections.abc import Mapping

from unetinspect.config import UNetConfig
from unetinspect.errors import WeightsError

UNET_PREFIX = "model.diffusion_model."


def looks_like_ldm(names: Mapping[str, object]) -> bool:
    """True for a full SD checkpoint (`model.diffusion_model.*`) or a bare LDM UNet state dict."""
    return any(n.startswith(UNET_PREFIX) or n.startswith("input_blocks.") for n in names)


def infer_config(shapes: Mapping[str, tuple[int, ...]], origin: str = "checkpoint") -> UNetConfig:
    raise WeightsError(f"{origin}: single-file LDM checkpoints are not readable yet")


def diffusers_key_map(shapes: Mapping[str, tuple[int, ...]], config: UNetConfig) -> dict[str, str]:
    raise WeightsError("single-file LDM checkpoints are not readable yet")
