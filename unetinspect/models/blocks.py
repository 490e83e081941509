"""The blocks of the U: each down block lowers the resolution, each up block raises it and eats skip tensors.

A down block returns its output *and* every intermediate tensor (one per resnet, plus the downsampled one): those
are the skip connections that the mirrored up block concatenates back, last in first out.

The block families differ in three choices: what follows each resnet (the class's `layer_attention`: nothing, a
Transformer2DModel, an added-KV or a plain self-attention — one object shared by the down and the up block of a
family, as the catalogue in block_types.py names them), which resnet (`_resnet`: the IF-style ones take
`resnet_skip_time_act` and `resnet_out_scale_factor`), and how the resolution changes (`_downsampler` /
`_upsampler`: a strided conv, or a resnet that resamples itself).
The k-diffusion blocks differ more and live in k_blocks.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from unetinspect.models.attention import Attention, DualTransformer2DModel, Transformer2DModel
from unetinspect.models.k_blocks import (
    GROUP_SIZE,
    KAttentionBlock,
    KCrossAttnDownBlock2D,
    KCrossAttnUpBlock2D,
    KDownBlock2D,
    KUpBlock2D,
    ResnetBlockCondNorm2D,
)
from unetinspect.models.resnet import Downsample2D, ResnetBlock2D, Upsample2D


@dataclass(frozen=True)
class BlockSpec:
    """What every block needs to know, gathered once by the UNet from its config (one per block)."""

    temb_channels: int
    resnet_eps: float
    resnet_act_fn: str
    resnet_groups: int | None
    resnet_time_scale_shift: str
    dropout: float
    num_attention_heads: int = 1
    cross_attention_dim: int | None = None
    use_linear_projection: bool = False
    only_cross_attention: bool = False
    upcast_attention: bool = False
    # the config's own `attention_head_dim` for this block: a head *width* for the SimpleCrossAttn, Attn and K
    # blocks (where the Transformer2DModel blocks read the same field as a head count, see heads_per_block)
    attention_head_dim: int = 1
    resnet_skip_time_act: bool = False
    resnet_out_scale_factor: float = 1.0
    cross_attention_norm: str | None = None
    dual_cross_attention: bool = False
    attention_type: str = "default"

    @property
    def groups(self) -> int:
        """norm_num_groups, for every block but the k-diffusion ones (validation allows None only with K blocks
        alone and no mid block)."""
        assert self.resnet_groups is not None, "norm_num_groups is None for a block that normalises in groups"
        return self.resnet_groups

    def resnet(self, in_channels: int, out_channels: int, output_scale_factor: float = 1.0, *,
               skip_time_act: bool = False, down: bool = False, up: bool = False) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels=in_channels, out_channels=out_channels, temb_channels=self.temb_channels,
            groups=self.groups, eps=self.resnet_eps, dropout=self.dropout,
            non_linearity=self.resnet_act_fn, time_embedding_norm=self.resnet_time_scale_shift,
            output_scale_factor=output_scale_factor, skip_time_act=skip_time_act, down=down, up=up,
        )

    def scaled_resnet(self, in_channels: int, out_channels: int, *, down: bool = False,
                      up: bool = False) -> ResnetBlock2D:
        """The resnet of the IF-style blocks: `resnet_out_scale_factor`, `resnet_skip_time_act`, may resample."""
        return self.resnet(in_channels, out_channels, self.resnet_out_scale_factor,
                           skip_time_act=self.resnet_skip_time_act, down=down, up=up)

    def transformer(self, channels: int, depth: int) -> Transformer2DModel | DualTransformer2DModel:
        heads = self.num_attention_heads
        if self.dual_cross_attention:  # always one layer each, whatever transformer_layers_per_block says
            return DualTransformer2DModel(heads, channels // heads, channels, self.cross_attention_dim,
                                          self.groups, dropout=self.dropout)
        return Transformer2DModel(
            heads, channels // heads, in_channels=channels, num_layers=depth,
            cross_attention_dim=self.cross_attention_dim, norm_num_groups=self.groups,
            use_linear_projection=self.use_linear_projection, only_cross_attention=self.only_cross_attention,
            upcast_attention=self.upcast_attention, dropout=self.dropout, attention_type=self.attention_type,
        )

    def added_kv_attention(self, channels: int, only_cross_attention: bool | None = None) -> Attention:
        """IF / unCLIP attention: image tokens query the text (own `add_k_proj`/`add_v_proj`) and themselves."""
        return Attention(
            channels, channels, heads=channels // self.attention_head_dim, dim_head=self.attention_head_dim,
            bias=True, added_kv_proj_dim=self.cross_attention_dim, norm_num_groups=self.resnet_groups,
            only_cross_attention=self.only_cross_attention if only_cross_attention is None else only_cross_attention,
            cross_attention_norm=self.cross_attention_norm,
        )

    def self_attention(self, channels: int) -> Attention:
        """The attention of AttnDownBlock2D / AttnUpBlock2D: group norm, self-attention, input added back."""
        return Attention(
            channels, heads=channels // self.attention_head_dim, dim_head=self.attention_head_dim, bias=True,
            norm_num_groups=self.resnet_groups, eps=self.resnet_eps, residual_connection=True,
        )

    def k_resnet(self, in_channels: int, out_channels: int, conv_2d_out_channels: int | None = None,
                 groups_out_channels: int | None = None) -> ResnetBlockCondNorm2D:
        return ResnetBlockCondNorm2D(
            in_channels=in_channels, out_channels=out_channels, temb_channels=self.temb_channels,
            groups=in_channels // GROUP_SIZE, groups_out=(groups_out_channels or out_channels) // GROUP_SIZE,
            eps=self.resnet_eps, dropout=self.dropout, non_linearity=self.resnet_act_fn,
            conv_2d_out_channels=conv_2d_out_channels,
        )

    def k_attention(self, channels: int, add_self_attention: bool) -> KAttentionBlock:
        # the K cross-attention blocks attend to the text: a UNet with them has a cross_attention_dim
        assert self.cross_attention_dim is not None, "a K cross-attention block without cross_attention_dim"
        return KAttentionBlock(channels, channels // self.attention_head_dim, self.attention_head_dim,
                               self.cross_attention_dim, self.temb_channels, add_self_attention,
                               upcast_attention=self.upcast_attention)


def depths_per_layer(transformer_layers: int | list[int], num_layers: int) -> list[int]:
    """Transformer depth for each resnet layer of a block: one int for all, or a per-layer list (asymmetric
    UNets) of which only the first `num_layers` entries are read, as diffusers reads them."""
    if isinstance(transformer_layers, (list, tuple)):
        return list(transformer_layers)[:num_layers]
    return [transformer_layers] * num_layers


class LayeredModule(Protocol):
    """What a LayerAttention reads from the block it serves: the layers it built, as the block keeps them."""

    attentions: nn.ModuleList


class LayerAttention:
    """What follows each resnet of a block: built from the spec (the block keeps the layers as `attentions`, the
    state-dict name), then called with the block, the layer's index and the context. This one is nothing at all
    (the plain resnet blocks).

    The context is the block's keywords (the text, the masks, GLIGEN's tokens, a video block's frame inputs);
    each subclass names those it reads."""

    cross_attention = False  # whether the text reaches it

    def build(self, spec: BlockSpec, channels: int, depths: list[int]) -> list[nn.Module] | None:
        return None

    def __call__(self, block: LayeredModule, i: int, hidden_states: torch.Tensor, **context: Any) -> torch.Tensor:
        return hidden_states


class TransformerAttention(LayerAttention):
    """A Transformer2DModel (self- and cross-attention, `depth` layers deep) after every resnet."""

    cross_attention = True

    def build(self, spec: BlockSpec, channels: int, depths: list[int]) -> list[nn.Module]:
        return [spec.transformer(channels, depth) for depth in depths]

    def __call__(self, block: LayeredModule, i: int, hidden_states: torch.Tensor, **context: Any) -> torch.Tensor:
        return block.attentions[i](hidden_states, **context)


class AddedKVAttention(LayerAttention):
    """An added-KV attention (image and text tokens in one softmax) after every resnet: IF and unCLIP."""

    cross_attention = True

    def build(self, spec: BlockSpec, channels: int, depths: list[int]) -> list[nn.Module]:
        return [spec.added_kv_attention(channels) for _ in depths]

    def __call__(self, block: LayeredModule, i: int, hidden_states: torch.Tensor, *,
                 encoder_hidden_states: torch.Tensor | None, attention_mask: torch.Tensor | None,
                 encoder_attention_mask: torch.Tensor | None, gligen_objs: torch.Tensor | None,
                 **frame_inputs: Any) -> torch.Tensor:
        mask = _added_kv_mask(attention_mask, encoder_hidden_states, encoder_attention_mask)
        return block.attentions[i](hidden_states, encoder_hidden_states, mask)


class SelfAttention(LayerAttention):
    """A self-attention (group norm, attention, input added back) after every resnet; the text never reaches it."""

    def build(self, spec: BlockSpec, channels: int, depths: list[int]) -> list[nn.Module]:
        return [spec.self_attention(channels) for _ in depths]

    def __call__(self, block: LayeredModule, i: int, hidden_states: torch.Tensor, **context: Any) -> torch.Tensor:
        return block.attentions[i](hidden_states)


def _added_kv_mask(attention_mask: torch.Tensor | None, encoder_hidden_states: torch.Tensor | None,
                   encoder_attention_mask: torch.Tensor | None) -> torch.Tensor | None:
    """The one mask an added-KV attention takes: `attention_mask` if given, else the text's mask."""
    if attention_mask is not None:
        return attention_mask
    return None if encoder_hidden_states is None else encoder_attention_mask


