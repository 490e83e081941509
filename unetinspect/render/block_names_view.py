"""The three namings of a UNet's modules as a table (`unetinspect names SOURCE`), and its LoRA Block Weight IDs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from unetinspect.render.formats import Column, View

if TYPE_CHECKING:
    from unetinspect.views.block_names import BlockNames, NamedModule


def _indented(module: NamedModule) -> str:
    return "  " * (module.depth - 1) + module.path


COLUMNS = (
    Column("path", "diffusers", _indented, value=lambda m: m.path, markdown=lambda m: f"`{m.path}`", style="cyan",
           fold=True, min_width=24),
    Column("ldm", "original (LDM)", lambda m: m.ldm or "–", value=lambda m: m.ldm or "",
           markdown=lambda m: f"`{m.ldm}`" if m.ldm else "–", fold=True),
    Column("lbw", "LBW ID", lambda m: m.lbw or "–", value=lambda m: m.lbw or "", style="bold"),
    Column("type", "type", lambda m: m.type, style="magenta", priority=1),
)


class BlockNamesView(View):
    kind = "names"
    columns = COLUMNS

    def rows(self, names: BlockNames) -> list[NamedModule]:
        return names.modules

    def totals(self, names: BlockNames) -> list[tuple[str, str]]:
        return [("LBW IDs", f"{len(names.ids)}: {','.join(names.ids)}"),
                ("a LoRA's", f"{len(names.lora_ids)} (the IDs holding a transformer, plus BASE, the text encoder): "
                             f"{','.join(names.lora_ids)}")]

    def data(self, names: BlockNames) -> dict[str, Any]:
        return {"ids": names.ids, "lora_ids": names.lora_ids,
                "modules": [{"path": m.path, "type": m.type, "depth": m.depth, "ldm": m.ldm, "lbw": m.lbw}
                            for m in names.modules]}
