"""UNet2DConditionModel: the denoiser of Stable Diffusion 1.x, 2.x and SDXL.

    sample ─ conv_in ─ down_blocks[0..n-1] ─ mid_block ─ up_blocks[0..n-1] ─ conv_norm_out ─ conv_act ─ conv_out
                           │  skips  ──────────────────────►  │
    timestep ─ time_proj ─ time_embedding (+ class / SDXL add_embedding) ─► emb, into every resnet
    encoder_hidden_states (the text) ─► every cross-attention

Module names and state-dict keys are diffusers' exactly, so a diffusers checkpoint loads with no renaming.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetinspect.config import UNetConfig
from unetinspect.models.activations import get_activation
from unetinspect.models.blocks import DOWN_BLOCKS, UP_BLOCKS, BlockSpec, UNetMidBlock2DCrossAttn
from unetinspect.models.embeddings import TimestepEmbedding, Timesteps
from unetinspect.models.input_checks import check_inputs


class UNet2DConditionModel(nn.Module):
    """The conditional UNet built from a `UNetConfig` (kept on `.config`)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        channels = c.block_out_channels
        time_embed_dim = c.time_embed_dim

        self.conv_in = nn.Conv2d(c.in_channels, channels[0], kernel_size=c.conv_in_kernel,
                                 padding=(c.conv_in_kernel - 1) // 2)

        # ---- conditioning: timestep, optional class / SDXL size embeddings, optional text projection
        self.time_proj = Timesteps(channels[0], c.flip_sin_to_cos, c.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], time_embed_dim, act_fn=c.act_fn,
                                                post_act_fn=c.timestep_post_act, cond_proj_dim=c.time_cond_proj_dim)
        self.encoder_hid_proj = (
            nn.Linear(c.encoder_hid_dim, c.cross_attention_dims[0]) if c.encoder_hid_dim is not None else None
        )
        self.class_embedding = _class_embedding(c, time_embed_dim)
        if c.addition_embed_type == "text_time":
            self.add_time_proj = Timesteps(c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift)
            self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, time_embed_dim)
        self.time_embed_act = get_activation(c.time_embedding_act_fn) if c.time_embedding_act_fn else None

        # ---- the U
        heads = c.heads_per_block
        cross_dims = c.cross_attention_dims
        only_cross = c.only_cross_attention_list
        layers = c.layers_per_block_list

        def spec(i: int, only_cross_attention: bool | None = None) -> BlockSpec:
            return BlockSpec(
                temb_channels=c.blocks_time_embed_dim, resnet_eps=c.norm_eps, resnet_act_fn=c.act_fn,
                resnet_groups=c.norm_num_groups, resnet_time_scale_shift=c.resnet_time_scale_shift,
                dropout=c.dropout, num_attention_heads=heads[i], cross_attention_dim=cross_dims[i],
                use_linear_projection=c.use_linear_projection,
                only_cross_attention=only_cross[i] if only_cross_attention is None else only_cross_attention,
                upcast_attention=c.upcast_attention,
            )

        n = c.num_blocks
        self.down_blocks = nn.ModuleList(
            DOWN_BLOCKS[block_type](
                spec(i), in_channels=channels[max(i - 1, 0)], out_channels=channels[i], num_layers=layers[i],
                add_downsample=i < n - 1, downsample_padding=c.downsample_padding,
                transformer_layers=c.transformer_layers_list[i],
            )
            for i, block_type in enumerate(c.down_block_types)
        )

        self.mid_block = (
            # diffusers' mid block never uses only_cross_attention, whatever the config says
            UNetMidBlock2DCrossAttn(spec(n - 1, only_cross_attention=False), channels[-1], transformer_layers=c.transformer_layers_list[-1],
                                    output_scale_factor=c.mid_block_scale_factor)
            if c.mid_block_type is not None else None
        )

        # Up block i mirrors down level n-1-i: it consumes that level's skips (layers+1 of them).
        self.up_blocks = nn.ModuleList(
            UP_BLOCKS[block_type](
                spec(n - 1 - i),
                in_channels=channels[max(n - 2 - i, 0)],
                prev_output_channel=channels[min(n - i, n - 1)],
                out_channels=channels[n - 1 - i],
                num_layers=layers[n - 1 - i] + 1,
                add_upsample=i < n - 1,
                transformer_layers=c.up_transformer_layers_list[i],
            )
            for i, block_type in enumerate(c.up_block_types)
        )
        self.num_upsamplers = n - 1

        self.conv_norm_out = nn.GroupNorm(c.norm_num_groups, channels[0], eps=c.norm_eps)
        self.conv_act = get_activation(c.act_fn)
        self.conv_out = nn.Conv2d(channels[0], c.out_channels, kernel_size=c.conv_out_kernel,
                                  padding=(c.conv_out_kernel - 1) // 2)

    # ---- forward --------------------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (or v) for `sample` at `timestep`, conditioned on the text and extras.

        `down_block_additional_residuals` / `mid_block_additional_residual` are a ControlNet's outputs, added to
        the skips and to the mid block's output.
        """
        self._check_inputs(sample, timestep, encoder_hidden_states, class_labels, timestep_cond, added_cond_kwargs,
                           down_block_additional_residuals, mid_block_additional_residual)
        # Upsamplers must land on the skip sizes when the latent is not a multiple of 2^downsamples.
        factor = 2 ** self.num_upsamplers
        forward_upsample_size = any(dim % factor != 0 for dim in sample.shape[-2:])

        if self.config.center_input_sample:
            sample = 2 * sample - 1.0

        emb = self._embed_conditions(sample, timestep, class_labels, timestep_cond, added_cond_kwargs or {})
        if self.encoder_hid_proj is not None:
            encoder_hidden_states = self.encoder_hid_proj(encoder_hidden_states)

        sample = self.conv_in(sample)

        skips: tuple[torch.Tensor, ...] = (sample,)
        for down_block in self.down_blocks:
            sample, block_skips = down_block(sample, emb, encoder_hidden_states=encoder_hidden_states)
            skips += block_skips
        if down_block_additional_residuals is not None:
            skips = tuple(skip + extra for skip, extra in zip(skips, down_block_additional_residuals))

        if self.mid_block is not None:
            sample = self.mid_block(sample, emb, encoder_hidden_states=encoder_hidden_states)
        if mid_block_additional_residual is not None:
            sample = sample + mid_block_additional_residual

        for i, up_block in enumerate(self.up_blocks):
            count = len(up_block.resnets)
            block_skips, skips = skips[-count:], skips[:-count]
            upsample_size = skips[-1].shape[2:] if forward_upsample_size and i < len(self.up_blocks) - 1 else None
            sample = up_block(sample, block_skips, emb, encoder_hidden_states=encoder_hidden_states,
                              upsample_size=upsample_size)

        sample = self.conv_act(self.conv_norm_out(sample))
        return self.conv_out(sample)

    def _check_inputs(self, sample, timestep, encoder_hidden_states, class_labels, timestep_cond, added_cond_kwargs,
                      down_residuals, mid_residual) -> None:
        """Every input against the config (shapes only), so a mistake names the argument instead of failing in a
        matmul deep inside — or silently broadcasting into a wrong result."""
        skips = 1 + sum(len(block.resnets) + (block.downsamplers is not None) for block in self.down_blocks)
        check_inputs(self.config, sample, timestep, encoder_hidden_states, class_labels, timestep_cond,
                     added_cond_kwargs, skips, down_residuals, mid_residual)

    def _embed_conditions(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                          class_labels: torch.Tensor | None, timestep_cond: torch.Tensor | None,
                          added_cond_kwargs: dict[str, Any]) -> torch.Tensor:
        """The per-sample embedding `emb` every resnet receives: timestep + class + SDXL size/crop + text pool."""
        batch = sample.shape[0]
        timesteps = _timesteps_tensor(timestep, sample.device).expand(batch)
        emb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype), timestep_cond)

        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this UNet has a class embedding: pass class_labels")
            if self.config.class_embed_type == "timestep":
                class_labels = self.time_proj(class_labels).to(sample.dtype)
            class_emb = self.class_embedding(class_labels).to(sample.dtype)
            emb = torch.cat([emb, class_emb], dim=-1) if self.config.class_embeddings_concat else emb + class_emb

        if self.config.addition_embed_type == "text_time":
            missing = {"text_embeds", "time_ids"} - set(added_cond_kwargs)
            if missing:
                raise ValueError(f"SDXL-style UNet: added_cond_kwargs needs {', '.join(sorted(missing))}")
            text_embeds = added_cond_kwargs["text_embeds"]
            time_embeds = self.add_time_proj(added_cond_kwargs["time_ids"].flatten())
            time_embeds = time_embeds.reshape(text_embeds.shape[0], -1)
            emb = emb + self.add_embedding(torch.cat([text_embeds, time_embeds], dim=-1).to(emb.dtype))

        if self.time_embed_act is not None:
            emb = self.time_embed_act(emb)
        return emb


def _timesteps_tensor(timestep: torch.Tensor | float | int, device: torch.device) -> torch.Tensor:
    """A Python number, 0-d or 1-d tensor → 1-d tensor on the sample's device (float64 for Python floats)."""
    if not torch.is_tensor(timestep):
        dtype = torch.float64 if isinstance(timestep, float) else torch.int64
        if device.type == "mps":
            dtype = torch.float32 if dtype == torch.float64 else torch.int32
        return torch.tensor([timestep], dtype=dtype, device=device)
    if timestep.ndim == 0:
        return timestep[None].to(device)
    return timestep


def _class_embedding(c: UNetConfig, time_embed_dim: int) -> nn.Module | None:
    """The class-label embedding a config asks for (None for SD; a lookup table, MLP or projection otherwise)."""
    if c.class_embed_type is None and c.num_class_embeds is not None:
        return nn.Embedding(c.num_class_embeds, time_embed_dim)
    if c.class_embed_type == "timestep":
        return TimestepEmbedding(c.block_out_channels[0], time_embed_dim, act_fn=c.act_fn)
    if c.class_embed_type == "identity":
        return nn.Identity()
    if c.class_embed_type == "projection":
        return TimestepEmbedding(c.projection_class_embeddings_input_dim, time_embed_dim)
    if c.class_embed_type == "simple_projection":
        return nn.Linear(c.projection_class_embeddings_input_dim, time_embed_dim)
    return None
