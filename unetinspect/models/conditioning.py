"""The conditioning modules a config asks for, built the way diffusers' UNet2DConditionModel builds them.

Each family feeds the UNet something else beside the timestep: class labels (the x4 upscaler's noise level,
unCLIP's image embedding), SDXL's pooled text and size ids, IF's pooled text, Kandinsky's image embedding (and
hint), GLIGEN's boxes. Each factory here returns the module for one config field, or None when it is unset.
"""

from __future__ import annotations

from torch import nn

from unetinspect.configs.unet import UNetConfig
from unetinspect.models.embeddings import (
    GaussianFourierProjection,
    GLIGENTextBoundingboxProjection,
    ImageHintTimeEmbedding,
    ImageProjection,
    ImageTimeEmbedding,
    TextImageProjection,
    TextImageTimeEmbedding,
    TextTimeEmbedding,
    TimestepEmbedding,
    Timesteps,
)
from unetinspect.models.validated import required, single_cross_attention_dim


class ConditionedModel(nn.Module):
    """A UNet or its ControlNet: the conditioning modules `attach_condition_embeddings` registers on it, as their
    forward passes read them."""

    time_proj: nn.Module
    time_embedding: TimestepEmbedding
    encoder_hid_proj: nn.Module | None
    class_embedding: nn.Module | None
    add_time_proj: Timesteps  # only with addition_embed_type="text_time"
    add_embedding: nn.Module  # only with an addition_embed_type


def attach_condition_embeddings(module: ConditionedModel, c: UNetConfig, *, time_extras: bool = True) -> None:
    """Register on `module`, under diffusers' names, the conditioning a UNet and its ControlNet share: the time
    projection and embedding, the context projection, the class and the addition embeddings.

    `time_extras=False` leaves out the time embedding's post-activation and condition projection, which
    diffusers' ControlNet does not build.
    """
    module.time_proj, time_input_dim = time_projection(c)
    module.time_embedding = TimestepEmbedding(time_input_dim, c.time_embed_dim, act_fn=c.act_fn,
                                              post_act_fn=c.timestep_post_act if time_extras else None,
                                              cond_proj_dim=c.time_cond_proj_dim if time_extras else None)
    module.encoder_hid_proj = encoder_hid_projection(c)
    module.class_embedding = class_embedding(c, time_input_dim)
    if c.addition_embed_type == "text_time":
        module.add_time_proj = Timesteps(required(c.addition_time_embed_dim, "addition_time_embed_dim"),
                                         c.flip_sin_to_cos, c.freq_shift)
    add_embedding = addition_embedding(c)
    if add_embedding is not None:  # one for every addition_embed_type
        module.add_embedding = add_embedding


def time_projection(c: UNetConfig) -> tuple[nn.Module, int]:
    """`time_proj` and the width of what it gives: sinusoidal over block_out_channels[0], or Fourier features
    over the whole embedding width (half sines, half cosines)."""
    if c.time_embedding_type == "fourier":
        return GaussianFourierProjection(c.time_embed_dim // 2, flip_sin_to_cos=c.flip_sin_to_cos), c.time_embed_dim
    return Timesteps(c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift), c.block_out_channels[0]


def class_embedding(c: UNetConfig, time_input_dim: int) -> nn.Module | None:
    """The class-label embedding a config asks for (None for SD; a lookup table, MLP or projection otherwise)."""
    if c.class_embed_type is None and c.num_class_embeds is not None:
        return nn.Embedding(c.num_class_embeds, c.time_embed_dim)
    if c.class_embed_type == "timestep":
        return TimestepEmbedding(time_input_dim, c.time_embed_dim, act_fn=c.act_fn)
    if c.class_embed_type == "identity":
        return nn.Identity()
    if c.class_embed_type == "projection":
        return TimestepEmbedding(_projection_input_dim(c), c.time_embed_dim)
    if c.class_embed_type == "simple_projection":
        return nn.Linear(_projection_input_dim(c), c.time_embed_dim)
    return None


def addition_embedding(c: UNetConfig) -> nn.Module | None:
    """`add_embedding` for `addition_embed_type` (SDXL's text_time is built by the UNet with its add_time_proj)."""
    kind, dim = c.addition_embed_type, c.time_embed_dim
    if kind == "text":  # pools the text as the caller passes it, before encoder_hid_proj
        return TextTimeEmbedding(c.encoder_hid_dim or single_cross_attention_dim(c), dim,
                                 c.addition_embed_type_num_heads)
    if kind == "text_image":
        return TextImageTimeEmbedding(single_cross_attention_dim(c), single_cross_attention_dim(c), dim)
    if kind == "image":
        return ImageTimeEmbedding(_encoder_hid_dim(c), dim)
    if kind == "image_hint":
        return ImageHintTimeEmbedding(_encoder_hid_dim(c), dim)
    if kind == "text_time":
        return TimestepEmbedding(_projection_input_dim(c), dim)
    return None


def encoder_hid_projection(c: UNetConfig) -> nn.Module | None:
    """`encoder_hid_proj`: what turns the caller's context (text, image embedding, or both) into the tokens
    every cross-attention reads."""
    kind = c.encoder_projection
    if kind is None:
        return None
    width = single_cross_attention_dim(c)
    if kind == "text_proj":
        return nn.Linear(_encoder_hid_dim(c), width)
    if kind == "text_image_proj":
        return TextImageProjection(_encoder_hid_dim(c), width, width)
    if kind == "image_proj":
        return ImageProjection(_encoder_hid_dim(c), width)
    return None


def position_net(c: UNetConfig) -> nn.Module | None:
    """GLIGEN's box encoder, for `attention_type` gated (phrases) or gated-text-image (phrases and images)."""
    if c.attention_type not in ("gated", "gated-text-image"):
        return None
    width = c.cross_attention_dims[0]
    feature_type = "text-only" if c.attention_type == "gated" else "text-image"
    return GLIGENTextBoundingboxProjection(positive_len=width, out_dim=width, feature_type=feature_type)


def _projection_input_dim(c: UNetConfig) -> int:
    """The class / text_time projection's input width (validation: set whenever one of them is asked for)."""
    return required(c.projection_class_embeddings_input_dim, "projection_class_embeddings_input_dim")


def _encoder_hid_dim(c: UNetConfig) -> int:
    """The image embedding's (or projected text's) width (validation: set with encoder_hid_dim_type and the
    image additions)."""
    return required(c.encoder_hid_dim, "encoder_hid_dim")