NO_ATTENTION, TRANSFORMER, ADDED_KV, SELF_ATTENTION = LayerAttention(), TransformerAttention(), AddedKVAttention(), \
    SelfAttention()


class LayeredBlock(nn.Module):
    """A down or up block: resnets, each followed by its class's `layer_attention`. Whether it reads the context
    (`has_cross_attention`, which the UNet asks before handing it the text) follows from that choice, once here
    for every block class."""

    layer_attention: LayerAttention = NO_ATTENTION
    has_cross_attention = False  # set from layer_attention for every subclass
    resnets: nn.ModuleList  # one per layer, each followed by layer_attention

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.has_cross_attention = cls.layer_attention.cross_attention


# ---- down path --------------------------------------------------------------------------------------------------


class DownBlock2D(LayeredBlock):
    """`num_layers` resnets, then an optional stride-2 downsampler; no attention (the outer levels of SDXL)."""

    def __init__(self, spec: BlockSpec, in_channels: int, out_channels: int, num_layers: int,
                 add_downsample: bool, downsample_padding: int = 1, transformer_layers: int | list[int] = 1) -> None:
        super().__init__()
        attentions = self.layer_attention.build(spec, out_channels, depths_per_layer(transformer_layers, num_layers))
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        self.resnets = nn.ModuleList(
            self._resnet(spec, in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.downsamplers = (
            nn.ModuleList([self._downsampler(spec, out_channels, downsample_padding)]) if add_downsample else None
        )

    @property
    def skip_count(self) -> int:
        """Skips this block adds: one per resnet, plus the downsampled output."""
        return len(self.resnets) + (self.downsamplers is not None)

    def _resnet(self, spec: BlockSpec, in_channels: int, out_channels: int) -> nn.Module:
        """The resnet of one layer (SVD's blocks make theirs spatio-temporal)."""
        return spec.resnet(in_channels, out_channels)

    def _downsampler(self, spec: BlockSpec, channels: int, padding: int) -> nn.Module:
        return Downsample2D(channels, channels, padding=padding)

    def _run_resnet(self, i: int, hidden_states: torch.Tensor, temb: torch.Tensor, **context: Any) -> torch.Tensor:
        """Resnet i on its input (a spatio-temporal resnet also reads the frames from `context`)."""
        return self.resnets[i](hidden_states, temb)

    def _downsample(self, downsampler: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """`downsampler` (the block's `downsamplers[0]`) on the output: a conv, or a resnet that reads `temb`."""
        return downsampler(hidden_states)

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None, gligen_objs: torch.Tensor | None = None,
                additional_residuals: torch.Tensor | None = None,
                **frame_inputs: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """`additional_residuals` (a T2I-Adapter's feature for this level) is added after the last attention.
        `frame_inputs` are what a video block's layers read beside the text (`num_frames`, SVD's
        `image_only_indicator`); they join the context its `_run_resnet` and `layer_attention` receive."""
        context = dict(encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask,
                       encoder_attention_mask=encoder_attention_mask, gligen_objs=gligen_objs, **frame_inputs)
        skips: tuple[torch.Tensor, ...] = ()
        for i in range(len(self.resnets)):
            # what follows resnet i; `context` holds the text, the masks and GLIGEN's tokens
            hidden_states = self.layer_attention(self, i, self._run_resnet(i, hidden_states, temb, **context),
                                                 **context)
            if i == len(self.resnets) - 1 and additional_residuals is not None:
                hidden_states = hidden_states + additional_residuals
            skips += (hidden_states,)
        if self.downsamplers is not None:
            hidden_states = self._downsample(self.downsamplers[0], hidden_states, temb)
            skips += (hidden_states,)
        return hidden_states, skips


class CrossAttnDownBlock2D(DownBlock2D):
    """DownBlock2D with a Transformer2DModel (self- and cross-attention) after every resnet."""

    layer_attention = TRANSFORMER


class ResnetDownsampleBlock2D(DownBlock2D):
    """DownBlock2D whose downsampler is a resnet that average-pools inside (IF, unCLIP, the x4 upscaler)."""

    def _resnet(self, spec: BlockSpec, in_channels: int, out_channels: int) -> ResnetBlock2D:
        return spec.scaled_resnet(in_channels, out_channels)

    def _downsampler(self, spec: BlockSpec, channels: int, padding: int) -> nn.Module:
        return spec.scaled_resnet(channels, channels, down=True)

    def _downsample(self, downsampler: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return downsampler(hidden_states, temb)


class SimpleCrossAttnDownBlock2D(ResnetDownsampleBlock2D):
    """ResnetDownsampleBlock2D with an added-KV attention (image and text tokens in one attention) after each
    resnet: the attention of DeepFloyd IF and unCLIP."""

    layer_attention = ADDED_KV


class AttnDownBlock2D(DownBlock2D):
    """DownBlock2D with a self-attention (no text) after each resnet; the text never reaches it."""

    layer_attention = SELF_ATTENTION


# ---- bottom of the U --------------------------------------------------------------------------------------------


class UNetMidBlock2DCrossAttn(nn.Module):
    """resnet → (transformer → resnet) × num_layers at the lowest resolution; channels stay the same."""

    layer_attention: LayerAttention = TRANSFORMER
    has_cross_attention = True

    def __init__(self, spec: BlockSpec, channels: int, num_layers: int = 1,
                 transformer_layers: int | list[int] = 1, output_scale_factor: float = 1.0) -> None:
        super().__init__()
        depths = depths_per_layer(transformer_layers, num_layers)
        self.attentions = nn.ModuleList(self.layer_attention.build(spec, channels, depths))
        self.resnets = nn.ModuleList(
            self._resnet(spec, channels, output_scale_factor) for _ in range(num_layers + 1)
        )

    def _resnet(self, spec: BlockSpec, channels: int, output_scale_factor: float) -> nn.Module:
        return spec.resnet(channels, channels, output_scale_factor)

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                gligen_objs: torch.Tensor | None = None, **frame_inputs: Any) -> torch.Tensor:
        """`frame_inputs`: as in DownBlock2D.forward."""
        context = dict(encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask,
                       encoder_attention_mask=encoder_attention_mask, gligen_objs=gligen_objs, **frame_inputs)
        hidden_states = self._run_resnet(0, hidden_states, temb, **context)
        for i in range(len(self.attentions)):
            hidden_states = self.layer_attention(self, i, hidden_states, **context)
            hidden_states = self._run_resnet(i + 1, hidden_states, temb, **context)
        return hidden_states

    _run_resnet = DownBlock2D._run_resnet


class UNetMidBlock2DSimpleCrossAttn(UNetMidBlock2DCrossAttn):
    """The IF / unCLIP mid block: added-KV attention between IF-style resnets.

    Its only_cross_attention is `mid_block_only_cross_attention` (already resolved by the UNet into the spec)."""

    layer_attention = ADDED_KV

    def _resnet(self, spec: BlockSpec, channels: int, output_scale_factor: float) -> ResnetBlock2D:
        return spec.resnet(channels, channels, output_scale_factor, skip_time_act=spec.resnet_skip_time_act)


class UNetMidBlock2D(nn.Module):
    """One resnet and nothing else: what diffusers builds for `mid_block_type="UNetMidBlock2D"` in a
    UNet2DConditionModel (it asks for zero attention layers there)."""

    has_cross_attention = False

    def __init__(self, spec: BlockSpec, channels: int, transformer_layers: int | list[int] = 1,
                 output_scale_factor: float = 1.0) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([spec.resnet(channels, channels, output_scale_factor)])

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return self.resnets[0](hidden_states, temb)


# ---- up path ----------------------------------------------------------------------------------------------------


class UpBlock2D(LayeredBlock):
    """`num_layers` resnets, each fed the previous output concatenated with one skip tensor, then an upsampler.

    Channel bookkeeping: the first resnet takes the previous up block's output (`prev_output_channel`); the last
    one's skip comes from the down level below (`in_channels`); the others' skips have `out_channels`. Skips are
    taken from the end of the tuple: the deepest one comes first.
    """

    def __init__(self, spec: BlockSpec, in_channels: int, prev_output_channel: int, out_channels: int,
                 num_layers: int, add_upsample: bool, transformer_layers: int | list[int] = 1) -> None:
        super().__init__()
        attentions = self.layer_attention.build(spec, out_channels, depths_per_layer(transformer_layers, num_layers))
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        self.resnets = nn.ModuleList(
            self._resnet(
                spec,
                (prev_output_channel if i == 0 else out_channels)
                + (in_channels if i == num_layers - 1 else out_channels),
                out_channels,
            )
            for i in range(num_layers)
        )
        self.upsamplers = nn.ModuleList([self._upsampler(spec, out_channels)]) if add_upsample else None

    def _resnet(self, spec: BlockSpec, in_channels: int, out_channels: int) -> nn.Module:
        """The resnet of one layer (SVD's blocks make theirs spatio-temporal)."""
        return spec.resnet(in_channels, out_channels)

    def _upsampler(self, spec: BlockSpec, channels: int) -> nn.Module:
        return Upsample2D(channels, channels)

    _run_resnet = DownBlock2D._run_resnet

    def _upsample(self, upsampler: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor,
                  upsample_size: torch.Size | None) -> torch.Tensor:
        """`upsampler` (the block's `upsamplers[0]`) on the output: a conv told the skip's size, or a resnet."""
        return upsampler(hidden_states, upsample_size)

    def forward(self, hidden_states: torch.Tensor, res_hidden_states_tuple: tuple[torch.Tensor, ...],
                temb: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                upsample_size: torch.Size | None = None, attention_mask: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                gligen_objs: torch.Tensor | None = None, **frame_inputs: Any) -> torch.Tensor:
        """`frame_inputs`: as in DownBlock2D.forward."""
        context = dict(encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask,
                       encoder_attention_mask=encoder_attention_mask, gligen_objs=gligen_objs, **frame_inputs)
        for i in range(len(self.resnets)):
            hidden_states = torch.cat([hidden_states, res_hidden_states_tuple[-1 - i]], dim=1)
            hidden_states = self.layer_attention(self, i, self._run_resnet(i, hidden_states, temb, **context),
                                                 **context)
        if self.upsamplers is not None:
            hidden_states = self._upsample(self.upsamplers[0], hidden_states, temb, upsample_size)
        return hidden_states


class CrossAttnUpBlock2D(UpBlock2D):
    """UpBlock2D with a Transformer2DModel after every resnet."""

    layer_attention = TRANSFORMER


class ResnetUpsampleBlock2D(UpBlock2D):
    """UpBlock2D whose upsampler is a resnet that upsamples (nearest) inside; it always doubles the size."""

    def _resnet(self, spec: BlockSpec, in_channels: int, out_channels: int) -> ResnetBlock2D:
        return spec.scaled_resnet(in_channels, out_channels)

    def _upsampler(self, spec: BlockSpec, channels: int) -> nn.Module:
        return spec.scaled_resnet(channels, channels, up=True)

    def _upsample(self, upsampler: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor,
                  upsample_size: torch.Size | None) -> torch.Tensor:
        return upsampler(hidden_states, temb)


class SimpleCrossAttnUpBlock2D(ResnetUpsampleBlock2D):
    """ResnetUpsampleBlock2D with an added-KV attention after each resnet (IF, unCLIP)."""

    layer_attention = ADDED_KV


class AttnUpBlock2D(UpBlock2D):
    """UpBlock2D with a self-attention after each resnet; its conv upsampler always doubles the size."""

    layer_attention = SELF_ATTENTION

    def _upsample(self, upsampler: nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor,
                  upsample_size: torch.Size | None) -> torch.Tensor:
        return upsampler(hidden_states)


DOWN_BLOCKS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (DownBlock2D, CrossAttnDownBlock2D, ResnetDownsampleBlock2D,
                                  SimpleCrossAttnDownBlock2D, AttnDownBlock2D, KDownBlock2D, KCrossAttnDownBlock2D)
}
UP_BLOCKS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (UpBlock2D, CrossAttnUpBlock2D, ResnetUpsampleBlock2D, SimpleCrossAttnUpBlock2D,
                                  AttnUpBlock2D, KUpBlock2D, KCrossAttnUpBlock2D)
}
MID_BLOCKS: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (UNetMidBlock2DCrossAttn, UNetMidBlock2DSimpleCrossAttn, UNetMidBlock2D)
}
