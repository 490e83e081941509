"""The transformer half of the UNet: spatial features become tokens, attend to themselves and to the text.

Transformer2DModel (norm → proj_in → BasicTransformerBlock × depth → proj_out, + residual) is what diffusers calls
the "attentions" of a block; each BasicTransformerBlock is self-attention, cross-attention and a GEGLU MLP.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F


class Attention(nn.Module):
    """Multi-head attention on `scaled_dot_product_attention`, in the variants diffusers' UNets use.

    Self-attention when `encoder_hidden_states` is None, cross-attention (keys and values from the text) when it
    is given. The options, each used by some family:
    - `added_kv_proj_dim` (IF, unCLIP, SimpleCrossAttn blocks): the text gets its own key/value projections
      (`add_k_proj`, `add_v_proj`) and its tokens are put *before* the image tokens, so one attention reads both;
      `only_cross_attention` drops the image's own keys (`to_k`, `to_v`).
    - `norm_num_groups`: a GroupNorm on the input (`group_norm`), for the attention-only blocks and IF's.
    - `cross_attention_norm` (`norm_cross`): LayerNorm or GroupNorm of the text before its projections.
    - `residual_connection` / `rescale_output_factor`: the input added back and the sum divided.
    A 4-d input (batch, channels, height, width) is attended over its pixels and returned in the same shape.
    `upcast_attention` is kept for fidelity with the config: SDPA kernels accumulate softmax in float32 already,
    which is why diffusers' default processor ignores it too.
    """

    to_k: nn.Linear | None  # None with only_cross_attention: only the text's keys and values
    to_v: nn.Linear | None
    add_k_proj: nn.Linear | None  # set with added_kv_proj_dim
    add_v_proj: nn.Linear | None

    def __init__(
        self,
        query_dim: int,
        cross_attention_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
        bias: bool = False,
        upcast_attention: bool = False,
        added_kv_proj_dim: int | None = None,
        only_cross_attention: bool = False,
        norm_num_groups: int | None = None,
        eps: float = 1e-5,
        cross_attention_norm: str | None = None,
        residual_connection: bool = False,
        rescale_output_factor: float = 1.0,
    ) -> None:
        super().__init__()
        inner_dim = dim_head * heads
        context_dim = cross_attention_dim or query_dim
        self.heads = heads
        self.upcast_attention = upcast_attention
        # added-KV attention always adds its input back (diffusers' AttnAddedKVProcessor does, whatever the flag)
        self.residual_connection = residual_connection or added_kv_proj_dim is not None
        self.rescale_output_factor = rescale_output_factor
        self.group_norm = nn.GroupNorm(norm_num_groups, query_dim, eps=eps) if norm_num_groups is not None else None
        self.norm_cross = _cross_attention_norm(cross_attention_norm, added_kv_proj_dim or context_dim, context_dim)
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=bias) if not only_cross_attention else None
        self.to_v = nn.Linear(context_dim, inner_dim, bias=bias) if not only_cross_attention else None
        if added_kv_proj_dim is not None:
            self.add_k_proj = nn.Linear(added_kv_proj_dim, inner_dim)
            self.add_v_proj = nn.Linear(added_kv_proj_dim, inner_dim)
        else:
            self.add_k_proj = self.add_v_proj = None
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim, bias=True), nn.Dropout(dropout)])

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        residual = hidden_states
        if hidden_states.ndim == 4:  # (b, c, h, w) → (b, h*w, c)
            hidden_states = hidden_states.flatten(2).transpose(1, 2)
        if self.add_k_proj is not None:
            out = self._attend_with_added_kv(hidden_states, encoder_hidden_states, attention_mask)
        else:
            out = self._attend(hidden_states, encoder_hidden_states, attention_mask)
        if residual.ndim == 4:
            out = out.transpose(1, 2).reshape(residual.shape)
        if self.residual_connection:
            out = out + residual
        return out / self.rescale_output_factor

    def _attend(self, hidden_states: torch.Tensor, context: torch.Tensor | None,
                mask: torch.Tensor | None) -> torch.Tensor:
        if self.group_norm is not None:
            hidden_states = self.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        if context is None:
            context = hidden_states
        elif self.norm_cross is not None:
            context = _normalise_context(self.norm_cross, context)
        # only_cross_attention (no to_k / to_v) comes only with added_kv_proj_dim, as diffusers requires
        assert self.to_k is not None and self.to_v is not None, "only_cross_attention without added_kv_proj_dim"
        query, key, value = self.to_q(hidden_states), self.to_k(context), self.to_v(context)
        return self._sdpa(query, key, value, mask)

    def _attend_with_added_kv(self, hidden_states: torch.Tensor, context: torch.Tensor | None,
                              mask: torch.Tensor | None) -> torch.Tensor:
        """The text's keys/values first, then (unless only_cross_attention) the image's own; the mask, given
        for the text tokens, is padded with zeros for the image tokens (diffusers pads by the image length)."""
        if context is None:
            context = hidden_states
        elif self.norm_cross is not None:
            context = _normalise_context(self.norm_cross, context)
        # the added-KV blocks always build it with norm_num_groups (and call this only with add_k_proj / add_v_proj)
        assert self.group_norm is not None and self.add_k_proj is not None and self.add_v_proj is not None
        hidden_states = self.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        key, value = self.add_k_proj(context), self.add_v_proj(context)
        if self.to_k is not None and self.to_v is not None:  # both or neither (only_cross_attention)
            key = torch.cat([key, self.to_k(hidden_states)], dim=1)  # (b, text + pixels, inner)
            value = torch.cat([value, self.to_v(hidden_states)], dim=1)
        return self._sdpa(self.to_q(hidden_states), key, value, mask, pad_to=hidden_states.shape[1])

    def _sdpa(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
              pad_to: int | None = None) -> torch.Tensor:
        batch = query.shape[0]
        head_dim = query.shape[-1] // self.heads
        query, key, value = (t.view(batch, -1, self.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        bias = None if mask is None else attention_bias(mask, pad_to or key.shape[2], batch, self.heads)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, self.heads * head_dim).to(query.dtype)
        for layer in self.to_out:
            out = layer(out)
        return out


def attention_bias(mask: torch.Tensor, target_length: int, batch: int, heads: int) -> torch.Tensor:
    """A (batch, 1, tokens) additive mask as SDPA's (batch, heads, 1, tokens) bias.

    Like diffusers, a mask whose length differs from `target_length` gets `target_length` zeros appended (not
    padded *to* it): that is what lines the text mask up with added-KV attention's text + image keys.
    """
    if mask.shape[-1] != target_length:
        mask = F.pad(mask, (0, target_length), value=0.0)
    if mask.shape[0] < batch * heads:
        mask = mask.repeat_interleave(heads, dim=0)
    return mask.view(batch, heads, -1, mask.shape[-1])


def _normalise_context(norm_cross: nn.Module, context: torch.Tensor) -> torch.Tensor:
    """The text through `norm_cross`: a LayerNorm as it is, a GroupNorm over channels (b, tokens, c) → (b, c, tokens)."""
    if isinstance(norm_cross, nn.GroupNorm):
        return norm_cross(context.transpose(1, 2)).transpose(1, 2)
    return norm_cross(context)


def _cross_attention_norm(kind: str | None, group_norm_channels: int, layer_norm_channels: int) -> nn.Module | None:
    """`cross_attention_norm`: GroupNorm of 32 groups over the added-KV width, or LayerNorm over the context's."""
    if kind == "group_norm":
        return nn.GroupNorm(32, group_norm_channels, eps=1e-5)
    if kind == "layer_norm":
        return nn.LayerNorm(layer_norm_channels)
    return None


