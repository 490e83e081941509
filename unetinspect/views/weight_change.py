"""What a fine-tune changed: two checkpoints of the same architecture, weight against weight, block by block.

Both are read memory-mapped under our key names (an original single file is renamed, so a diffusers folder can
face an LDM file of the same model) and compared one tensor at a time, so only two tensors are ever in memory
as float32. Per block: the relative change ‖B − A‖ / ‖A‖ and the cosine ⟨A, B⟩ / (‖A‖ ‖B‖) of all its weights
taken as one vector, and how many of its tensors differ at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from unetinspect.errors import RunError
from unetinspect.sources.resolve import Source
from unetinspect.weights.lora import block_of


@dataclass(frozen=True)
class BlockChange:
    block: str
    tensors: int
    changed: int  # tensors with at least one different value
    relative: float  # ‖B − A‖ / ‖A‖ (inf when A is all zeros and B is not)
    cosine: float | None  # None when either side is all zeros

    @property
    def differs(self) -> bool:
        return self.changed > 0

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "tensors": self.tensors, "changed": self.changed,
                "relative_change": self.relative, "cosine": self.cosine}


def weight_changes(a: Source, b: Source) -> list[BlockChange]:
    """Per top-level block (in A's forward order), how B's weights differ from A's."""
    from unetinspect.sources.loading import build_model, read_state_dict

    for side, source in (("A", a), ("B", b)):
        if not source.has_weights:
            raise RunError(f"compare --weights: {side} ({source.spec}) has no weights",
                           "give two checkpoints (folders or files) of the same architecture")
    first = read_state_dict(a, build_model(a.config))
    second = read_state_dict(b, build_model(b.config))
    only = sorted(set(first) ^ set(second))
    if only:
        raise RunError(f"compare --weights: the checkpoints differ in structure ({len(only)} tensors in only one, "
                       f"e.g. {only[0]!r})", "compare their structure without --weights")
    sums: dict[str, list[float]] = {}  # block → [tensors, changed, ‖A‖², ‖B‖², ‖B−A‖², ⟨A,B⟩]
    for name, tensor_a in first.items():
        tensor_b = second[name]
        if tensor_a.shape != tensor_b.shape:
            raise RunError(f"compare --weights: {name} is {list(tensor_a.shape)} in A and {list(tensor_b.shape)} in B")
        x, y = tensor_a.to(torch.float32), tensor_b.to(torch.float32)
        entry = sums.setdefault(block_of(name), [0, 0, 0.0, 0.0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += 0 if torch.equal(x, y) else 1
        entry[2] += float(x.double().square().sum())
        entry[3] += float(y.double().square().sum())
        entry[4] += float((y - x).double().square().sum())
        entry[5] += float((x.double() * y.double()).sum())
    return [_block(block, *values) for block, values in sums.items()]


def _block(block: str, tensors: float, changed: float, norm_a: float, norm_b: float, diff: float,
           dot: float) -> BlockChange:
    relative = math.sqrt(diff / norm_a) if norm_a else (math.inf if diff else 0.0)
    cosine = dot / math.sqrt(norm_a * norm_b) if norm_a and norm_b else None
    return BlockChange(block, int(tensors), int(changed), relative, cosine)
