"""`ui.block_names(source)`: every block and layer of a UNet under its three names, side by side.

diffusers' module paths, the original LDM paths (A1111, ComfyUI, sgm, kohya) and the LoRA Block Weight IDs, for
the modules a summary shows down to `depth` (2: the blocks and their layers; conv_in/out and the embeddings
too), in the order they run. The names come from the table that renames original single-file checkpoints
(weights/block_names.py), so they are the names the loaders use; the modules and their order come from a traced
forward pass on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unetinspect.errors import OptionsError
from unetinspect.sources.session import Setup, SourceOrModel
from unetinspect.views.summary import summarize
from unetinspect.weights.block_names import lbw_ids, lora_ids


@dataclass(frozen=True)
class NamedModule:
    """One module under its three names (`ldm`/`lbw` None where the original has no such module)."""

    path: str
    type: str
    depth: int
    ldm: str | None
    lbw: str | None


@dataclass
class BlockNames:
    """The modules of one UNet by their three names, and the UNet's LoRA Block Weight IDs."""

    setup: Setup
    modules: list[NamedModule]
    ids: list[str]  # the extension's IDs in its order: BASE, IN00…, M00, OUT00… (26 for SD 1.x, 20 for SDXL)
    lora_ids: list[str]  # those a LoRA of the attention layers touches: BASE and the IDs holding a transformer

    def by_path(self) -> dict[str, NamedModule]:
        return {m.path: m for m in self.modules}


def block_names(source: SourceOrModel = None, *, depth: int = 2, **source_options: Any) -> BlockNames:
    """The three names of every module down to `depth` (see the module's docstring); refused, in one line, for a
    family without an original layout (the video UNets, ControlNets)."""
    summary = summarize(source, **source_options)
    naming = summary.setup.naming
    if naming is None:
        raise OptionsError(f"{summary.setup.label} has no original (LDM) layout to name its blocks by",
                           "original names exist for the image UNets (SD 1.x/2.x, SDXL and their kin)")
    modules = []
    for row in summary.rows(depth):
        name = naming.of(row.path)
        modules.append(NamedModule(row.path, row.type, row.depth, name.ldm, name.lbw))
    return BlockNames(summary.setup, modules, lbw_ids(naming.config), lora_ids(naming.config))
