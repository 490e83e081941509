"""UNetSpatioTemporalConditionModel: the denoiser of Stable Video Diffusion (image → video).

    sample (b, f, 8, h, w): the noisy frames + the conditioning image's latent, repeated per frame
      └ frames folded into the batch (b·f, 8, h, w) ─ conv_in ─ down ─ mid ─ up ─ conv_out ─ (b, f, 4, h, w)
    timestep ─ time_proj ─ time_embedding ─┐
    added_time_ids (fps, motion bucket, noise augmentation) ─ add_time_proj ─ add_embedding ─(+)─► emb, per frame
    encoder_hidden_states (b, 1, 1024): the CLIP image embedding, repeated per frame ─► every cross-attention

It is SDXL-shaped conditioning on an SD-2-shaped U (4 levels, 320-1280 channels) whose every resnet and
transformer is spatio-temporal (models/temporal.py). The blocks are our 2D blocks with those layers swapped in;
module names and state-dict keys are diffusers' exactly.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetinspect.configs.unet import UNetConfig
from unetinspect.configs.video import SVDConfig
from unetinspect.models.blocks import (
    BlockSpec,
    DownBlock2D,
    LayerAttention,
    LayeredModule,
    UNetMidBlock2DCrossAttn,
    UpBlock2D,
)
from unetinspect.models.input_checks import check_svd_inputs
from unetinspect.models.temporal import SpatioTemporalResBlock, TransformerSpatioTemporalModel
from unetinspect.models.unet import UNet2DConditionModel


class SpatioTemporalAttention(LayerAttention):
    """A TransformerSpatioTemporalModel after every resnet: image attention per frame, temporal across frames."""

    cross_attention = True

    def build(self, spec: BlockSpec, channels: int, depths: list[int]) -> list[nn.Module]:
        heads = spec.num_attention_heads
        return [TransformerSpatioTemporalModel(heads, channels // heads, channels, depth, spec.cross_attention_dim)
                for depth in depths]

    def __call__(self, block: LayeredModule, i: int, hidden_states: torch.Tensor, *,
                 encoder_hidden_states: torch.Tensor, image_only_indicator: torch.Tensor, **context: Any
                 ) -> torch.Tensor:
        return block.attentions[i](hidden_states, encoder_hidden_states, image_only_indicator)


SPATIO_TEMPORAL = SpatioTemporalAttention()


class SpatioTemporalResnets:
    """The resnets of SVD's down and up blocks: spatio-temporal, reading the frames. `resnet_eps` is fixed per
    block class in diffusers (its get_down_block/get_up_block pass no eps for these), so it is a class constant
    here too."""

    resnet_eps: float
    resnets: nn.ModuleList

    def _resnet(self, spec: BlockSpec, in_channels: int, out_channels: int) -> SpatioTemporalResBlock:
        return SpatioTemporalResBlock(in_channels, out_channels, spec.temb_channels, self.resnet_eps)

    def _run_resnet(self, i: int, hidden_states: torch.Tensor, temb: torch.Tensor, *,
                    image_only_indicator: torch.Tensor, **context: Any) -> torch.Tensor:
        return self.resnets[i](hidden_states, temb, image_only_indicator)


class DownBlockSpatioTemporal(SpatioTemporalResnets, DownBlock2D):
    """DownBlock2D with spatio-temporal resnets."""

    resnet_eps = 1e-5


class CrossAttnDownBlockSpatioTemporal(DownBlockSpatioTemporal):
    """DownBlockSpatioTemporal with a TransformerSpatioTemporalModel after every resnet."""

    layer_attention = SPATIO_TEMPORAL
    resnet_eps = 1e-6


class UpBlockSpatioTemporal(SpatioTemporalResnets, UpBlock2D):
    """UpBlock2D with spatio-temporal resnets (diffusers' default eps, 1e-6)."""

    resnet_eps = 1e-6


class CrossAttnUpBlockSpatioTemporal(UpBlockSpatioTemporal):
    """UpBlockSpatioTemporal with a TransformerSpatioTemporalModel after every resnet."""

    layer_attention = SPATIO_TEMPORAL


class UNetMidBlockSpatioTemporal(UNetMidBlock2DCrossAttn):
    """resnet → (TransformerSpatioTemporalModel → resnet) × layers, all spatio-temporal, eps 1e-5."""

    layer_attention = SPATIO_TEMPORAL
    resnet_eps = 1e-5

    def _resnet(self, spec: BlockSpec, channels: int, output_scale_factor: float) -> SpatioTemporalResBlock:
        return SpatioTemporalResBlock(channels, channels, spec.temb_channels, self.resnet_eps)

    _run_resnet = SpatioTemporalResnets._run_resnet


# our 2D block (what the config's UNet half names) → its spatio-temporal version
SVD_DOWN_BLOCKS = {"DownBlock2D": DownBlockSpatioTemporal, "CrossAttnDownBlock2D": CrossAttnDownBlockSpatioTemporal}
SVD_UP_BLOCKS = {"UpBlock2D": UpBlockSpatioTemporal, "CrossAttnUpBlock2D": CrossAttnUpBlockSpatioTemporal}


class UNetSpatioTemporalConditionModel(UNet2DConditionModel):
    """SVD's UNet built from an `SVDConfig` (kept on `.config`; its UNet half, `.config.unet`, is what the
    shared conditioning and sizes read)."""

    config: SVDConfig

    @property
    def unet_config(self) -> UNetConfig:
        return self.config.unet

    def _down_block(self, i: int, block_type: str, spec: BlockSpec, **shape: Any) -> nn.Module:
        return SVD_DOWN_BLOCKS[block_type](spec, **shape)

    def _mid_block(self, spec: BlockSpec, channels: int) -> nn.Module:
        return UNetMidBlockSpatioTemporal(spec, channels, transformer_layers=self.config.mid_transformer_layers)

    def _up_block(self, i: int, block_type: str, spec: BlockSpec, **shape: Any) -> nn.Module:
        return SVD_UP_BLOCKS[block_type](spec, **shape)

    @staticmethod
    def _block_inputs(block: nn.Module, attention: dict[str, Any]) -> dict[str, Any]:
        """Every block reads the frames (`image_only_indicator`); the attending ones the context too."""
        if block.has_cross_attention:
            return attention
        return {"image_only_indicator": attention["image_only_indicator"]}

    # diffusers' SVD UNet is a class of its own with this forward; ours shares the image UNet's building and
    # steps, not its call signature
    def forward(self, sample: torch.Tensor,  # pyright: ignore[reportIncompatibleMethodOverride]
                timestep: torch.Tensor | float | int, encoder_hidden_states: torch.Tensor,
                added_time_ids: torch.Tensor) -> torch.Tensor:
        """Predict the noise of `sample` (batch, frames, channels, height, width) → (batch, frames, out, h, w).

        `added_time_ids` (batch, 3) are [fps - 1, motion bucket id, noise augmentation strength] as the SVD
        pipeline passes them; they enter like SDXL's size ids, with no pooled text beside them.
        """
        check_svd_inputs(self.config, sample, timestep, encoder_hidden_states, added_time_ids)
        batch, frames = sample.shape[:2]
        no_text = sample.new_zeros(batch, 0)
        emb, _ = self._embed_conditions(sample, timestep, None, None,
                                        {"text_embeds": no_text, "time_ids": added_time_ids})
        emb = emb.repeat_interleave(frames, dim=0)  # (b·f, temb): one embedding per frame
        attention = {
            "encoder_hidden_states": encoder_hidden_states.repeat_interleave(frames, dim=0),  # (b·f, tokens, dim)
            "image_only_indicator": torch.zeros(batch, frames, dtype=sample.dtype, device=sample.device),
        }
        sample = sample.flatten(0, 1)  # (b·f, c, h, w)
        latent_size = sample.shape[-2:]
        sample = self.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (sample,)
        for down_block in self.down_blocks:
            sample, block_skips = down_block(sample, emb, **self._block_inputs(down_block, attention))
            skips += block_skips
        assert self.mid_block is not None  # _mid_block always builds SVD's
        sample = self.mid_block(sample, emb, **attention)
        sample = self._run_up_blocks(sample, skips, emb, attention, latent_size)
        sample = self._output(sample)
        return sample.reshape(batch, frames, *sample.shape[1:])
