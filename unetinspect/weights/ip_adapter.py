"""IP-Adapter files: an image projection and, for every cross-attention of the UNet, two extra projections.

    image_proj.*                 CLIP image embedding → T image tokens of the text's width C
                                 (IP-Adapter: proj + norm; Plus: a Resampler with `latents`; FaceID: proj.0/proj.2)
    ip_adapter.N.to_k_ip.weight  keys and values of those T tokens for one cross-attention (I × C each)
    ip_adapter.N.to_v_ip.weight

N numbers the UNet's attention processors in diffusers' order — down blocks, then up blocks, then the mid block,
self-attention (even N) and cross-attention (odd N) alternately — so the k-th cross-attention's weights are N = 2k+1.
Each cross-attention then attends to the image tokens as well as the text and adds the two results.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from unetinspect.errors import WeightsError

ENTRY = re.compile(r"^ip_adapter\.(\d+)\.to_([kv])_ip\.weight$")
# diffusers registers the UNet's children as down_blocks, up_blocks, mid_block: its processors come in that order.
PROCESSOR_ORDER = ("down_blocks", "up_blocks", "mid_block")
# The image_proj tensors whose shapes we read, and their rank: the Resampler's queries (1 × T × C), the projections'
# Linear weights (out × in).
READ_RANKS = {"image_proj.latents": 3, "image_proj.proj.weight": 2, "image_proj.proj.2.weight": 2}


@dataclass(frozen=True)
class IPAdapterEntry:
    """The two projections of one cross-attention: image tokens (C wide) → keys and values (I wide)."""

    number: int
    k_shape: tuple[int, int]
    v_shape: tuple[int, int]

    @property
    def params(self) -> int:
        return math.prod(self.k_shape) + math.prod(self.v_shape)


@dataclass(frozen=True)
class IPAdapterFile:
    kind: str  # "IP-Adapter", "IP-Adapter Plus (Resampler)", "IP-Adapter FaceID"
    image_proj_params: int
    image_proj_linear_params: int  # of its Linear weights applied once to one embedding (None-like 0 for Resampler)
    tokens: int
    width: int  # C: the text width the tokens share with the cross-attentions
    entries: tuple[IPAdapterEntry, ...]
    other_params: int  # tensors of neither part (FaceID's LoRA, ...)

    @property
    def params(self) -> int:
        return self.image_proj_params + sum(e.params for e in self.entries) + self.other_params


def parse_ip_adapter(shapes: Mapping[str, tuple[int, ...]], origin: str = "file") -> IPAdapterFile:
    """The parts of an IP-Adapter file from its tensor shapes; a file without `to_k_ip` weights is refused."""
    pairs: dict[int, dict[str, tuple[int, ...]]] = {}
    image_proj = {k: s for k, s in shapes.items() if k.startswith("image_proj.")}
    for key, shape in shapes.items():
        if m := ENTRY.match(key):
            pairs.setdefault(int(m[1]), {})[m[2]] = tuple(shape)
    incomplete = [n for n, pair in pairs.items() if set(pair) != {"k", "v"} or any(len(s) != 2 for s in pair.values())]
    if not pairs or incomplete:
        what = f"ip_adapter.{incomplete[0]} lacks to_k_ip or to_v_ip" if incomplete else "no ip_adapter.N.to_k_ip"
        raise WeightsError(f"{origin}: not an IP-Adapter file ({what})",
                           "IP-Adapter files hold image_proj.* and ip_adapter.N.to_k_ip/to_v_ip.weight")
    entries = tuple(IPAdapterEntry(n, _matrix(pairs[n]["k"]), _matrix(pairs[n]["v"])) for n in sorted(pairs))
    _check_shapes(image_proj, entries, origin)
    width = entries[0].k_shape[1]
    counted = set(image_proj) | {k for k in shapes if ENTRY.match(k)}
    return IPAdapterFile(
        kind=_kind(image_proj), image_proj_params=sum(math.prod(s) for s in image_proj.values()),
        image_proj_linear_params=(0 if "image_proj.latents" in image_proj else
                                  sum(math.prod(s) for k, s in image_proj.items() if len(s) == 2)),
        tokens=_tokens(image_proj, width), width=width, entries=entries,
        other_params=sum(math.prod(s) for k, s in shapes.items() if k not in counted),
    )


def _check_shapes(image_proj: Mapping[str, tuple[int, ...]], entries: tuple[IPAdapterEntry, ...], origin: str) -> None:
    """The shapes the parser reads, as an IP-Adapter has them: a header may say anything (a 1-D `latents` has no
    token count, and a projection 0 wide would divide the token count by zero)."""
    for key, rank in READ_RANKS.items():
        if key in image_proj and len(image_proj[key]) != rank:
            raise WeightsError(f"{origin}: {key} has shape {list(image_proj[key])}, not {rank}-D",
                               "IP-Adapter files hold image_proj.* and ip_adapter.N.to_k_ip/to_v_ip.weight")
    for entry in entries:
        if 0 in entry.k_shape + entry.v_shape:
            raise WeightsError(f"{origin}: ip_adapter.{entry.number}.to_k_ip/to_v_ip is {list(entry.k_shape)} and "
                               f"{list(entry.v_shape)}, an empty projection", "the file is damaged or not an IP-Adapter")


def _matrix(shape: tuple[int, ...]) -> tuple[int, int]:
    """A projection's (out, in) shape; parse_ip_adapter has refused every entry that is not 2-D."""
    rows, cols = shape
    return rows, cols


def _kind(image_proj: Mapping[str, tuple[int, ...]]) -> str:
    if "image_proj.latents" in image_proj:
        return "IP-Adapter Plus (Resampler)"
    if "image_proj.proj.0.weight" in image_proj:
        return "IP-Adapter FaceID"
    return "IP-Adapter"


def _tokens(image_proj: Mapping[str, tuple[int, ...]], width: int) -> int:
    """Image tokens T: the Resampler's latent queries, or the projection's output ÷ C (T × C values)."""
    if "image_proj.latents" in image_proj:
        return image_proj["image_proj.latents"][-2]
    for key in ("image_proj.proj.weight", "image_proj.proj.2.weight"):
        if key in image_proj and image_proj[key][0] % width == 0:
            return image_proj[key][0] // width
    return 4  # the original IP-Adapter's count, where the projection does not show it


def assign_entries(file: IPAdapterFile, attention_paths: list[str], origin: str = "file") -> dict[str, IPAdapterEntry]:
    """Cross-attention path (`….attn2`, given in forward order) → its entry, in diffusers' processor order."""
    def group(path: str) -> int:
        head = path.split(".", 1)[0]
        return PROCESSOR_ORDER.index(head) if head in PROCESSOR_ORDER else len(PROCESSOR_ORDER)

    ordered = sorted(attention_paths, key=group)  # stable: forward order inside each group
    if len(ordered) != len(file.entries):
        raise WeightsError(f"{origin}: {len(file.entries)} cross-attention entries, but this UNet has {len(ordered)} "
                           "cross-attentions", "the IP-Adapter is for another base model (SD 1.5: 16, SDXL: 70)")
    return dict(zip(ordered, file.entries))
