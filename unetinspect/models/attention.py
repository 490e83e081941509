"""The transformer half of the UNet: spatial features become tokens, attend to themselves and to the text.

Transformer2DModel (norm → proj_in → BasicTransformerBlock × depth → proj_out, + residual) is what diffusers calls
the "attentions" of a block; each BasicTransformerBlock is self-attention, cross-attention and a GEGLU MLP.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head attention on `scaled_dot_product_attention`.

    Self-attention when `encoder_hidden_states` is None, cross-attention (keys and values from the text) when it
    is given. `upcast_attention` is kept for fidelity with the config: SDPA kernels accumulate softmax in float32
    already, which is why diffusers' default processor ignores it too.
    """

    def __init__(
        self,
        query_dim: int,
        cross_attention_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        bias: bool = False,
        upcast_attention: bool = False,
    ) -> None:
        super().__init__()
        inner_dim = dim_head * heads
        context_dim = cross_attention_dim or query_dim
        self.heads = heads
        self.upcast_attention = upcast_attention
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=True), nn.Dropout(dropout)])

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        batch = hidden_states.shape[0]
        query, key, value = self.to_q(hidden_states), self.to_k(context), self.to_v(context)
        head_dim = query.shape[-1] // self.heads
        query, key, value = (t.view(batch, -1, self.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        hidden_states = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch, -1, self.heads * head_dim).to(query.dtype)
        for layer in self.to_out:
            hidden_states = layer(hidden_states)
        return hidden_states


class GEGLU(nn.Module):
    """A gated GELU: one projection to twice the width, half of it gating the other half."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


class FeedForward(nn.Module):
    """The transformer MLP: GEGLU to 4x width, dropout, linear back (`net.0`, `net.1`, `net.2` as in diffusers)."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            hidden_states = layer(hidden_states)
        return hidden_states


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer layer: self-attention, cross-attention to the text, feed-forward; each residual.

    With `only_cross_attention` the first attention also reads the text instead of the image tokens.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        cross_attention_dim: int | None,
        dropout: float = 0.0,
        only_cross_attention: bool = False,
        upcast_attention: bool = False,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.only_cross_attention = only_cross_attention
        heads = dict(heads=num_attention_heads, dim_head=attention_head_dim, dropout=dropout,
                     upcast_attention=upcast_attention)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn1 = Attention(dim, cross_attention_dim if only_cross_attention else None, **heads)
        if cross_attention_dim is not None:
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.attn2 = Attention(dim, cross_attention_dim, **heads)
        else:
            self.norm2 = self.attn2 = None
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.ff = FeedForward(dim, dropout=dropout)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        context = encoder_hidden_states if self.only_cross_attention else None
        hidden_states = self.attn1(self.norm1(hidden_states), encoder_hidden_states=context) + hidden_states
        if self.attn2 is not None:
            hidden_states = self.attn2(self.norm2(hidden_states), encoder_hidden_states=encoder_hidden_states) \
                + hidden_states
        return self.ff(self.norm3(hidden_states)) + hidden_states


class Transformer2DModel(nn.Module):
    """Runs a stack of transformer layers over the pixels of a feature map, with a residual around all of it.

    GroupNorm, then `proj_in` to the attention width — a 1x1 conv on the map (SD 1.x) or a linear layer on the
    tokens (`use_linear_projection`, SD 2.x and SDXL) — the layers, `proj_out`, and the input added back.
    """

    def __init__(
        self,
        num_attention_heads: int,
        attention_head_dim: int,
        in_channels: int,
        num_layers: int = 1,
        cross_attention_dim: int | None = None,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
        only_cross_attention: bool = False,
        upcast_attention: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        inner_dim = num_attention_heads * attention_head_dim
        self.use_linear_projection = use_linear_projection
        self.norm = nn.GroupNorm(norm_num_groups, in_channels, eps=1e-6, affine=True)
        if use_linear_projection:
            self.proj_in = nn.Linear(in_channels, inner_dim)
        else:
            self.proj_in = nn.Conv2d(in_channels, inner_dim, kernel_size=1, stride=1, padding=0)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(
                inner_dim, num_attention_heads, attention_head_dim, cross_attention_dim,
                dropout=dropout, only_cross_attention=only_cross_attention, upcast_attention=upcast_attention,
            )
            for _ in range(num_layers)
        )
        if use_linear_projection:
            self.proj_out = nn.Linear(inner_dim, in_channels)
        else:
            self.proj_out = nn.Conv2d(inner_dim, in_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        batch, _, height, width = hidden_states.shape
        residual = hidden_states
        hidden_states = self.norm(hidden_states)
        if not self.use_linear_projection:
            hidden_states = self.proj_in(hidden_states)
        inner_dim = hidden_states.shape[1]
        hidden_states = hidden_states.permute(0, 2, 3, 1).reshape(batch, height * width, inner_dim)
        if self.use_linear_projection:
            hidden_states = self.proj_in(hidden_states)

        for block in self.transformer_blocks:
            hidden_states = block(hidden_states, encoder_hidden_states=encoder_hidden_states)

        if self.use_linear_projection:
            hidden_states = self.proj_out(hidden_states)
        inner_dim = hidden_states.shape[-1]
        hidden_states = hidden_states.reshape(batch, height, width, inner_dim).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear_projection:
            hidden_states = self.proj_out(hidden_states)
        return hidden_states + residual
