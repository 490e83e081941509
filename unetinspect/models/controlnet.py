"""ControlNetModel: a trainable copy of the UNet's encoder that turns a conditioning image into residuals.

    controlnet_cond (pixels) ─ controlnet_cond_embedding ─┐ (latent size, channels[0])
    sample ─ conv_in ────────────────────────────────────(+)─ down_blocks[0..n-1] ─ mid_block
                    │ every skip tensor ─ controlnet_down_blocks[k] (1x1 conv, zero at init) ─► down residual k
                                               mid_block output ─ controlnet_mid_block ─► mid residual
    timestep / class / SDXL extras ─► emb, exactly as in the UNet

The UNet adds down residual k to its skip k and the mid residual to its mid block's output
(`down_block_additional_residuals`, `mid_block_additional_residual`). Module names and state-dict keys are
diffusers' exactly.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from unetinspect.configs.controlnet import ControlNetConfig
from unetinspect.configs.unet import UNetConfig
from unetinspect.models.blocks import DOWN_BLOCKS, BlockSpec, UNetMidBlock2DCrossAttn
from unetinspect.models.conditioning import ConditionedModel, attach_condition_embeddings
from unetinspect.models.unet import UNet2DConditionModel


class ControlNetOutput(NamedTuple):
    """What the UNet takes: one residual per skip tensor, and one for the mid block's output."""

    down_block_res_samples: tuple[torch.Tensor, ...]
    mid_block_res_sample: torch.Tensor


