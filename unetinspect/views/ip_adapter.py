"""What an IP-Adapter adds to a denoising step: its parameters, per block, and the FLOPs of the image tokens.

Per cross-attention with L query tokens (of width I), T image tokens and text width C, in a batch of b:

    to_k_ip, to_v_ip       2 × 2·b·T·C·I        the image tokens' keys and values
    attention              2·b·L·T·I + 2·b·L·T·I scores Q·Kᵀ, then the weighted sum of the values
    scale and add          2·b·L·I              ip_scale · (image attention), added to the text attention

L and I come from the traced step itself (the input of each `attn2`), so any size and batch is counted right.
The image projection runs once per image: its Linear layers cost 2·params·b (the Plus Resampler, attention
over the CLIP tokens, is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetinspect.errors import WeightsError
from unetinspect.views.summary import Summary
from unetinspect.weights.ip_adapter import IPAdapterFile, assign_entries, parse_ip_adapter
from unetinspect.weights.lora import block_of
from unetinspect.weights.safetensors import read_header


@dataclass(frozen=True)
class IPAdapterBlock:
    block: str
    attentions: int
    params: int
    flops: int


@dataclass(frozen=True)
class IPAdapterCost:
    source: str
    file: IPAdapterFile
    blocks: tuple[IPAdapterBlock, ...]
    image_proj_flops: int
    step_params: int  # the UNet's, for the step totals
    step_flops: int

    @property
    def params(self) -> int:
        return self.file.params

    @property
    def flops(self) -> int:
        return self.image_proj_flops + sum(b.flops for b in self.blocks)

    def to_dict(self) -> dict[str, Any]:
        f = self.file
        return {
            "file": self.source, "kind": f.kind, "tokens": f.tokens, "params": self.params,
            "image_proj_params": f.image_proj_params, "image_proj_flops": self.image_proj_flops,
            "attention_params": sum(e.params for e in f.entries), "other_params": f.other_params,
            "flops": self.flops,
            "blocks": [{"block": b.block, "attentions": b.attentions, "params": b.params, "flops": b.flops}
                       for b in self.blocks],
            "step": {"params": self.step_params + self.params, "flops": self.step_flops + self.flops},
        }


def ip_adapter_cost(path: str | Path, summary: Summary) -> IPAdapterCost:
    """The IP-Adapter in `path` on the UNet traced in `summary`, checked to fit it."""
    path = Path(path).expanduser()
    if path.suffix != ".safetensors" or not path.is_file():
        raise WeightsError(f"--ip-adapter {path}: not a .safetensors file", "give an IP-Adapter .safetensors file")
    file = parse_ip_adapter({n: t.shape for n, t in read_header(path).tensors.items()}, origin=str(path))
    trace = summary.trace
    attentions = [r for r in trace.records if r.path.endswith(".attn2") and r.call == 0]
    entries = assign_entries(file, [r.path for r in attentions], origin=str(path))
    batch = trace.root.inputs[0].shape[0]
    groups: dict[str, list[tuple[int, int]]] = {}
    for record in attentions:  # forward order
        entry = entries[record.path]
        queries, inner = record.inputs[0].shape[-2], record.inputs[0].shape[-1]  # b × L × I
        context = record.inputs[1].shape[-1] if len(record.inputs) > 1 else entry.k_shape[1]
        if entry.k_shape != (inner, context) or entry.v_shape != (inner, context):
            raise WeightsError(f"{path}: ip_adapter.{entry.number}.to_k_ip is {entry.k_shape[0]}×{entry.k_shape[1]}, "
                               f"{record.path} needs {inner}×{context}", "the IP-Adapter is for another base model")
        tokens = file.tokens
        flops = (2 * (2 * batch * tokens * context * inner) + 4 * batch * queries * tokens * inner
                 + 2 * batch * queries * inner)
        groups.setdefault(block_of(record.path), []).append((entry.params, flops))
    blocks = tuple(IPAdapterBlock(block, len(items), sum(p for p, _ in items), sum(f for _, f in items))
                   for block, items in groups.items())
    return IPAdapterCost(str(path), file, blocks, 2 * file.image_proj_linear_params * batch,
                         trace.total_params, trace.flops)
