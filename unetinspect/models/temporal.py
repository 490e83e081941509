"""The layers that see time: what Stable Video Diffusion and AnimateDiff add to an image UNet.

Both run the image layers on every frame as if it were its own image — the frames folded into the batch,
(batch·frames, channels, height, width) — and add layers that look *across* frames at each pixel:

- SVD (`SpatioTemporalResBlock`, `TransformerSpatioTemporalModel`): after each image resnet a temporal resnet
  (3×1×1 convolutions over frames), after each image transformer a temporal one (attention over frames); each
  result is blended with the image layer's by a learned factor (`AlphaBlender`, `mix_factor`).
- AnimateDiff (`AnimateDiffTransformer3D`, the "motion modules"): a transformer whose tokens are the frames of
  one pixel, added after every resnet/attention pair of an SD UNet, its output added back (a residual).

Temporal attention at a latent of h×w pixels and F frames is h·w attentions of F tokens each: its cost grows
with F² per pixel, where the image attention's grows with (h·w)² per frame.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from unetinspect.models.activations import get_activation
from unetinspect.models.attention import Attention, BasicTransformerBlock, FeedForward
from unetinspect.models.embeddings import TimestepEmbedding, Timesteps
from unetinspect.models.resnet import ResnetBlock2D


def frames_last(hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(b·f, c, h, w) → (b, c, f, h, w): the frames as a depth axis, for 3-D convolutions and norms."""
    batch_frames, channels, height, width = hidden_states.shape
    return hidden_states.reshape(batch_frames // num_frames, num_frames, channels, height, width).permute(0, 2, 1, 3, 4)


def frames_folded(hidden_states: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) → (b·f, c, h, w): back to one image per frame."""
    batch, channels, frames, height, width = hidden_states.shape
    return hidden_states.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)


class AlphaBlender(nn.Module):
    """`alpha · spatial + (1 - alpha) · temporal`, alpha = sigmoid(mix_factor) learned (`learned_with_images`).

    Frames flagged in `image_only_indicator` (1: a still image, not a video frame) take the spatial result
    alone (alpha 1). SVD's UNet passes all zeros, so every frame is blended.
    """

    def __init__(self, alpha: float = 0.5) -> None:
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([alpha]))

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor, image_only_indicator: torch.Tensor
                ) -> torch.Tensor:
        alpha = torch.where(image_only_indicator.bool(), torch.ones(1, 1, device=image_only_indicator.device),
                            torch.sigmoid(self.mix_factor)[..., None])  # (b, f)
        if spatial.ndim == 5:  # (b, c, f, h, w)
            alpha = alpha[:, None, :, None, None]
        else:  # tokens (b·f, n, c)
            alpha = alpha.reshape(-1)[:, None, None]
        alpha = alpha.to(spatial.dtype)
        return alpha * spatial + (1.0 - alpha) * temporal


class TemporalResnetBlock(nn.Module):
    """ResnetBlock2D's structure over frames: GroupNorm → SiLU → conv (3×1×1: each pixel sees its two
    neighbouring frames) + the frame's time embedding → GroupNorm → SiLU → conv, plus a shortcut."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, eps: float) -> None:
        super().__init__()
        kernel, padding = (3, 1, 1), (1, 0, 0)
        self.norm1 = nn.GroupNorm(32, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=kernel, padding=padding)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(32, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=kernel, padding=padding)
        self.nonlinearity = get_activation("silu")
        self.conv_shortcut = (nn.Conv3d(in_channels, out_channels, kernel_size=1)
                              if in_channels != out_channels else None)

    def forward(self, input_tensor: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        """`input_tensor` (b, c, f, h, w); `temb` (b, f, temb_channels), one embedding per frame."""
        hidden_states = self.conv1(self.nonlinearity(self.norm1(input_tensor)))
        temb = self.time_emb_proj(self.nonlinearity(temb))  # (b, f, c)
        hidden_states = hidden_states + temb.permute(0, 2, 1)[:, :, :, None, None]  # (b, c, f, 1, 1)
        hidden_states = self.conv2(self.dropout(self.nonlinearity(self.norm2(hidden_states))))
        if self.conv_shortcut is not None:
            input_tensor = self.conv_shortcut(input_tensor)
        return input_tensor + hidden_states


class SpatioTemporalResBlock(nn.Module):
    """SVD's resnet: the image resnet on each frame, then the temporal resnet across frames, blended."""

    def __init__(self, in_channels: int, out_channels: int, temb_channels: int, eps: float) -> None:
        super().__init__()
        self.spatial_res_block = ResnetBlock2D(in_channels=in_channels, out_channels=out_channels,
                                               temb_channels=temb_channels, eps=eps)
        self.temporal_res_block = TemporalResnetBlock(out_channels, out_channels, temb_channels, eps)
        self.time_mixer = AlphaBlender()

    def forward(self, hidden_states: torch.Tensor, temb: torch.Tensor, image_only_indicator: torch.Tensor
                ) -> torch.Tensor:
        """(b·f, c_in, h, w) → (b·f, c_out, h, w); `image_only_indicator` (b, f) gives the frame count."""
        num_frames = image_only_indicator.shape[-1]
        spatial = frames_last(self.spatial_res_block(hidden_states, temb), num_frames)  # (b, c, f, h, w)
        temb = temb.reshape(spatial.shape[0], num_frames, -1)  # (b, f, temb)
        temporal = self.temporal_res_block(spatial, temb)
        return frames_folded(self.time_mixer(spatial, temporal, image_only_indicator))


class TemporalBasicTransformerBlock(nn.Module):
    """SVD's temporal transformer layer: the tokens of one pixel across frames go through a feed-forward
    (`ff_in`), self-attention over the frames, cross-attention to the (first frame's) context, and a
    feed-forward, each pre-normed and residual."""

    def __init__(self, dim: int, time_mix_inner_dim: int, num_attention_heads: int, attention_head_dim: int,
                 cross_attention_dim: int | None) -> None:
        super().__init__()
        self.is_res = dim == time_mix_inner_dim
        attention = partial(Attention, heads=num_attention_heads, dim_head=attention_head_dim)
        self.norm_in = nn.LayerNorm(dim)
        self.ff_in = FeedForward(dim, dim_out=time_mix_inner_dim)
        self.norm1 = nn.LayerNorm(time_mix_inner_dim)
        self.attn1 = attention(time_mix_inner_dim)
        if cross_attention_dim is not None:
            self.norm2 = nn.LayerNorm(time_mix_inner_dim)
            self.attn2 = attention(time_mix_inner_dim, cross_attention_dim)
        else:
            self.norm2 = self.attn2 = None
        self.norm3 = nn.LayerNorm(time_mix_inner_dim)
        self.ff = FeedForward(time_mix_inner_dim)

    def forward(self, hidden_states: torch.Tensor, num_frames: int,
                encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        """(b·f, pixels, c) → the same; attends over the f frames of each pixel: (b·pixels, f, c) inside."""
        batch_frames, pixels, channels = hidden_states.shape
        batch = batch_frames // num_frames
        hidden_states = hidden_states.reshape(batch, num_frames, pixels, channels).permute(0, 2, 1, 3) \
            .reshape(batch * pixels, num_frames, channels)  # (b·pixels, f, c)
        residual = hidden_states
        hidden_states = self.ff_in(self.norm_in(hidden_states))
        if self.is_res:
            hidden_states = hidden_states + residual
        hidden_states = self.attn1(self.norm1(hidden_states)) + hidden_states
        if self.norm2 is not None and self.attn2 is not None:  # both or neither
            hidden_states = self.attn2(self.norm2(hidden_states), encoder_hidden_states) + hidden_states
        out = self.ff(self.norm3(hidden_states))
        hidden_states = out + hidden_states if self.is_res else out
        return hidden_states.reshape(batch, pixels, num_frames, channels).permute(0, 2, 1, 3) \
            .reshape(batch_frames, pixels, channels)


class TransformerSpatioTemporalModel(nn.Module):
    """SVD's attention: per layer, an image transformer layer on each frame, then a temporal one across frames
    (fed a learned embedding of the frame index), blended by a learned factor; projections and residual as in
    Transformer2DModel with linear projections."""

    def __init__(self, num_attention_heads: int, attention_head_dim: int, in_channels: int, num_layers: int = 1,
                 cross_attention_dim: int | None = None) -> None:
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6)
        self.proj_in = nn.Linear(in_channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, num_attention_heads, attention_head_dim, cross_attention_dim)
            for _ in range(num_layers)
        )
        self.temporal_transformer_blocks = nn.ModuleList(
            TemporalBasicTransformerBlock(inner_dim, inner_dim, num_attention_heads, attention_head_dim,
                                          cross_attention_dim)
            for _ in range(num_layers)
        )
        self.time_pos_embed = TimestepEmbedding(in_channels, in_channels * 4, out_dim=in_channels)
        self.time_proj = Timesteps(in_channels, True, 0)
        self.time_mixer = AlphaBlender()
        self.proj_out = nn.Linear(inner_dim, in_channels)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                image_only_indicator: torch.Tensor) -> torch.Tensor:
        """(b·f, c, h, w) → the same. The temporal layers' cross-attention reads the first frame's context,
        shared by every pixel."""
        batch_frames, channels, height, width = hidden_states.shape
        num_frames = image_only_indicator.shape[-1]
        batch = batch_frames // num_frames
        first = encoder_hidden_states.reshape(batch, num_frames, *encoder_hidden_states.shape[1:])[:, 0]
        time_context = first[:, None].expand(batch, height * width, *first.shape[1:]) \
            .reshape(batch * height * width, *first.shape[1:])  # (b·pixels, tokens, dim)

        residual = hidden_states
        hidden_states = self.norm(hidden_states).permute(0, 2, 3, 1).reshape(batch_frames, height * width, channels)
        hidden_states = self.proj_in(hidden_states)  # (b·f, pixels, inner)
        frame_index = torch.arange(num_frames, device=hidden_states.device).repeat(batch)  # (b·f,)
        frame_emb = self.time_pos_embed(self.time_proj(frame_index).to(hidden_states.dtype))[:, None, :]
        for block, temporal_block in zip(self.transformer_blocks, self.temporal_transformer_blocks):
            hidden_states = block(hidden_states, encoder_hidden_states)
            temporal = temporal_block(hidden_states + frame_emb, num_frames, time_context)
            hidden_states = self.time_mixer(hidden_states, temporal, image_only_indicator)
        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_frames, height, width, channels).permute(0, 3, 1, 2).contiguous()
        return hidden_states + residual


