"""One denoising step with ControlNets, as diffusers' ControlNet pipelines run it, as one module to trace and time.

    sample, timestep, text, controlnet_cond[k] ─► controlnets.k ─► residuals k ─┐ (summed over k: MultiControlNet)
    sample, timestep, text ─────────────────────────────────────────────────────► unet(…, residuals) ─► noise

The module names say which model a call belongs to (`controlnets.0.down_blocks.1`, `unet.up_blocks.2`), so a
trace of the step shows both models block by block.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetinspect.models.controlnet import ControlNetModel
from unetinspect.models.unet import UNet2DConditionModel


class ControlledUNet(nn.Module):
    """A UNet and the ControlNets whose residuals it takes, run as one step."""

    def __init__(self, unet: UNet2DConditionModel, controlnets: list[ControlNetModel]) -> None:
        super().__init__()
        if not controlnets:
            raise ValueError("a controlled step needs at least one ControlNet")
        self.unet = unet
        self.controlnets = nn.ModuleList(controlnets)
        self.config = unet.config

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor | list[torch.Tensor],
        conditioning_scale: float | list[float] = 1.0,
        **conditions: Any,
    ) -> torch.Tensor:
        """`controlnet_cond`: one image per ControlNet (a single tensor is given to each), at pixel size."""
        count = len(self.controlnets)
        images = controlnet_cond if isinstance(controlnet_cond, (list, tuple)) else [controlnet_cond] * count
        scales = conditioning_scale if isinstance(conditioning_scale, (list, tuple)) else [conditioning_scale] * count
        down: tuple[torch.Tensor, ...] | None = None
        mid: torch.Tensor | None = None
        for controlnet, image, scale in zip(self.controlnets, images, scales):
            residuals, mid_residual = controlnet(sample, timestep, encoder_hidden_states, image,
                                                 conditioning_scale=scale, **_controlnet_conditions(conditions))
            # MultiControlNet: residuals of several ControlNets are summed
            down = residuals if down is None else tuple(a + b for a, b in zip(down, residuals))
            mid = mid_residual if mid is None else mid + mid_residual
        return self.unet(sample, timestep, encoder_hidden_states, **conditions,
                         down_block_additional_residuals=down, mid_block_additional_residual=mid)


def _controlnet_conditions(conditions: dict[str, Any]) -> dict[str, Any]:
    """The UNet's extra inputs a ControlNet also takes (class labels, SDXL's added_cond_kwargs, timestep_cond)."""
    return {k: v for k, v in conditions.items() if k in ("class_labels", "timestep_cond", "added_cond_kwargs")}
