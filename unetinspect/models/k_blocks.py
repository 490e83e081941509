"""The k-diffusion blocks (Katherine Crowson's latent upscaler, `sd-x2-latent-upscaler`).

They differ from the SD blocks in four ways: every norm is an AdaGroupNorm whose scale and shift come from the
time embedding (`ada_group`); groups are fixed-size (32 channels each) instead of a fixed count; resampling is
a fixed, parameter-free [1, 3, 3, 1] blur (KDownsample2D / KUpsample2D); and an up block concatenates only
ONE skip — the last tensor of its down level — before its first resnet.

The blur resamplers always double or halve (`upsample_size` is accepted and ignored, as in diffusers), and
GLIGEN tokens (`gligen_objs`) reach only Transformer2DModel layers, so k blocks accept and ignore them.
Constructors take the UNet's common block arguments (`**_`) and use the few they need.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from unetinspect.models.activations import get_activation
from unetinspect.models.attention import Attention

GROUP_SIZE = 32  # channels per group in every k-diffusion norm


class AdaGroupNorm(nn.Module):
    """GroupNorm without its own affine: the scale and shift are projected from the time embedding."""

    def __init__(self, embedding_dim: int, out_dim: int, num_groups: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_groups = num_groups
        self.eps = eps
        self.linear = nn.Linear(embedding_dim, out_dim * 2)

    def forward(self, hidden_states: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(emb)[:, :, None, None].chunk(2, dim=1)
        return F.group_norm(hidden_states, self.num_groups, eps=self.eps) * (1 + scale) + shift


class ResnetBlockCondNorm2D(nn.Module):
    """A resnet whose two norms are AdaGroupNorms (the embedding enters there, not as an added bias).

    `conv_2d_out_channels` lets the last resnet of a k up block leave with the next level's width. The groups
    come from the *block's* widths (`groups`, `groups_out`), as in diffusers, even where a resnet's differ.
    """

    def __init__(self, *, in_channels: int, out_channels: int, temb_channels: int, groups: int, groups_out: int,
                 eps: float, dropout: float, non_linearity: str, conv_2d_out_channels: int | None = None) -> None:
        super().__init__()
        conv_out = conv_2d_out_channels or out_channels
        self.norm1 = AdaGroupNorm(temb_channels, in_channels, groups, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = AdaGroupNorm(temb_channels, out_channels, groups_out, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, conv_out, kernel_size=3, stride=1, padding=1)
        self.nonlinearity = get_activation(non_linearity)
        self.conv_shortcut = nn.Conv2d(in_channels, conv_out, kernel_size=1, bias=False) if in_channels != conv_out \
            else None

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv1(self.nonlinearity(self.norm1(input_tensor, temb)))
        hidden_states = self.conv2(self.dropout(self.nonlinearity(self.norm2(hidden_states, temb))))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return input_tensor + hidden_states


def _blur_kernel(channels: int, like: torch.Tensor, gain: float) -> torch.Tensor:
    """The separable [1, 3, 3, 1]/8 filter, applied to each channel on its own: (c, c, 4, 4), zero off-diagonal."""
    taps = torch.tensor([1 / 8, 3 / 8, 3 / 8, 1 / 8], device=like.device, dtype=like.dtype) * gain
    weight = like.new_zeros(channels, channels, 4, 4)
    index = torch.arange(channels, device=like.device)
    weight[index, index] = torch.outer(taps, taps)
    return weight


class KDownsample2D(nn.Module):
    """Halves the size: reflect-pad 1, blur, stride 2. No parameters."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = F.pad(inputs, (1,) * 4, "reflect")
        return F.conv2d(inputs, _blur_kernel(inputs.shape[1], inputs, 1.0), stride=2)


