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
            # the UNet checks timestep_cond against time_cond_proj_dim, which builds cond_proj
            assert self.cond_proj is not None, "a condition for a time embedding without cond_proj"
            sample = sample + self.cond_proj(condition)
        sample = self.linear_2(self.act(self.linear_1(sample)))
        if self.post_act is not None:
            sample = self.post_act(sample)
        return sample


class GaussianFourierProjection(nn.Module):
    """Random Fourier features of the timestep (`time_embedding_type="fourier"`, score-SDE and the k-upscaler):
    [sin | cos] of 2π·t·w for fixed random frequencies `weight` (a frozen parameter, saved with the model)."""

    def __init__(self, embedding_size: int, flip_sin_to_cos: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(embedding_size), requires_grad=False)
        self.flip_sin_to_cos = flip_sin_to_cos

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        angles = timesteps[:, None] * self.weight[None, :] * 2 * math.pi
        sin, cos = torch.sin(angles), torch.cos(angles)
        return torch.cat([cos, sin] if self.flip_sin_to_cos else [sin, cos], dim=-1)


class AttentionPooling(nn.Module):
    """CLIP-style attention pooling: the mean token (plus a learned position) queries all tokens; one vector out."""

    def __init__(self, num_heads: int, embed_dim: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(1, embed_dim) / embed_dim**0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.num_heads = num_heads

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, _, width = tokens.shape
        head_dim = width // self.num_heads
        class_token = tokens.mean(dim=1, keepdim=True) + self.positional_embedding.to(tokens.dtype)
        tokens = torch.cat([class_token, tokens], dim=1)  # (b, 1 + length, width)

        def heads(x: torch.Tensor) -> torch.Tensor:  # (b, n, width) → (b*heads, head_dim, n)
            return x.view(batch, -1, self.num_heads, head_dim).transpose(1, 2) \
                .reshape(batch * self.num_heads, -1, head_dim).transpose(1, 2)

        scale = 1 / math.sqrt(math.sqrt(head_dim))  # applied to both sides: steadier in fp16
        query, key, value = heads(self.q_proj(class_token)), heads(self.k_proj(tokens)), heads(self.v_proj(tokens))
        weight = torch.einsum("bct,bcs->bts", query * scale, key * scale)
        weight = torch.softmax(weight.float(), dim=-1).type(weight.dtype)
        pooled = torch.einsum("bts,bcs->bct", weight, value)
        return pooled.reshape(batch, -1, 1).transpose(1, 2)[:, 0, :]


class TextTimeEmbedding(nn.Module):
    """`addition_embed_type="text"` (DeepFloyd IF): the text tokens pooled by attention into one vector for `emb`."""

    def __init__(self, encoder_dim: int, time_embed_dim: int, num_heads: int = 64) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(encoder_dim)
        self.pool = AttentionPooling(num_heads, encoder_dim)
        self.proj = nn.Linear(encoder_dim, time_embed_dim)
        self.norm2 = nn.LayerNorm(time_embed_dim)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.proj(self.pool(self.norm1(text))))


