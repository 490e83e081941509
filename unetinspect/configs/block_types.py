"""The catalogue of block types a `UNet2DConditionModel` config may name, with each one's traits.

Config validation, the model, the diagram and the single-file mapping all ask this table — "does this block
attend to the text?", "is its attention_head_dim a head count or a head width?", "does its upsampler always
double?" — instead of keeping their own tuples of names. Torch-free: configs are checked without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Path = Literal["down", "mid", "up"]
# What follows each resnet: nothing, a Transformer2DModel (self- + cross-attention), an added-KV attention (image
# and text tokens in one softmax: IF, unCLIP), a plain self-attention, or k-diffusion's attention block.
AttentionKind = Literal["none", "transformer", "added_kv", "self", "k"]


@dataclass(frozen=True)
class BlockType:
    name: str
    path: Path
    attention: AttentionKind
    diagram_kind: str  # the colour family a diagram draws it in (see views/graph.py's legend)
    # the mid block reads its attention like its down/up kin; the "none" blocks read no attention_head_dim
    doubles_only: bool = False  # an up block whose upsampler always doubles (its size cannot land on any skip)

    @property
    def cross_attention(self) -> bool:
        """Whether the text reaches it (its forward takes encoder_hidden_states)."""
        return self.attention in ("transformer", "added_kv", "k")

    @property
    def heads_from_head_dim(self) -> bool:
        """Whether `attention_head_dim` is a head *count* here (the Transformer2DModel blocks, as diffusers
        reads the misnamed field) rather than the width of one head (added-KV, self- and k-attention)."""
        return self.attention == "transformer"

    @property
    def head_width_from_head_dim(self) -> bool:
        return self.attention in ("added_kv", "self", "k")

    @property
    def k_diffusion(self) -> bool:
        return self.name.startswith("K")


BLOCK_TYPES: dict[str, BlockType] = {b.name: b for b in (
    BlockType("DownBlock2D", "down", "none", "res_block"),
    BlockType("CrossAttnDownBlock2D", "down", "transformer", "attn_block"),
    BlockType("ResnetDownsampleBlock2D", "down", "none", "resample_block"),
    BlockType("SimpleCrossAttnDownBlock2D", "down", "added_kv", "simple_attn_block"),
    BlockType("AttnDownBlock2D", "down", "self", "self_attn_block"),
    BlockType("KDownBlock2D", "down", "none", "k_block"),
    BlockType("KCrossAttnDownBlock2D", "down", "k", "k_attn_block"),
    BlockType("UNetMidBlock2DCrossAttn", "mid", "transformer", "mid_block"),
    BlockType("UNetMidBlock2DSimpleCrossAttn", "mid", "added_kv", "mid_block"),
    BlockType("UNetMidBlock2D", "mid", "none", "mid_plain_block"),
    BlockType("UpBlock2D", "up", "none", "res_block"),
    BlockType("CrossAttnUpBlock2D", "up", "transformer", "attn_block"),
    BlockType("ResnetUpsampleBlock2D", "up", "none", "resample_block", doubles_only=True),
    BlockType("SimpleCrossAttnUpBlock2D", "up", "added_kv", "simple_attn_block", doubles_only=True),
    BlockType("AttnUpBlock2D", "up", "self", "self_attn_block", doubles_only=True),
    BlockType("KUpBlock2D", "up", "none", "k_block", doubles_only=True),
    BlockType("KCrossAttnUpBlock2D", "up", "k", "k_attn_block", doubles_only=True),
)}


def names_on(path: Path) -> tuple[str, ...]:
    return tuple(name for name, block in BLOCK_TYPES.items() if block.path == path)
