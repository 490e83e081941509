"""UNetMotionModel: AnimateDiff — an SD (or SDXL) UNet run on every frame, with motion modules that let the
frames of each pixel attend to each other.

    sample (b, c, f, h, w) ─ frames folded into the batch (b·f, c, h, w) ─ the SD UNet, where each layer is
        resnet ─ attention (if the block has one) ─ motion module (AnimateDiffTransformer3D, across frames)
      ─ (b, c_out, f, h, w)
    encoder_hidden_states: the text, one row per frame (b·f, tokens, dim), as AnimateDiff's pipelines pass it

`MotionAdapter` holds the motion modules alone, as AnimateDiff publishes them; `UNetMotionModel.from_unet2d`
puts an adapter into a UNet2DConditionModel. The blocks are our 2D blocks with `motion_modules` added; module
names and state-dict keys are diffusers' exactly (an adapter's keys are the UNet's motion-module keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from unetinspect.configs.unet import UNetConfig
from unetinspect.configs.video import MotionAdapterConfig, MotionConfig
from unetinspect.models.blocks import (
    NO_ATTENTION,
    TRANSFORMER,
    BlockSpec,
    CrossAttnDownBlock2D,
    CrossAttnUpBlock2D,
    DownBlock2D,
    LayerAttention,
    LayeredBlock,
    LayeredModule,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
    depths_per_layer,
)
from unetinspect.models.input_checks import check_motion_inputs
from unetinspect.models.temporal import AnimateDiffTransformer3D
from unetinspect.models.unet import UNet2DConditionModel


@dataclass(frozen=True)
class MotionSpec:
    """The motion modules of one block: heads, depth (one, or one per layer), norm groups, frames covered."""

    heads: int
    depths: int | list[int]
    groups: int
    max_positions: int

    def modules(self, channels: int, count: int) -> nn.ModuleList:
        return nn.ModuleList(AnimateDiffTransformer3D(channels, self.heads, depth, self.groups, self.max_positions)
                             for depth in depths_per_layer(self.depths, count))


class MotionLayeredModule(LayeredModule, Protocol):
    """A block with motion modules: its own layers, and `motion_modules`, one per layer."""

    motion_modules: nn.ModuleList


class MotionAttention(LayerAttention):
    """What follows each resnet of a motion block: the 2D block's own attention (or none), then the layer's
    motion module over `num_frames`."""

    def __init__(self, inner: LayerAttention) -> None:
        self.inner = inner
        self.cross_attention = inner.cross_attention

    def build(self, spec: BlockSpec, channels: int, depths: list[int]) -> list[nn.Module] | None:
        return self.inner.build(spec, channels, depths)

    # it serves only the motion blocks (the classes below set it), which add `motion_modules` to the layers
    # every LayerAttention reads
    def __call__(self, block: MotionLayeredModule,  # pyright: ignore[reportIncompatibleMethodOverride]
                 i: int, hidden_states: torch.Tensor, *, num_frames: int, **context: Any) -> torch.Tensor:
        return block.motion_modules[i](self.inner(block, i, hidden_states, **context), num_frames)


class _MotionLayers(LayeredBlock):
    """Registers a block's `motion_modules`, one per resnet, after the 2D block's own layers."""

    motion_modules: nn.ModuleList

    def __init__(self, spec: BlockSpec, motion: MotionSpec, **shape: Any) -> None:
        super().__init__(spec, **shape)
        self.motion_modules = motion.modules(shape["out_channels"], len(self.resnets))


class DownBlockMotion(_MotionLayers, DownBlock2D):
    """DownBlock2D with a motion module after every resnet."""

    layer_attention = MotionAttention(NO_ATTENTION)


class CrossAttnDownBlockMotion(_MotionLayers, CrossAttnDownBlock2D):
    """CrossAttnDownBlock2D with a motion module after every transformer."""

    layer_attention = MotionAttention(TRANSFORMER)


class UpBlockMotion(_MotionLayers, UpBlock2D):
    """UpBlock2D with a motion module after every resnet."""

    layer_attention = DownBlockMotion.layer_attention


class CrossAttnUpBlockMotion(_MotionLayers, CrossAttnUpBlock2D):
    """CrossAttnUpBlock2D with a motion module after every transformer."""

    layer_attention = CrossAttnDownBlockMotion.layer_attention


class UNetMidBlockCrossAttnMotion(UNetMidBlock2DCrossAttn):
    """The SD mid block with a motion module after each attention: resnet → (attention → motion → resnet)×n."""

    layer_attention = CrossAttnDownBlockMotion.layer_attention

    def __init__(self, spec: BlockSpec, channels: int, motion: MotionSpec, num_layers: int = 1,
                 transformer_layers: int | list[int] = 1, output_scale_factor: float = 1.0) -> None:
        super().__init__(spec, channels, num_layers, transformer_layers, output_scale_factor)
        self.motion_modules = motion.modules(channels, num_layers)


MOTION_DOWN_BLOCKS = {"DownBlock2D": DownBlockMotion, "CrossAttnDownBlock2D": CrossAttnDownBlockMotion}
MOTION_UP_BLOCKS = {"UpBlock2D": UpBlockMotion, "CrossAttnUpBlock2D": CrossAttnUpBlockMotion}


class MotionModules(nn.Module):
    """One block's motion modules in an adapter (`down_blocks.i.motion_modules.j`, as in the UNet)."""

    def __init__(self, channels: int, count: int, motion: MotionSpec) -> None:
        super().__init__()
        self.motion_modules = motion.modules(channels, count)


