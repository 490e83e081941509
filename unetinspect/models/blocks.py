"""The blocks of the U: each down block lowers the resolution, each up block raises it and eats skip tensors.

A down block returns its output *and* every intermediate tensor (one per resnet, plus the downsampled one): those
are the skip connections that the mirrored up block concatenates back, last in first out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from unetinspect.models.attention import Transformer2DModel
from unetinspect.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D


@dataclass(frozen=True)
class BlockSpec:
    """What every block needs to know, gathered once by the UNet from its config."""

    temb_channels: int
    resnet_eps: float
    resnet_act_fn: str
    resnet_groups: int
    resnet_time_scale_shift: str
    dropout: float
    num_attention_heads: int = 1
    cross_attention_dim: int | None = None
    use_linear_projection: bool = False
    only_cross_attention: bool = False
    upcast_attention: bool = False

    def resnet(self, in_channels: int, out_channels: int, output_scale_factor: float = 1.0) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels=in_channels, out_channels=out_channels, temb_channels=self.temb_channels,
            groups=self.resnet_groups, eps=self.resnet_eps, dropout=self.dropout,
            non_linearity=self.resnet_act_fn, time_embedding_norm=self.resnet_time_scale_shift,
            output_scale_factor=output_scale_factor,
        )

    def transformer(self, channels: int, depth: int) -> Transformer2DModel:
        return Transformer2DModel(
            self.num_attention_heads, channels // self.num_attention_heads, in_channels=channels, num_layers=depth,
            cross_attention_dim=self.cross_attention_dim, norm_num_groups=self.resnet_groups,
            use_linear_projection=self.use_linear_projection, only_cross_attention=self.only_cross_attention,
            upcast_attention=self.upcast_attention, dropout=self.dropout,
        )


def depths_per_layer(transformer_layers: int | list[int], num_layers: int) -> list[int]:
    """Transformer depth for each resnet layer of a block (one int for all, or a list in asymmetric UNets)."""
    return list(transformer_layers) if isinstance(transformer_layers, (list, tuple)) else [transformer_layers] * num_layers


# ---- down path --------------------------------------------------------------------------------------------------


class DownBlock2D(nn.Module):
    """`num_layers` resnets, then an optional stride-2 downsampler; no attention (the outer levels of SDXL)."""

    has_cross_attention = False

    def __init__(self, spec: BlockSpec, in_channels: int, out_channels: int, num_layers: int,
                 add_downsample: bool, downsample_padding: int = 1, transformer_layers: int | list[int] = 1) -> None:
        super().__init__()
        if self.has_cross_attention:
            self.attentions = nn.ModuleList(
                spec.transformer(out_channels, depth) for depth in depths_per_layer(transformer_layers, num_layers)
            )
        self.resnets = nn.ModuleList(
            spec.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.downsamplers = (
            nn.ModuleList([Downsample2D(out_channels, out_channels, padding=downsample_padding)])
            if add_downsample else None
        )

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        skips: tuple[torch.Tensor, ...] = ()
        for i, resnet in enumerate(self.resnets):
            hidden_states = resnet(hidden_states, temb)
            if self.has_cross_attention:
                hidden_states = self.attentions[i](hidden_states, encoder_hidden_states=encoder_hidden_states)
            skips += (hidden_states,)
        if self.downsamplers is not None:
            for downsampler in self.downsamplers:
                hidden_states = downsampler(hidden_states)
            skips += (hidden_states,)
        return hidden_states, skips


class CrossAttnDownBlock2D(DownBlock2D):
    """DownBlock2D with a Transformer2DModel (self- and cross-attention) after every resnet."""

    has_cross_attention = True


# ---- bottom of the U --------------------------------------------------------------------------------------------


class UNetMidBlock2DCrossAttn(nn.Module):
    """resnet → (transformer → resnet) × num_layers at the lowest resolution; channels stay the same."""

    has_cross_attention = True

    def __init__(self, spec: BlockSpec, channels: int, num_layers: int = 1,
                 transformer_layers: int | list[int] = 1, output_scale_factor: float = 1.0) -> None:
        super().__init__()
        self.attentions = nn.ModuleList(
            spec.transformer(channels, depth) for depth in depths_per_layer(transformer_layers, num_layers)
        )
        self.resnets = nn.ModuleList(
            spec.resnet(channels, channels, output_scale_factor) for _ in range(num_layers + 1)
        )

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = self.resnets[0](hidden_states, temb)
        for attention, resnet in zip(self.attentions, self.resnets[1:]):
            hidden_states = attention(hidden_states, encoder_hidden_states=encoder_hidden_states)
            hidden_states = resnet(hidden_states, temb)
        return hidden_states


# ---- up path ----------------------------------------------------------------------------------------------------


class UpBlock2D(nn.Module):
    """`num_layers` resnets, each fed the previous output concatenated with one skip tensor, then an upsampler.

    Channel bookkeeping: the first resnet takes the previous up block's output (`prev_output_channel`); the last
    one's skip comes from the down level below (`in_channels`); the others' skips have `out_channels`. Skips are
    taken from the end of the tuple: the deepest one comes first.
    """

    has_cross_attention = False

    def __init__(self, spec: BlockSpec, in_channels: int, prev_output_channel: int, out_channels: int,
                 num_layers: int, add_upsample: bool, transformer_layers: int | list[int] = 1) -> None:
        super().__init__()
        if self.has_cross_attention:
            self.attentions = nn.ModuleList(
                spec.transformer(out_channels, depth) for depth in depths_per_layer(transformer_layers, num_layers)
            )
        self.resnets = nn.ModuleList(
            spec.resnet(
                (prev_output_channel if i == 0 else out_channels)
                + (in_channels if i == num_layers - 1 else out_channels),
                out_channels,
            )
            for i in range(num_layers)
        )
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, out_channels)]) if add_upsample else None

    def forward(self, hidden_states: torch.Tensor, res_hidden_states_tuple: tuple[torch.Tensor, ...],
                temb: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                upsample_size: torch.Size | None = None) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            hidden_states = torch.cat([hidden_states, res_hidden_states_tuple[-1 - i]], dim=1)
            hidden_states = resnet(hidden_states, temb)
            if self.has_cross_attention:
                hidden_states = self.attentions[i](hidden_states, encoder_hidden_states=encoder_hidden_states)
        if self.upsamplers is not None:
            for upsampler in self.upsamplers:
                hidden_states = upsampler(hidden_states, upsample_size)
        return hidden_states


class CrossAttnUpBlock2D(UpBlock2D):
    """UpBlock2D with a Transformer2DModel after every resnet."""

    has_cross_attention = True


DOWN_BLOCKS: dict[str, type[DownBlock2D]] = {"DownBlock2D": DownBlock2D, "CrossAttnDownBlock2D": CrossAttnDownBlock2D}
UP_BLOCKS: dict[str, type[UpBlock2D]] = {"UpBlock2D": UpBlock2D, "CrossAttnUpBlock2D": CrossAttnUpBlock2D}