class _ImageEmbedding(nn.Module):
    """The CLIP image embedding projected and normalised (`image_proj`, `image_norm`): Kandinsky 2.2's `image`
    and `image_hint` additions both start so (the second also returns the encoded hint, so it is no subclass)."""

    def __init__(self, image_embed_dim: int, time_embed_dim: int) -> None:
        super().__init__()
        self.image_proj = nn.Linear(image_embed_dim, time_embed_dim)
        self.image_norm = nn.LayerNorm(time_embed_dim)

    def _embed_image(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.image_norm(self.image_proj(image_embeds))


class ImageTimeEmbedding(_ImageEmbedding):
    """`addition_embed_type="image"` (Kandinsky 2.2): the CLIP image embedding projected and normalised."""

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        return self._embed_image(image_embeds)


class TextImageTimeEmbedding(nn.Module):
    """`addition_embed_type="text_image"` (Kandinsky 2.1): projected image embedding + normalised projected text."""

    def __init__(self, text_embed_dim: int, image_embed_dim: int, time_embed_dim: int) -> None:
        super().__init__()
        self.text_proj = nn.Linear(text_embed_dim, time_embed_dim)
        self.text_norm = nn.LayerNorm(time_embed_dim)
        self.image_proj = nn.Linear(image_embed_dim, time_embed_dim)

    def forward(self, text_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        return self.image_proj(image_embeds) + self.text_norm(self.text_proj(text_embeds))


class ImageHintTimeEmbedding(_ImageEmbedding):
    """`addition_embed_type="image_hint"` (Kandinsky 2.2 ControlNet): the image embedding as above, plus a hint
    image (b, 3, H, W at pixel size) encoded by a small conv stack to 4 channels at H/8 × W/8, which the UNet
    concatenates to its input."""

    def __init__(self, image_embed_dim: int, time_embed_dim: int) -> None:
        super().__init__(image_embed_dim, time_embed_dim)
        widths = (3, 16, 16, 32, 32, 96, 96, 256)
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, stride=2 if i in (2, 4, 6) else 1), nn.SiLU()]
        layers.append(nn.Conv2d(256, 4, 3, padding=1))
        self.input_hint_block = nn.Sequential(*layers)

    def forward(self, image_embeds: torch.Tensor, hint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._embed_image(image_embeds), self.input_hint_block(hint)


class TextImageProjection(nn.Module):
    """`encoder_hid_dim_type="text_image_proj"` (Kandinsky 2.1): the context becomes 10 tokens made from the image
    embedding followed by the projected text tokens."""

    num_image_text_embeds = 10

    def __init__(self, text_embed_dim: int, image_embed_dim: int, cross_attention_dim: int) -> None:
        super().__init__()
        self.image_embeds = nn.Linear(image_embed_dim, self.num_image_text_embeds * cross_attention_dim)
        self.text_proj = nn.Linear(text_embed_dim, cross_attention_dim)

    def forward(self, text_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        image_tokens = self.image_embeds(image_embeds).reshape(text_embeds.shape[0], self.num_image_text_embeds, -1)
        return torch.cat([image_tokens, self.text_proj(text_embeds)], dim=1)


class ImageProjection(nn.Module):
    """`encoder_hid_dim_type="image_proj"` (Kandinsky 2.2): the context is 32 tokens made from the image embedding;
    the text passed as `encoder_hidden_states` is not read."""

    num_image_text_embeds = 32

    def __init__(self, image_embed_dim: int, cross_attention_dim: int) -> None:
        super().__init__()
        self.image_embeds = nn.Linear(image_embed_dim, self.num_image_text_embeds * cross_attention_dim)
        self.norm = nn.LayerNorm(cross_attention_dim)

    def forward(self, image_embeds: torch.Tensor) -> torch.Tensor:
        tokens = self.image_embeds(image_embeds.to(self.image_embeds.weight.dtype))
        return self.norm(tokens.reshape(image_embeds.shape[0], self.num_image_text_embeds, -1))


def box_fourier_features(boxes: torch.Tensor, frequencies: int) -> torch.Tensor:
    """(b, n, 4) boxes → (b, n, frequencies·2·4): sin and cos of each coordinate at 100^(k/frequencies)."""
    batch, count = boxes.shape[:2]
    scales = 100 ** (torch.arange(frequencies) / frequencies)
    angles = scales[None, None, None].to(device=boxes.device, dtype=boxes.dtype) * boxes.unsqueeze(-1)
    features = torch.stack((angles.sin(), angles.cos()), dim=-1)  # (b, n, 4, f, 2)
    return features.permute(0, 1, 3, 4, 2).reshape(batch, count, frequencies * 2 * 4)


def _mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, 512), nn.SiLU(), nn.Linear(512, 512), nn.SiLU(), nn.Linear(512, out_dim))


class GLIGENTextBoundingboxProjection(nn.Module):
    """GLIGEN's `position_net`: each grounding box (Fourier features of its corners) with its phrase (and, for
    gated-text-image, its image) embedding becomes one token for the gated self-attention; masked-out boxes
    use learned null features."""

    fourier_freqs = 8

    def __init__(self, positive_len: int, out_dim: int, feature_type: str = "text-only") -> None:
        super().__init__()
        position_dim = self.fourier_freqs * 2 * 4  # sin/cos × xyxy
        if feature_type == "text-only":
            self.linears = _mlp(positive_len + position_dim, out_dim)
            self.null_positive_feature = nn.Parameter(torch.zeros([positive_len]))
        else:
            self.linears_text = _mlp(positive_len + position_dim, out_dim)
            self.linears_image = _mlp(positive_len + position_dim, out_dim)
            self.null_text_feature = nn.Parameter(torch.zeros([positive_len]))
            self.null_image_feature = nn.Parameter(torch.zeros([positive_len]))
        self.null_position_feature = nn.Parameter(torch.zeros([position_dim]))

    def forward(self, boxes: torch.Tensor, masks: torch.Tensor, positive_embeddings: torch.Tensor | None = None,
                phrases_masks: torch.Tensor | None = None, image_masks: torch.Tensor | None = None,
                phrases_embeddings: torch.Tensor | None = None,
                image_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        def masked(values: torch.Tensor, mask: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
            mask = mask.unsqueeze(-1)
            return values * mask + (1 - mask) * null.view(1, 1, -1)

        position = masked(box_fourier_features(boxes, self.fourier_freqs), masks, self.null_position_feature)
        if positive_embeddings is not None:
            positive = masked(positive_embeddings, masks, self.null_positive_feature)
            return self.linears(torch.cat([positive, position], dim=-1))
        # gated-text-image: the pipelines pass phrases and images, each with its mask
        assert phrases_embeddings is not None and phrases_masks is not None, "phrases without embeddings or masks"
        assert image_embeddings is not None and image_masks is not None, "images without embeddings or masks"
        text = masked(phrases_embeddings, phrases_masks, self.null_text_feature)
        image = masked(image_embeddings, image_masks, self.null_image_feature)
        return torch.cat([self.linears_text(torch.cat([text, position], dim=-1)),
                          self.linears_image(torch.cat([image, position], dim=-1))], dim=1)