class MotionAdapter(nn.Module):
    """AnimateDiff's motion modules alone, for a UNet of `config.block_out_channels` (the file AnimateDiff
    publishes as a diffusers MotionAdapter). Not callable: it is joined to a UNet by `UNetMotionModel.from_unet2d`.

    `conv_in` (`conv_in_channels`, SparseCtrl-style adapters) replaces the UNet's input convolution.
    """

    def __init__(self, config: MotionAdapterConfig) -> None:
        super().__init__()
        self.config = c = config
        channels, n = c.block_out_channels, len(config.block_out_channels)
        heads, layers = c.per_block(c.motion_num_attention_heads), c.per_block(c.motion_layers_per_block)
        depths = c.per_block(c.motion_transformer_layers_per_block)

        def spec(heads_: int, depth: int | list[int]) -> MotionSpec:
            return MotionSpec(heads_, depth, c.motion_norm_num_groups, c.motion_max_seq_length)

        self.conv_in = (nn.Conv2d(c.conv_in_channels, channels[0], kernel_size=3, padding=1)
                        if c.conv_in_channels else None)
        self.down_blocks = nn.ModuleList(MotionModules(channels[i], layers[i], spec(heads[i], depths[i]))
                                         for i in range(n))
        self.mid_block = (MotionModules(channels[-1], c.motion_mid_block_layers_per_block,
                                        spec(heads[-1], c.motion_transformer_layers_per_mid_block))
                          if c.use_motion_mid_block else None)
        self.up_blocks = nn.ModuleList(  # up block i mirrors level n-1-i and has one more layer
            MotionModules(channels[n - 1 - i], layers[n - 1 - i] + 1, spec(heads[n - 1 - i], depths[n - 1 - i]))
            for i in range(n)
        )