class AnimateDiffTransformer3D(nn.Module):
    """AnimateDiff's motion module: at every pixel, the frames are the tokens of a small transformer (two
    self-attentions over frames with a sinusoidal frame code, a GEGLU feed-forward); the result is added back.

    `max_positions` (the adapter's `motion_max_seq_length`) is the most frames its position code covers.
    """

    def __init__(self, in_channels: int, num_attention_heads: int, num_layers: int, norm_num_groups: int,
                 max_positions: int) -> None:
        super().__init__()
        head_dim = in_channels // num_attention_heads
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, in_channels)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(in_channels, num_attention_heads, head_dim, None, double_self_attention=True,
                                  max_positions=max_positions)
            for _ in range(num_layers)
        )
        self.proj_out = nn.Linear(in_channels, in_channels)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(b·f, c, h, w) → the same; inside, (b·h·w, f, c): one sequence of f frames per pixel."""
        batch_frames, channels, height, width = hidden_states.shape
        batch = batch_frames // num_frames
        residual = hidden_states
        hidden_states = self.norm(frames_last(hidden_states, num_frames))  # (b, c, f, h, w)
        hidden_states = hidden_states.permute(0, 3, 4, 2, 1).reshape(batch * height * width, num_frames, channels)
        hidden_states = self.proj_in(hidden_states)
        for block in self.transformer_blocks:
            hidden_states = block(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch, height, width, num_frames, channels).permute(0, 3, 4, 1, 2)
        return hidden_states.reshape(batch_frames, channels, height, width) + residual
