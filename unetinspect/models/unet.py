"""UNet2DConditionModel: the denoiser of Stable Diffusion 1.x, 2.x and SDXL — and of DeepFloyd IF, Kandinsky,
unCLIP, the SD upscalers and GLIGEN, which are other configs of the same class.

    sample ─ conv_in ─ down_blocks[0..n-1] ─ mid_block ─ up_blocks[0..n-1] ─ conv_norm_out ─ conv_act ─ conv_out
                           │  skips  ──────────────────────►  │
    timestep ─ time_proj ─ time_embedding (+ class_embedding, + add_embedding) ─► emb, into every resnet
    encoder_hidden_states (the text) ─ (encoder_hid_proj) ─► every cross-attention

Module names and state-dict keys are diffusers' exactly, so a diffusers checkpoint loads with no renaming.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from unetinspect.configs.unet import UNetConfig
from unetinspect.errors import InputError
from unetinspect.models.activations import get_activation
from unetinspect.models.blocks import DOWN_BLOCKS, MID_BLOCKS, UP_BLOCKS, BlockSpec
from unetinspect.models.conditioning import ConditionedModel, attach_condition_embeddings, position_net
from unetinspect.models.input_checks import check_inputs

# What the blocks receive beside their input and `emb`: the context tokens, the two attention masks as additive
# biases, and GLIGEN's grounding tokens. Blocks without cross-attention get none of it.
AttentionInputs = dict[str, Any]


class UNet2DConditionModel(ConditionedModel):
    """The conditional UNet built from a `UNetConfig` (kept on `.config`)."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = self.unet_config
        channels = c.block_out_channels

        self.conv_in = nn.Conv2d(c.in_channels, channels[0], kernel_size=c.conv_in_kernel,
                                 padding=(c.conv_in_kernel - 1) // 2)

        # ---- conditioning: timestep, optional class / addition embeddings, optional context projection
        attach_condition_embeddings(self, c)
        self.time_embed_act = get_activation(c.time_embedding_act_fn) if c.time_embedding_act_fn else None

        # ---- the U
        heads = c.heads_per_block
        head_dims = c.per_block(c.attention_head_dim)
        cross_dims = c.cross_attention_dims
        only_cross = c.only_cross_attention_list
        layers = c.layers_per_block_list

        def spec(i: int, head_dim_index: int | None = None, only_cross_attention: bool | None = None) -> BlockSpec:
            return BlockSpec(
                temb_channels=c.blocks_time_embed_dim, resnet_eps=c.norm_eps, resnet_act_fn=c.act_fn,
                resnet_groups=c.norm_num_groups, resnet_time_scale_shift=c.resnet_time_scale_shift,
                dropout=c.dropout, num_attention_heads=heads[i], cross_attention_dim=cross_dims[i],
                use_linear_projection=c.use_linear_projection,
                only_cross_attention=only_cross[i] if only_cross_attention is None else only_cross_attention,
                upcast_attention=c.upcast_attention,
                attention_head_dim=head_dims[i if head_dim_index is None else head_dim_index],
                resnet_skip_time_act=c.resnet_skip_time_act, resnet_out_scale_factor=c.resnet_out_scale_factor,
                cross_attention_norm=c.cross_attention_norm, dual_cross_attention=c.dual_cross_attention,
                attention_type=c.attention_type,
            )

        n = c.num_blocks
        self.down_blocks = nn.ModuleList(
            self._down_block(
                i, block_type, spec(i), in_channels=channels[max(i - 1, 0)], out_channels=channels[i],
                num_layers=layers[i], add_downsample=i < n - 1, downsample_padding=c.downsample_padding,
                transformer_layers=c.transformer_layers_list[i],
            )
            for i, block_type in enumerate(c.down_block_classes)
        )

        # UNetMidBlock2DCrossAttn never uses only_cross_attention; the SimpleCrossAttn one has its own flag
        mid_only_cross = c.mid_only_cross_attention if c.mid_block_type == "UNetMidBlock2DSimpleCrossAttn" else False
        self.mid_block = (
            self._mid_block(spec(n - 1, only_cross_attention=mid_only_cross), channels[-1])
            if c.mid_block_type is not None else None
        )

        # Up block i mirrors down level n-1-i: it consumes that level's skips (layers+1 of them). diffusers reads
        # its attention_head_dim at index i, not n-1-i (only the SimpleCrossAttn, Attn and K blocks use it).
        self.up_blocks = nn.ModuleList(
            self._up_block(
                i, block_type, spec(n - 1 - i, head_dim_index=i),
                in_channels=channels[max(n - 2 - i, 0)],
                prev_output_channel=channels[min(n - i, n - 1)],
                out_channels=channels[n - 1 - i],
                num_layers=layers[n - 1 - i] + 1,
                add_upsample=i < n - 1,
                transformer_layers=c.up_transformer_layers_list[i],
            )
            for i, block_type in enumerate(c.up_block_classes)
        )
        self.num_upsamplers = n - 1

        if c.norm_num_groups is not None:
            self.conv_norm_out = nn.GroupNorm(c.norm_num_groups, channels[0], eps=c.norm_eps)
            self.conv_act = get_activation(c.act_fn)
        else:  # the k-upscaler: no output norm
            self.conv_norm_out = self.conv_act = None
        self.conv_out = nn.Conv2d(channels[0], c.out_channels, kernel_size=c.conv_out_kernel,
                                  padding=(c.conv_out_kernel - 1) // 2)
        self.position_net = position_net(c)

    @property
    def unet_config(self) -> UNetConfig:
        """The image UNet's config that the blocks and the conditioning are built from and read: `config` itself
        here; the video UNets' image half (`config.unet`), beside which they read their own fields by name."""
        return self.config

    # ---- the blocks, one hook each: the video UNets build theirs with temporal layers -------------------------

    def _down_block(self, i: int, block_type: str, spec: BlockSpec, **shape: Any) -> nn.Module:
        return DOWN_BLOCKS[block_type](spec, **shape)

    def _mid_block(self, spec: BlockSpec, channels: int) -> nn.Module:
        c = self.unet_config
        assert c.mid_block_type is not None, "a mid block built for a config without one"  # see __init__
        return MID_BLOCKS[c.mid_block_type](spec, channels, transformer_layers=c.mid_transformer_layers,
                                            output_scale_factor=c.mid_block_scale_factor)

    def _up_block(self, i: int, block_type: str, spec: BlockSpec, **shape: Any) -> nn.Module:
        return UP_BLOCKS[block_type](spec, **shape)

    @staticmethod
    def _block_inputs(block: nn.Module, attention: AttentionInputs) -> AttentionInputs:
        """What a block is called with beside its input and `emb`: the attention inputs, if it attends."""
        return attention if block.has_cross_attention else {}

    # ---- forward --------------------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        down_block_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        mid_block_additional_residual: torch.Tensor | None = None,
        down_intrablock_additional_residuals: tuple[torch.Tensor, ...] | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the noise (or v) for `sample` at `timestep`, conditioned on the text and extras.

        `down_block_additional_residuals` / `mid_block_additional_residual` are a ControlNet's outputs, added to
        the skips and to the mid block's output; `down_intrablock_additional_residuals` are a T2I-Adapter's,
        added inside the down blocks (down residuals without a mid residual are taken as those, as diffusers
        does). Masks are 1 (keep) / 0 (drop) per token; `cross_attention_kwargs` may hold GLIGEN's
        `{"gligen": {"boxes", "masks", "positive_embeddings" ...}}` (and a LoRA `scale`, which changes nothing
        without LoRA layers).
        """
        self._check_inputs(sample, timestep, encoder_hidden_states, class_labels, timestep_cond, added_cond_kwargs,
                           down_block_additional_residuals, mid_block_additional_residual)
        added_cond_kwargs = added_cond_kwargs or {}
        adapter, controlnet, controlnet_mid = self._split_residuals(
            down_intrablock_additional_residuals, down_block_additional_residuals, mid_block_additional_residual)
        if self.config.center_input_sample:
            sample = 2 * sample - 1.0

        emb, hint = self._embed_conditions(sample, timestep, class_labels, timestep_cond, added_cond_kwargs,
                                           encoder_hidden_states)
        if hint is not None:  # Kandinsky's image_hint: the encoded hint joins the input channels
            sample = torch.cat([sample, hint], dim=1)
        encoder_hidden_states = self._project_context(encoder_hidden_states, added_cond_kwargs)
        attention = self._attention_inputs(encoder_hidden_states, attention_mask, encoder_attention_mask,
                                           cross_attention_kwargs, sample.dtype)

        latent_size = sample.shape[-2:]
        sample = self.conv_in(sample)
        skips: tuple[torch.Tensor, ...] = (sample,)
        for down_block in self.down_blocks:
            sample, block_skips = self._run_down_block(down_block, sample, emb, attention, adapter)
            skips += block_skips
        if controlnet is not None:
            skips = tuple(skip + extra for skip, extra in zip(skips, controlnet))

        sample = self._run_mid_block(sample, emb, attention, adapter, controlnet_mid)
        sample = self._run_up_blocks(sample, skips, emb, attention, latent_size)
        return self._output(sample)

    # ---- forward, step by step ---------------------------------------------------------------------------------

    @staticmethod
    def _split_residuals(intrablock: tuple[torch.Tensor, ...] | None, down: tuple[torch.Tensor, ...] | None,
                         mid: torch.Tensor | None) -> tuple[list[torch.Tensor] | None, Any, torch.Tensor | None]:
        """(T2I-Adapter features, ControlNet skip residuals, ControlNet mid residual), as diffusers tells them:
        a ControlNet gives both down and mid residuals; down residuals alone are adapter features passed the
        deprecated way; a mid residual alone is ignored. Adapter features are consumed one per down block (and
        one after the mid block if shapes fit)."""
        adapter = list(intrablock) if intrablock is not None else None
        if down is not None and mid is None:
            return (adapter if adapter is not None else list(down)), None, None
        if down is None:
            return adapter, None, None
        return adapter, down, mid

    def _run_down_block(self, block: nn.Module, sample: torch.Tensor, emb: torch.Tensor, attention: AttentionInputs,
                        adapter: list[torch.Tensor] | None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One down block. An adapter feature goes inside a cross-attention block (after its last attention);
        after a plain block it is added to the output — and to the skip that *is* that output, since diffusers
        adds it in place."""
        inputs = self._block_inputs(block, attention)
        if block.has_cross_attention:
            extra = {"additional_residuals": adapter.pop(0)} if adapter else {}
            return block(sample, emb, **inputs, **extra)
        out, skips = block(sample, emb, **inputs)
        if adapter:
            residual = adapter.pop(0)
            if skips and skips[-1] is out:
                skips = skips[:-1] + (out + residual,)
            out = out + residual
        return out, skips

    def _run_mid_block(self, sample: torch.Tensor, emb: torch.Tensor, attention: AttentionInputs,
                       adapter: list[torch.Tensor] | None, controlnet: torch.Tensor | None) -> torch.Tensor:
        if self.mid_block is not None:
            sample = self.mid_block(sample, emb, **self._block_inputs(self.mid_block, attention))
            if adapter and sample.shape == adapter[0].shape:
                sample = sample + adapter.pop(0)
        return sample if controlnet is None else sample + controlnet

    def _run_up_blocks(self, sample: torch.Tensor, skips: tuple[torch.Tensor | None, ...], emb: torch.Tensor,
                       attention: AttentionInputs, latent_size: torch.Size) -> torch.Tensor:
        """Each up block eats as many skips as it has resnets, deepest first. When the latent is not a multiple
        of 2^upsamplers, each upsampler is told the size of the skip it must land on."""
        factor = 2 ** self.num_upsamplers
        forward_upsample_size = any(dim % factor != 0 for dim in latent_size)
        for i, up_block in enumerate(self.up_blocks):
            # a ModuleList yields nn.Module, whose submodules torch's stubs type as Tensor | Module
            count = len(up_block.resnets)  # pyright: ignore[reportArgumentType]
            block_skips, skips = skips[-count:], skips[:-count]
            upsample_size = (skips[-1].shape[2:] if forward_upsample_size and i < len(self.up_blocks) - 1
                             and skips[-1] is not None else None)
            sample = up_block(sample, block_skips, emb, upsample_size=upsample_size,
                              **self._block_inputs(up_block, attention))
        return sample

    def _output(self, sample: torch.Tensor) -> torch.Tensor:
        """The last up block's output → the prediction: norm and activation (none in the k-upscaler), conv_out."""
        if self.conv_norm_out is not None and self.conv_act is not None:  # both or neither
            sample = self.conv_act(self.conv_norm_out(sample))
        return self.conv_out(sample)

    def _check_inputs(self, sample, timestep, encoder_hidden_states, class_labels, timestep_cond, added_cond_kwargs,
                      down_residuals, mid_residual) -> None:
        """Every input against the config (shapes only), so a mistake names the argument instead of failing in a
        matmul deep inside — or silently broadcasting into a wrong result."""
        # each down block's skip_count (a ModuleList yields nn.Module, whose attributes the stubs cannot know)
        skips = 1 + sum(block.skip_count for block in self.down_blocks)  # pyright: ignore[reportCallIssue, reportArgumentType]
        check_inputs(self.config, sample, timestep, encoder_hidden_states, class_labels, timestep_cond,
                     added_cond_kwargs, skips, down_residuals, mid_residual)

    def _embed_conditions(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                          class_labels: torch.Tensor | None, timestep_cond: torch.Tensor | None,
                          added_cond_kwargs: dict[str, Any], encoder_hidden_states: torch.Tensor | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The per-sample embedding `emb` every resnet receives (timestep + class + addition), and the encoded
        hint image of `image_hint` UNets (else None)."""
        batch = sample.shape[0]
        timesteps = _timesteps_tensor(timestep, sample.device).expand(batch)
        emb = self.time_embedding(self.time_proj(timesteps).to(sample.dtype), timestep_cond)

        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError("this UNet has a class embedding: pass class_labels")
            if self.unet_config.class_embed_type == "timestep":
                class_labels = self.time_proj(class_labels).to(sample.dtype)
            class_emb = self.class_embedding(class_labels).to(sample.dtype)
            emb = torch.cat([emb, class_emb], dim=-1) if self.unet_config.class_embeddings_concat else emb + class_emb

        addition, hint = self._addition_embedding(emb, encoder_hidden_states, added_cond_kwargs)
        if addition is not None:
            emb = emb + addition
        if self.time_embed_act is not None:
            emb = self.time_embed_act(emb)
        return emb, hint

    def _addition_embedding(self, emb: torch.Tensor, encoder_hidden_states: torch.Tensor | None,
                            added: dict[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """`addition_embed_type`'s term of `emb` (and image_hint's encoded hint)."""
        kind = self.unet_config.addition_embed_type
        if kind is not None:
            _require(added, f"addition_embed_type={kind!r}", _ADDITION_NEEDS[kind])
        if kind == "text":
            return self.add_embedding(encoder_hidden_states), None
        if kind == "text_image":
            return self.add_embedding(added.get("text_embeds", encoder_hidden_states), added["image_embeds"]), None
        if kind == "image":
            return self.add_embedding(added["image_embeds"]), None
        if kind == "image_hint":
            return self.add_embedding(added["image_embeds"], added["hint"])
        if kind == "text_time":
            text_embeds = added["text_embeds"]
            time_embeds = self.add_time_proj(added["time_ids"].flatten()).reshape(text_embeds.shape[0], -1)
            return self.add_embedding(torch.cat([text_embeds, time_embeds], dim=-1).to(emb.dtype)), None
        return None, None

    def _project_context(self, encoder_hidden_states: torch.Tensor, added: dict[str, Any]) -> torch.Tensor:
        """The tokens the cross-attentions read: the text, projected (IF), or made from the image embedding
        (Kandinsky 2.2, which then ignores the text) or from both (Kandinsky 2.1)."""
        projection, kind = self.encoder_hid_proj, self.unet_config.encoder_projection
        if projection is None:  # built for every encoder_projection, None without one
            return encoder_hidden_states
        if kind in ("text_image_proj", "image_proj"):
            _require(added, f"encoder_hid_dim_type={kind!r}", ("image_embeds",))
            if kind == "image_proj":
                return projection(added["image_embeds"])
            return projection(encoder_hidden_states, added["image_embeds"])
        return projection(encoder_hidden_states)  # text_proj

    def _attention_inputs(self, encoder_hidden_states: torch.Tensor, attention_mask: torch.Tensor | None,
                          encoder_attention_mask: torch.Tensor | None, cross_attention_kwargs: dict[str, Any] | None,
                          dtype: torch.dtype) -> AttentionInputs:
        """What every cross-attention block receives: the context, 1/0 masks turned into (b, 1, tokens) biases
        (-10000 where dropped), and GLIGEN's box tokens from `position_net`."""
        gligen = (cross_attention_kwargs or {}).get("gligen")
        gligen_objs = None
        if gligen is not None:
            if self.position_net is None:
                raise InputError("cross_attention_kwargs has 'gligen' but this UNet's attention_type is not gated",
                                 "GLIGEN boxes need a UNet with attention_type 'gated' or 'gated-text-image'")
            gligen_objs = self.position_net(**gligen)
        return {
            "encoder_hidden_states": encoder_hidden_states,
            "attention_mask": _mask_bias(attention_mask, dtype),
            "encoder_attention_mask": _mask_bias(encoder_attention_mask, dtype),
            "gligen_objs": gligen_objs,
        }


# added_cond_kwargs each addition_embed_type reads (text_image falls back to the context for text_embeds)
_ADDITION_NEEDS = {
    "text": (), "text_image": ("image_embeds",), "image": ("image_embeds",), "image_hint": ("image_embeds", "hint"),
    "text_time": ("text_embeds", "time_ids"),
}


def _require(added: dict[str, Any], what: str, keys: tuple[str, ...]) -> None:
    missing = [key for key in keys if key not in added]
    if missing:
        raise InputError(f"this UNet's {what} needs added_cond_kwargs {', '.join(missing)}")


def _mask_bias(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """A (b, tokens) keep-mask as the additive (b, 1, tokens) bias every attention adds to its scores."""
    return None if mask is None else ((1 - mask.to(dtype)) * -10000.0).unsqueeze(1)


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
