"""What a weight file is, from its tensor names alone: a UNet, a ControlNet, a LoRA, an IP-Adapter, a text encoder,
a VAE — or unknown. A LoRA read as a UNet looks like a broken UNet; saying what it is comes first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from unetinspect.families import diffusers_family, original_family, registered

# Name fragments that only adapters of each kind use (LoRA: kohya, PEFT, diffusers; LyCORIS LoHa / LoKr).
LORA_PATTERN = re.compile(r"(^lora_(unet|te\d?)_)|(\.|_)lora(_down|_up|_A|_B|\.down|\.up)\.|hada_w\d_[ab]|lokr_w\d")
IP_ADAPTER_PATTERN = re.compile(r"^(image_proj\.|ip_adapter\.\d+\.to_[kv]_ip\.)")
VAE_ROOTS = {"encoder", "decoder", "quant_conv", "post_quant_conv", "first_stage_model"}
# AnimateDiff's motion modules alone (diffusers' MotionAdapter, and the original mm_sd_v15 files): every tensor under
# a block's motion_modules; a UNet with motion modules has its convolutions and attentions beside them.
MOTION_MODULE = re.compile(r"^((down|up)_blocks\.\d+\.|mid_block\.)motion_modules\.\d+")
TEXT_ENCODER_PATTERN = re.compile(r"(^|\.)(text_model|resblocks)\.|^(cond_stage_model|conditioner)\.")


@dataclass(frozen=True)
class FileKind:
    """What a file is, and the command that reads it (`{path}` is filled with the file's path)."""

    kind: str  # a family's kind ("unet", "controlnet") | "lora" | "ip-adapter" | "motion adapter" | "text encoder"
    #            | "VAE" | "unknown"
    command: str | None

    @property
    def label(self) -> str:
        """The kind as a part name: UNet, ControlNet, LoRA, IP-Adapter, text encoder, VAE, unknown."""
        labels = {family.kind: family.label for family in registered()} | {"lora": "LoRA", "ip-adapter": "IP-Adapter",
                                                                             "motion adapter": "motion adapter"}
        return labels.get(self.kind, self.kind)

    def command_for(self, path: str) -> str | None:
        return self.command.format(path=path) if self.command else None


def file_kind(names: Iterable[str]) -> FileKind:
    """The kind of a weight file, decided from its tensor names (adapters first: they name UNet modules too)."""
    names = list(names)
    if any(IP_ADAPTER_PATTERN.match(n) for n in names):  # before LoRA: FaceID adapters carry a LoRA too
        return FileKind("ip-adapter", "unetinspect summary SOURCE --ip-adapter {path}")
    if any(LORA_PATTERN.search(n) for n in names):
        return FileKind("lora", "unetinspect lora {path}")
    if names and all(MOTION_MODULE.match(n) for n in names):
        return FileKind("motion adapter", "unetinspect weights {path}")
    family = original_family(names) or diffusers_family(names)
    if family is not None:
        return FileKind(family.kind, "unetinspect summary {path}")
    roots = {n.split(".", 1)[0] for n in names}
    if roots and roots <= VAE_ROOTS and roots & {"encoder", "first_stage_model"}:
        return FileKind("VAE", None)
    if any(TEXT_ENCODER_PATTERN.search(n) for n in names):
        return FileKind("text encoder", None)
    return FileKind("unknown", None)
