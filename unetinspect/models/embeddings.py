"""How the UNet sees *when* (the timestep) and *what else* (class labels, SDXL's size and crop conditioning).

Every conditioning signal ends up as one vector per sample, `emb`, which each ResnetBlock2D adds to its features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unetinspect.models.activations import get_activation


def sinusoidal_embedding(
    timesteps: torch.Tensor, dim: int, flip_sin_to_cos: bool, freq_shift: float, max_period: float = 10000.0
) -> torch.Tensor:
    """The transformer's sinusoidal position code applied to timesteps: [sin | cos] of geometric frequencies.

    `flip_sin_to_cos` puts the cosines first (SD checkpoints were trained that way); `freq_shift` moves the
    denominator of the exponent (0 for SD, 1 in the original DDPM code). Always computed in float32.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    frequencies = torch.exp(exponent / (half - freq_shift))
    angles = timesteps[:, None].float() * frequencies[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1, 0, 0))
    return emb


class Timesteps(nn.Module):
    """Parameter-free sinusoidal projection of a batch of scalars (timesteps, or SDXL's size/crop numbers)."""

    def __init__(self, num_channels: int, flip_sin_to_cos: bool, downscale_freq_shift: float) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.flip_sin_to_cos = flip_sin_to_cos
        self.downscale_freq_shift = downscale_freq_shift

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        return sinusoidal_embedding(timesteps, self.num_channels, self.flip_sin_to_cos, self.downscale_freq_shift)


class TimestepEmbedding(nn.Module):
    """Two-layer MLP lifting a sinusoidal code (or any vector) to the embedding width the resnets consume.

    `cond_proj` (LCM's `time_cond_proj_dim`) adds a projected guidance embedding to the input first.
    """

    def __init__(
        self,
        in_channels: int,
        time_embed_dim: int,
        act_fn: str = "silu",
        out_dim: int | None = None,
        post_act_fn: str | None = None,
        cond_proj_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.cond_proj = nn.Linear(cond_proj_dim, in_channels, bias=False) if cond_proj_dim is not None else None
        self.act = get_activation(act_fn)
        self.linear_2 = nn.Linear(time_embed_dim, out_dim or time_embed_dim)
        self.post_act = get_activation(post_act_fn) if post_act_fn is not None else None

    def forward(self, sample: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        if condition is not None:
            sample = sample + self.cond_proj(condition)
        sample = self.linear_2(self.act(self.linear_1(sample)))
        if self.post_act is not None:
            sample = self.post_act(sample)
        return sample