class ControlNetConditioningEmbedding(nn.Module):
    """Conditioning image → latent-sized features: 3x3 convs with SiLU, each channel step at stride 2.

    `conv_out` starts at zero, so an untrained ControlNet adds nothing.
    """

    def __init__(self, conditioning_embedding_channels: int, conditioning_channels: int,
                 block_out_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(conditioning_channels, block_out_channels[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for channels_in, channels_out in zip(block_out_channels, block_out_channels[1:]):
            self.blocks.append(nn.Conv2d(channels_in, channels_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(block_out_channels[-1], conditioning_embedding_channels, kernel_size=3, padding=1)

    def forward(self, conditioning: torch.Tensor) -> torch.Tensor:
        embedding = nn.functional.silu(self.conv_in(conditioning))
        for block in self.blocks:
            embedding = nn.functional.silu(block(embedding))
        return self.conv_out(embedding)


def zero_conv(channels: int) -> nn.Conv2d:
    """A 1x1 convolution initialised to zero: ControlNet's 'zero convolution' between copy and UNet."""
    conv = nn.Conv2d(channels, channels, kernel_size=1)
    nn.init.zeros_(conv.weight)
    assert conv.bias is not None  # a Conv2d has one unless built with bias=False
    nn.init.zeros_(conv.bias)
    return conv


class ControlNetModel(ConditionedModel):
    """A ControlNet built from a `ControlNetConfig` (kept on `.config`; its UNet half on `.config.unet`)."""

    # diffusers' ControlNet embeds timestep, class and additions exactly as its UNet: the same code, on the same
    # attribute names (time_proj, time_embedding, class_embedding, add_embedding, time_embed_act).
    _embed_conditions = UNet2DConditionModel._embed_conditions
    _addition_embedding = UNet2DConditionModel._addition_embedding

    @property
    def unet_config(self) -> UNetConfig:
        """The config of the UNet it copies: what the borrowed conditioning code reads."""
        return self.config.unet

    def __init__(self, config: ControlNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config.unet
        channels = c.block_out_channels
        time_embed_dim = c.time_embed_dim

        self.conv_in = nn.Conv2d(c.in_channels, channels[0], kernel_size=3, padding=1)
        # The conditioning is the UNet's (the same builders), less what a ControlNet config cannot have.
        # (its encoder_hid_proj is built as diffusers builds it and, as in diffusers, not applied in forward)
        attach_condition_embeddings(self, c, time_extras=False)
        self.time_embed_act = None  # read by the UNet's condition embedding, which the ControlNet shares

        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            channels[0], config.conditioning_channels, config.conditioning_embedding_out_channels)

        heads, head_dims, n, layers = c.heads_per_block, c.per_block(c.attention_head_dim), c.num_blocks, c.layers_per_block
        assert isinstance(layers, int), "ControlNetConfig refuses a per-block layers_per_block"

        def spec(i: int, only_cross_attention: bool) -> BlockSpec:
            return BlockSpec(
                temb_channels=time_embed_dim, resnet_eps=c.norm_eps, resnet_act_fn=c.act_fn,
                resnet_groups=c.norm_num_groups, resnet_time_scale_shift=c.resnet_time_scale_shift,
                dropout=c.dropout, num_attention_heads=heads[i], cross_attention_dim=c.cross_attention_dims[i],
                use_linear_projection=c.use_linear_projection, only_cross_attention=only_cross_attention,
                upcast_attention=c.upcast_attention, attention_head_dim=head_dims[i],
            )

        self.down_blocks = nn.ModuleList(
            DOWN_BLOCKS[block_type](
                spec(i, c.only_cross_attention_list[i]), in_channels=channels[max(i - 1, 0)],
                out_channels=channels[i], num_layers=layers, add_downsample=i < n - 1,
                downsample_padding=c.downsample_padding, transformer_layers=c.transformer_layers_list[i],
            )
            for i, block_type in enumerate(c.down_block_classes)
        )
        # One zero conv per skip tensor: conv_in's output, each resnet's, each downsampler's.
        skip_channels = [channels[0]] + [
            channels[i] for i in range(n) for _ in range(layers + (1 if i < n - 1 else 0))
        ]
        self.controlnet_down_blocks = nn.ModuleList(zero_conv(ch) for ch in skip_channels)

        self.controlnet_mid_block = zero_conv(channels[-1])
        self.mid_block = UNetMidBlock2DCrossAttn(
            spec(n - 1, only_cross_attention=False), channels[-1],
            transformer_layers=c.transformer_layers_list[-1], output_scale_factor=c.mid_block_scale_factor)

    @classmethod
    def from_unet(cls, unet: UNet2DConditionModel, *, load_weights_from_unet: bool = True,
                  conditioning_channels: int = 3,
                  conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256)) -> ControlNetModel:
        """A ControlNet for `unet`, its encoder's weights copied (as diffusers' `from_unet` does)."""
        config = ControlNetConfig.from_unet(unet.config, conditioning_channels=conditioning_channels,
                                            conditioning_embedding_out_channels=conditioning_embedding_out_channels)
        controlnet = cls(config)
        if load_weights_from_unet:
            ours = controlnet.state_dict()
            copied = {k: v for k, v in unet.state_dict().items() if k in ours and ours[k].shape == v.shape}
            controlnet.load_state_dict(copied, strict=False)
        return controlnet

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        guess_mode: bool = False,
    ) -> ControlNetOutput:
        """The residuals for the UNet's skips and mid block, from the noisy latent and the conditioning image.

        `controlnet_cond` is the image at pixel size (batch × conditioning_channels × 8h × 8w for a latent h × w).
        """
        if self.config.controlnet_conditioning_channel_order == "bgr":
            controlnet_cond = torch.flip(controlnet_cond, dims=[1])
        emb, _ = self._embed_conditions(sample, timestep, class_labels, timestep_cond, added_cond_kwargs or {},
                                        encoder_hidden_states)

        sample = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)
        skips: tuple[torch.Tensor, ...] = (sample,)
        for down_block in self.down_blocks:
            sample, block_skips = (down_block(sample, emb, encoder_hidden_states=encoder_hidden_states)
                                   if down_block.has_cross_attention else down_block(sample, emb))
            skips += block_skips
        sample = self.mid_block(sample, emb, encoder_hidden_states=encoder_hidden_states)

        down = tuple(zero(skip) for skip, zero in zip(skips, self.controlnet_down_blocks))
        mid = self.controlnet_mid_block(sample)
        if guess_mode and not self.config.global_pool_conditions:
            scales = torch.logspace(-1, 0, len(down) + 1, device=sample.device) * conditioning_scale  # 0.1 → 1
            down = tuple(residual * scale for residual, scale in zip(down, scales))
            mid = mid * scales[-1]
        else:
            down = tuple(residual * conditioning_scale for residual in down)
            mid = mid * conditioning_scale
        if self.config.global_pool_conditions:
            down = tuple(residual.mean(dim=(2, 3), keepdim=True) for residual in down)
            mid = mid.mean(dim=(2, 3), keepdim=True)
        return ControlNetOutput(down, mid)