class KUpsample2D(nn.Module):
    """Doubles the size: reflect-pad 1, transposed blur (gain 2 per axis), stride 2. No parameters."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = F.pad(inputs, (1,) * 4, "reflect")
        return F.conv_transpose2d(inputs, _blur_kernel(inputs.shape[1], inputs, 2.0), stride=2, padding=3)


class KAttentionBlock(nn.Module):
    """Optional self-attention, then cross-attention, each after an AdaGroupNorm and each added back.

    The text is layer-normalised before its projections (`cross_attention_norm="layer_norm"`).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int, temb_channels: int,
                 add_self_attention: bool, upcast_attention: bool = False) -> None:
        super().__init__()
        groups = max(1, dim // GROUP_SIZE)
        if add_self_attention:
            self.norm1 = AdaGroupNorm(temb_channels, dim, groups)
            self.attn1 = Attention(dim, heads=heads, dim_head=head_dim, bias=True)
        else:
            self.norm1 = self.attn1 = None
        self.norm2 = AdaGroupNorm(temb_channels, dim, groups)
        self.attn2 = Attention(dim, cross_attention_dim, heads=heads, dim_head=head_dim, bias=True,
                               upcast_attention=upcast_attention, cross_attention_norm="layer_norm")

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None, emb: torch.Tensor,
                attention_mask: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.norm1 is not None and self.attn1 is not None:  # both or neither
            hidden_states = self._attend(self.norm1, self.attn1, hidden_states, emb, None, attention_mask)
        mask = attention_mask if encoder_hidden_states is None else encoder_attention_mask
        return self._attend(self.norm2, self.attn2, hidden_states, emb, encoder_hidden_states, mask)

    @staticmethod
    def _attend(norm: AdaGroupNorm, attention: Attention, hidden_states: torch.Tensor, emb: torch.Tensor,
                context: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        normed = norm(hidden_states, emb)
        batch, channels, height, width = normed.shape
        tokens = normed.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        out = attention(tokens, context, mask)  # (b, h*w, c)
        return out.permute(0, 2, 1).reshape(batch, -1, height, width) + hidden_states


class KDownBlock2D(nn.Module):
    """k-diffusion resnets, then the blur downsampler; its skips are the resnet outputs (not the downsampled one)."""

    has_cross_attention = False

    def __init__(self, spec, in_channels: int, out_channels: int, num_layers: int, add_downsample: bool,
                 **_: object) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            spec.k_resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.downsamplers = nn.ModuleList([KDownsample2D()]) if add_downsample else None

    @property
    def skip_count(self) -> int:
        """One skip per resnet; the downsampled output is not one."""
        return len(self.resnets)

    def forward(self, hidden_states: torch.Tensor,
                temb: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
        skips: tuple[torch.Tensor | None, ...] = ()
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, temb)
            skips += (hidden_states,)
        if self.downsamplers is not None:
            hidden_states = self.downsamplers[0](hidden_states)
        return hidden_states, skips


class KCrossAttnDownBlock2D(nn.Module):
    """Resnet → KAttentionBlock per layer; the last level (no downsampler) also self-attends and gives None skips."""

    has_cross_attention = True

    def __init__(self, spec, in_channels: int, out_channels: int, num_layers: int, add_downsample: bool,
                 **_: object) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            spec.k_resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(num_layers)
        )
        self.attentions = nn.ModuleList(
            spec.k_attention(out_channels, add_self_attention=not add_downsample) for _ in range(num_layers)
        )
        self.downsamplers = nn.ModuleList([KDownsample2D()]) if add_downsample else None

    skip_count = KDownBlock2D.skip_count

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor,
                encoder_hidden_states: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                encoder_attention_mask: torch.Tensor | None = None,
                gligen_objs: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
        skips: tuple[torch.Tensor | None, ...] = ()
        for resnet, attention in zip(self.resnets, self.attentions):
            hidden_states = resnet(hidden_states, temb)
            hidden_states = attention(hidden_states, encoder_hidden_states, temb, attention_mask,
                                      encoder_attention_mask)
            skips += (hidden_states if self.downsamplers is not None else None,)
        if self.downsamplers is not None:
            hidden_states = self.downsamplers[0](hidden_states)
        return hidden_states, skips


class KUpBlock2D(nn.Module):
    """Concatenates the level's last skip (when it is not None), then `num_layers - 1` k resnets; the last one
    leaves with the next level's width (`in_channels`); then the blur upsampler."""

    has_cross_attention = False

    def __init__(self, spec, in_channels: int, out_channels: int, num_layers: int, add_upsample: bool,
                 **_: object) -> None:
        super().__init__()
        count = num_layers - 1
        self.resnets = nn.ModuleList(
            spec.k_resnet(2 * out_channels if i == 0 else out_channels,
                          in_channels if i == count - 1 else out_channels, groups_out_channels=out_channels)
            for i in range(count)
        )
        self.upsamplers = nn.ModuleList([KUpsample2D()]) if add_upsample else None

    def forward(self, hidden_states: torch.Tensor, res_hidden_states_tuple: tuple[torch.Tensor | None, ...],
                temb: torch.Tensor, upsample_size: torch.Size | None = None) -> torch.Tensor:
        skip = res_hidden_states_tuple[-1]
        if skip is not None:
            hidden_states = torch.cat([hidden_states, skip], dim=1)
        for resnet in self.resnets:
            hidden_states = resnet(hidden_states, temb)
        if self.upsamplers is not None:
            hidden_states = self.upsamplers[0](hidden_states)
        return hidden_states


class KCrossAttnUpBlock2D(nn.Module):
    """Like KUpBlock2D with a KAttentionBlock after each resnet.

    diffusers' rule, kept: the block is "first" (takes no skip channels, self-attends) when in_channels,
    out_channels and the embedding width are all equal; a "middle" block (in != out) changes width in the last
    resnet's second conv, and its last attention runs at that width.
    """

    has_cross_attention = True

    def __init__(self, spec, in_channels: int, out_channels: int, num_layers: int, add_upsample: bool,
                 **_: object) -> None:
        super().__init__()
        is_first_block = in_channels == out_channels == spec.temb_channels
        is_middle_block = in_channels != out_channels
        count = num_layers - 1
        self.resnets = nn.ModuleList(
            spec.k_resnet(out_channels if is_first_block and i == 0 else 2 * out_channels if i == 0 else out_channels,
                          out_channels, in_channels if is_middle_block and i == count - 1 else None)
            for i in range(count)
        )
        self.attentions = nn.ModuleList(
            spec.k_attention(in_channels if i == count - 1 else out_channels, add_self_attention=is_first_block)
            for i in range(count)
        )
        self.upsamplers = nn.ModuleList([KUpsample2D()]) if add_upsample else None

    def forward(self, hidden_states: torch.Tensor, res_hidden_states_tuple: tuple[torch.Tensor | None, ...],
                temb: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                gligen_objs: torch.Tensor | None = None, upsample_size: torch.Size | None = None) -> torch.Tensor:
        skip = res_hidden_states_tuple[-1]
        if skip is not None:
            hidden_states = torch.cat([hidden_states, skip], dim=1)
        for resnet, attention in zip(self.resnets, self.attentions):
            hidden_states = resnet(hidden_states, temb)
            hidden_states = attention(hidden_states, encoder_hidden_states, temb, attention_mask,
                                      encoder_attention_mask)
        if self.upsamplers is not None:
            hidden_states = self.upsamplers[0](hidden_states)
        return hidden_states
