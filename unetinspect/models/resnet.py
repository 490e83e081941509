"""The convolutional layers of the UNet: the time-conditioned residual block and the 2x resamplers.

A ResnetBlock2D can resample itself (`down`/`up`): IF, unCLIP and the x4 upscaler lower and raise the resolution
with such a block instead of a strided or transposed convolution (`ResnetDownsampleBlock2D` and friends).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unetinspect.models.activations import get_activation


class ResnetBlock2D(nn.Module):
    """GroupNorm → act → conv, plus the timestep embedding, → GroupNorm → act → dropout → conv, plus a shortcut.

    The embedding enters between the two convolutions: added per channel (`time_embedding_norm="default"`) or
    as a scale and shift of the second normalisation (`"scale_shift"`). A 1x1 `conv_shortcut` matches channels
    when they change.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        temb_channels: int | None,
        groups: int = 32,
        eps: float = 1e-6,
        dropout: float = 0.0,
        non_linearity: str = "silu",
        time_embedding_norm: str = "default",
        output_scale_factor: float = 1.0,
        skip_time_act: bool = False,
        down: bool = False,
        up: bool = False,
    ) -> None:
        super().__init__()
        self.time_embedding_norm = time_embedding_norm
        self.output_scale_factor = output_scale_factor
        self.skip_time_act = skip_time_act

        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if temb_channels is None:
            self.time_emb_proj = None
        else:
            scale_and_shift = 2 if time_embedding_norm == "scale_shift" else 1
            self.time_emb_proj = nn.Linear(temb_channels, scale_and_shift * out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = get_activation(non_linearity)
        # parameter-free resampling of both the residual path and the shortcut, before conv1
        self.upsample = Upsample2D(in_channels, use_conv=False) if up else None
        self.downsample = Downsample2D(in_channels, use_conv=False) if down and not up else None
        self.conv_shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)
            if in_channels != out_channels
            else None
        )

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor | None) -> torch.Tensor:
        hidden_states = self.nonlinearity(self.norm1(input_tensor))
        for resample in (self.upsample, self.downsample):
            if resample is not None:
                input_tensor, hidden_states = resample(input_tensor), resample(hidden_states)
        hidden_states = self.conv1(hidden_states)

        if self.time_emb_proj is not None and temb is not None:
            temb = self.time_emb_proj(temb if self.skip_time_act else self.nonlinearity(temb))[:, :, None, None]
        else:
            temb = None

        if self.time_embedding_norm == "scale_shift":
            # every UNet resnet gets `emb` (temb_channels is set); diffusers raises too when it is missing
            assert temb is not None, "time_embedding_norm='scale_shift' needs the time embedding"
            scale, shift = torch.chunk(temb, 2, dim=1)
            hidden_states = self.norm2(hidden_states) * (1 + scale) + shift
        else:
            if temb is not None:
                hidden_states = hidden_states + temb
            hidden_states = self.norm2(hidden_states)

        hidden_states = self.conv2(self.dropout(self.nonlinearity(hidden_states)))

        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor.contiguous())
        return (input_tensor + hidden_states) / self.output_scale_factor


class Downsample2D(nn.Module):
    """Halves the spatial size with a stride-2 3x3 convolution (or a 2x2 average, `use_conv=False`).

    With `padding=0` (some original checkpoints) the input is padded on the right and bottom only, as the LDM
    code did, so odd sizes round the same way.
    """

    def __init__(self, channels: int, out_channels: int | None = None, padding: int = 1,
                 use_conv: bool = True) -> None:
        super().__init__()
        self.padding = padding
        self.use_conv = use_conv
        self.conv = (
            nn.Conv2d(channels, out_channels or channels, kernel_size=3, stride=2, padding=padding)
            if use_conv else nn.AvgPool2d(kernel_size=2, stride=2)
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.use_conv and self.padding == 0:
            hidden_states = F.pad(hidden_states, (0, 1, 0, 1), mode="constant", value=0)
        return self.conv(hidden_states)


class Upsample2D(nn.Module):
    """Doubles the spatial size (nearest neighbour), then a 3x3 convolution (none with `use_conv=False`).

    `output_size` lets the UNet land exactly on the skip connection's size when the latent is not a multiple
    of 2^(number of downsamples).
    """

    def __init__(self, channels: int, out_channels: int | None = None, use_conv: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, kernel_size=3, padding=1) if use_conv else None

    def forward(self, hidden_states: torch.Tensor, output_size: torch.Size | None = None) -> torch.Tensor:
        dtype = hidden_states.dtype
        if dtype == torch.bfloat16:  # nearest upsampling in bf16 is missing on some backends
            hidden_states = hidden_states.float()
        if hidden_states.shape[0] >= 64:  # large batches hit a non-contiguous fast path bug in upsample_nearest2d
            hidden_states = hidden_states.contiguous()
        if output_size is None:
            hidden_states = F.interpolate(hidden_states, scale_factor=2.0, mode="nearest")
        else:
            hidden_states = F.interpolate(hidden_states, size=output_size, mode="nearest")
        if dtype == torch.bfloat16:
            hidden_states = hidden_states.to(dtype)
        return hidden_states if self.conv is None else self.conv(hidden_states)