class UNetMotionModel(UNet2DConditionModel):
    """AnimateDiff's UNet built from a `MotionConfig` (kept on `.config`; its SD half on `.config.unet`)."""

    config: MotionConfig

    @property
    def unet_config(self) -> UNetConfig:
        return self.config.unet

    def _motion(self, heads: int, depths: int | list[int] | None) -> MotionSpec:
        c = self.config
        return MotionSpec(heads, depths or 1, c.unet.norm_num_groups, c.motion_max_seq_length)

    def _down_block(self, i: int, block_type: str, spec: BlockSpec, **shape: Any) -> nn.Module:
        c = self.config
        return MOTION_DOWN_BLOCKS[block_type](spec, self._motion(c.motion_heads_per_block[i], c.temporal_depths[i]),
                                              **shape)

    def _up_block(self, i: int, block_type: str, spec: BlockSpec, **shape: Any) -> nn.Module:
        c = self.config
        heads = c.motion_heads_per_block[c.unet.num_blocks - 1 - i]
        return MOTION_UP_BLOCKS[block_type](spec, self._motion(heads, c.up_temporal_depths[i]), **shape)

    def _mid_block(self, spec: BlockSpec, channels: int) -> nn.Module:
        """With `use_motion_mid_block`, the motion mid block; else the plain SD one (AnimateDiff v3, SDXL)."""
        c = self.config
        layers, depths, scale = c.mid_block_layers, c.mid_transformer_layers, c.unet.mid_block_scale_factor
        if not c.use_motion_mid_block:
            return UNetMidBlock2DCrossAttn(spec, channels, num_layers=layers, transformer_layers=depths,
                                           output_scale_factor=scale)
        motion = self._motion(c.motion_heads_per_block[-1], c.temporal_transformer_layers_per_mid_block)
        return UNetMidBlockCrossAttnMotion(spec, channels, motion, num_layers=layers, transformer_layers=depths,
                                           output_scale_factor=scale)

    @staticmethod
    def _block_inputs(block: nn.Module, attention: dict[str, Any]) -> dict[str, Any]:
        """The text for blocks that attend to it, the frame count for blocks with motion modules."""
        text = {k: v for k, v in attention.items() if k != "num_frames"} if block.has_cross_attention else {}
        frames = {"num_frames": attention["num_frames"]} if hasattr(block, "motion_modules") else {}
        return {**text, **frames}

    @classmethod
    def from_unet2d(cls, unet: UNet2DConditionModel, motion_adapter: MotionAdapter | None = None,
                    load_weights: bool = True) -> UNetMotionModel:
        """The AnimateDiff UNet of `unet` with `motion_adapter`'s motion modules (as diffusers' from_unet2d).

        Weights: every tensor of `unet` the motion UNet has, then the adapter's motion modules; an adapter's
        `conv_in` takes the UNet's weights for the first 4 input channels, as in diffusers.
        """
        config = MotionConfig.from_unet2d(unet.config, motion_adapter.config if motion_adapter else None)
        # the constructor is the image UNet's, which reads the image half (unet_config) of the config it keeps
        model = cls(config)  # pyright: ignore[reportArgumentType]
        if not load_weights:
            return model
        ours = model.state_dict()
        weights = {k: v for k, v in unet.state_dict().items() if k in ours and ours[k].shape == v.shape}
        if motion_adapter is not None:
            weights.update({k: v for k, v in motion_adapter.state_dict().items() if not k.startswith("conv_in.")})
            if motion_adapter.conv_in is not None:
                weights["conv_in.weight"] = torch.cat(
                    [unet.conv_in.weight, motion_adapter.conv_in.weight[:, unet.conv_in.in_channels:]], dim=1)
                weights["conv_in.bias"] = unet.conv_in.bias
        model.load_state_dict(weights, strict=False)
        return model

    # diffusers' UNetMotionModel is a class of its own with this forward; ours shares the image UNet's building
    # and steps, not its call signature
    def forward(  # pyright: ignore[reportIncompatibleMethodOverride]
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise of `sample` (batch, channels, frames, height, width) → the same shape.

        The text comes one row per frame (batch·frames, tokens, dim); the timestep and SDXL's extras one per
        video. ControlNet residuals (per frame) are added to the skips and the mid block's output.
        """
        check_motion_inputs(self.config, sample, timestep, encoder_hidden_states, added_cond_kwargs)
        batch, _, frames = sample.shape[:3]
        emb, _ = self._embed_conditions(sample, timestep, None, timestep_cond, added_cond_kwargs or {})
        emb = emb.repeat_interleave(frames, dim=0)  # (b·f, temb)
        attention = {**self._attention_inputs(encoder_hidden_states, attention_mask, None, cross_attention_kwargs,
                                              sample.dtype), "num_frames": frames}
        sample = sample.permute(0, 2, 1, 3, 4).flatten(0, 1)  # (b·f, c, h, w)
        latent_size = sample.shape[-2:]
        sample = self.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (sample,)
        for down_block in self.down_blocks:
            sample, block_skips = self._run_down_block(down_block, sample, emb, attention, None)
            skips += block_skips
        if down_block_additional_residuals is not None:
            skips = tuple(skip + extra for skip, extra in zip(skips, down_block_additional_residuals))
        sample = self._run_mid_block(sample, emb, attention, None, mid_block_additional_residual)
        sample = self._run_up_blocks(sample, skips, emb, attention, latent_size)
        sample = self._output(sample)
        return sample.reshape(batch, frames, *sample.shape[1:]).permute(0, 2, 1, 3, 4)