class GEGLU(nn.Module):
    """A gated GELU: one projection to twice the width, half of it gating the other half."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


class FeedForward(nn.Module):
    """The transformer MLP: GEGLU to 4x width, dropout, linear out (`net.0`, `net.1`, `net.2` as in diffusers).

    `dim_out` differs from `dim` only in SVD's temporal blocks (`ff_in`), which may change the width."""

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0, dim_out: int | None = None) -> None:
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim_out or dim)])

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            hidden_states = layer(hidden_states)
        return hidden_states


class GatedSelfAttentionDense(nn.Module):
    """GLIGEN's grounding layer (`fuser`): the image tokens attend to themselves and to the boxes' tokens, and
    the result enters through tanh gates (`alpha_attn`, `alpha_dense`) that start at zero in training."""

    def __init__(self, query_dim: int, context_dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        self.linear = nn.Linear(context_dim, query_dim)
        self.attn = Attention(query_dim, heads=heads, dim_head=dim_head)
        self.ff = FeedForward(query_dim)
        self.norm1 = nn.LayerNorm(query_dim)
        self.norm2 = nn.LayerNorm(query_dim)
        self.alpha_attn = nn.Parameter(torch.tensor(0.0))
        self.alpha_dense = nn.Parameter(torch.tensor(0.0))

    def forward(self, hidden_states: torch.Tensor, objs: torch.Tensor) -> torch.Tensor:
        n_visual = hidden_states.shape[1]
        tokens = torch.cat([hidden_states, self.linear(objs)], dim=1)  # (b, pixels + boxes, dim)
        hidden_states = hidden_states + self.alpha_attn.tanh() * self.attn(self.norm1(tokens))[:, :n_visual]
        return hidden_states + self.alpha_dense.tanh() * self.ff(self.norm2(hidden_states))


class BasicTransformerBlock(nn.Module):
    """Pre-norm transformer layer: self-attention, cross-attention to the text, feed-forward; each residual.

    With `only_cross_attention` the first attention also reads the text instead of the image tokens. GLIGEN
    (`attention_type` gated / gated-text-image) adds a `fuser` between the two attentions, run only when the
    call brings grounding tokens (`gligen_objs`). AnimateDiff's motion modules make the second attention a
    self-attention too (`double_self_attention`) and add a fixed sinusoidal code of the token's position (its
    frame) before each attention (`max_positions`: the longest sequence the code covers).
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
        attention_type: str = "default",
        double_self_attention: bool = False,
        max_positions: int | None = None,
    ) -> None:
        super().__init__()
        self.only_cross_attention = only_cross_attention
        self.pos_embed = SinusoidalPositionalEmbedding(dim, max_positions) if max_positions is not None else None
        attention = partial(Attention, heads=num_attention_heads, dim_head=attention_head_dim, dropout=dropout,
                            upcast_attention=upcast_attention)
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn1 = attention(dim, cross_attention_dim if only_cross_attention else None)
        if cross_attention_dim is not None or double_self_attention:
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.attn2 = attention(dim, None if double_self_attention else cross_attention_dim)
        else:
            self.norm2 = self.attn2 = None
        self.norm3 = nn.LayerNorm(dim, eps=norm_eps)
        self.ff = FeedForward(dim, dropout=dropout)
        if attention_type in ("gated", "gated-text-image"):
            # GLIGEN's boxes are read by a cross-attention UNet (validation: one cross_attention_dim for all)
            assert cross_attention_dim is not None, f"attention_type={attention_type!r} without cross_attention_dim"
            self.fuser = GatedSelfAttentionDense(dim, cross_attention_dim, num_attention_heads, attention_head_dim)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                gligen_objs: torch.Tensor | None = None) -> torch.Tensor:
        context = encoder_hidden_states if self.only_cross_attention else None
        hidden_states = self.attn1(self._positioned(self.norm1(hidden_states)), context, attention_mask) \
            + hidden_states
        if gligen_objs is not None:
            hidden_states = self.fuser(hidden_states, gligen_objs)
        if self.norm2 is not None and self.attn2 is not None:  # both or neither
            hidden_states = self.attn2(self._positioned(self.norm2(hidden_states)), encoder_hidden_states,
                                       encoder_attention_mask) + hidden_states
        return self.ff(self.norm3(hidden_states)) + hidden_states

    def _positioned(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens if self.pos_embed is None else self.pos_embed(tokens)


class SinusoidalPositionalEmbedding(nn.Module):
    """Adds the transformer's fixed sin/cos code of each token's position (AnimateDiff: of each frame).

    The table `pe` (1, max_positions, dim) is a saved buffer, as in diffusers, so checkpoints carry it; it is
    computed, never learned, and `reset_buffers` rebuilds it where a model was made on the meta device.
    """

    pe: torch.Tensor

    def __init__(self, dim: int, max_positions: int) -> None:
        super().__init__()
        self.register_buffer("pe", self._table(dim, max_positions))

    @staticmethod
    def _table(dim: int, max_positions: int) -> torch.Tensor:
        position = torch.arange(max_positions, dtype=torch.float32, device=torch.get_default_device()).unsqueeze(1)
        frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=position.device)
                                * (-math.log(10000.0) / dim))
        table = torch.zeros(1, max_positions, dim, device=position.device)
        table[0, :, 0::2] = torch.sin(position * frequencies)  # even channels: sin, odd: cos
        table[0, :, 1::2] = torch.cos(position * frequencies)
        return table

    def reset_buffers(self) -> None:
        self.pe.copy_(self._table(self.pe.shape[-1], self.pe.shape[1]).to(self.pe))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens + self.pe[:, :tokens.shape[1]]  # (b, n, dim) + (1, n, dim)


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
        attention_type: str = "default",
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
                attention_type=attention_type,
            )
            for _ in range(num_layers)
        )
        if use_linear_projection:
            self.proj_out = nn.Linear(inner_dim, in_channels)
        else:
            self.proj_out = nn.Conv2d(inner_dim, in_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                gligen_objs: torch.Tensor | None = None) -> torch.Tensor:
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
            hidden_states = block(hidden_states, encoder_hidden_states, attention_mask, encoder_attention_mask,
                                  gligen_objs)

        if self.use_linear_projection:
            hidden_states = self.proj_out(hidden_states)
        inner_dim = hidden_states.shape[-1]
        hidden_states = hidden_states.reshape(batch, height, width, inner_dim).permute(0, 3, 1, 2).contiguous()
        if not self.use_linear_projection:
            hidden_states = self.proj_out(hidden_states)
        return hidden_states + residual


class DualTransformer2DModel(nn.Module):
    """Two Transformer2DModels over the same map, each reading its own slice of the context (`dual_cross_attention`,
    Versatile Diffusion): tokens 0-76 go to `transformers[1]`, tokens 77-333 to `transformers[0]`; their changes
    to the input are mixed half and half and added back.

    Fixed as diffusers fixes them: one layer each, no linear projection, the slice lengths 77 and 257.
    """

    condition_lengths = (77, 257)
    transformer_index_for_condition = (1, 0)
    mix_ratio = 0.5

    def __init__(self, num_attention_heads: int, attention_head_dim: int, in_channels: int,
                 cross_attention_dim: int | None, norm_num_groups: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.transformers = nn.ModuleList(
            Transformer2DModel(num_attention_heads, attention_head_dim, in_channels,
                               cross_attention_dim=cross_attention_dim, norm_num_groups=norm_num_groups,
                               dropout=dropout)
            for _ in range(2)
        )

    def forward(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                attention_mask: torch.Tensor | None = None, encoder_attention_mask: torch.Tensor | None = None,
                gligen_objs: torch.Tensor | None = None) -> torch.Tensor:
        changes = []
        start = 0
        for length, index in zip(self.condition_lengths, self.transformer_index_for_condition):
            context = encoder_hidden_states[:, start:start + length]
            changes.append(self.transformers[index](hidden_states, context) - hidden_states)
            start += length
        return changes[0] * self.mix_ratio + changes[1] * (1 - self.mix_ratio) + hidden_states
