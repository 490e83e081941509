"""Regenerate docs/names.md: every block and layer of SD 1.5 and SDXL under its three names, as the tool gives them.

    python docs/make_names_docs.py

tests/test_block_names.py fails when the page and the tool disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # this checkout's package, not an installed one

INTRO = """\
# Three names for every block: diffusers, the original LDM UNet, LoRA Block Weight IDs

Most Stable Diffusion tools never use diffusers' names. A1111, Forge, ComfyUI, sgm and kohya's scripts run the
original LDM `UNetModel`, whose numbered blocks are `input_blocks.N`, `middle_block` and `output_blocks.N`; the LoRA
Block Weight extension and the merge tools weight those blocks by ID: `IN00`–`IN11`, `M00`, `OUT00`–`OUT11` for
SD 1.x and 2.x, `IN00`–`IN08`, `M00`, `OUT00`–`OUT08` for SDXL, and `BASE` for the text encoder(s). ComfyUI's
ModelMergeBlocks uses the LDM paths themselves (`input_blocks.4`, `middle_block.1`, `output_blocks.2`).

unetinspect reads all three names off one table, the one that renames an original single-file checkpoint's keys,
so they are the names the loaders use. Every view takes `--names diffusers|ldm|lbw` (JSON keeps diffusers'
`path` and adds `ldm` and `lbw`), every `--blocks` filter takes a name in any of the three, `unetinspect names
SOURCE` prints the table below for any image UNet, and `unetinspect lora FILE` gives a LoRA's strength per ID and
the block-weight vector that keeps exactly the blocks it touches (`--lbw "1,0,…"` previews another).

Reading the tables: a diffusers block spans several numbered original blocks (`down_blocks.1` is
`input_blocks.4-6`: two resnet + transformer pairs and the downsampler); an original block holds a resnet, its
transformer if the level has attention, and at the end of a level the up/downsampler — which is why SD 1.5's
first upsampler is `output_blocks.2.1` (that level has no attention) but SDXL's is `output_blocks.2.2`. Modules
without weights in the original (`time_proj`, the activations) have no original name (–).

The tables below are made by `python docs/make_names_docs.py` (`unetinspect names sd15 -f markdown`).
"""


def page() -> str:
    import unetinspect as ui
    from unetinspect.render.block_names_view import BlockNamesView
    from unetinspect.render.formats import render

    parts = [INTRO]
    for preset, title in (("sd15", "SD 1.5 (and 2.x: the same blocks)"), ("sdxl", "SDXL base")):
        names = ui.block_names(preset)
        parts += [f"## {title}\n",
                  f"LoRA Block Weight IDs ({len(names.ids)}): `{','.join(names.ids)}`\n",
                  f"The {len(names.lora_ids)} a LoRA of the attention layers touches: "
                  f"`{','.join(names.lora_ids)}`\n",
                  str(render(BlockNamesView(), "markdown", names)).split("\n", 2)[2].strip() + "\n"]
    return "\n".join(parts)


if __name__ == "__main__":
    (DOCS / "names.md").write_text(page())
    print("wrote", DOCS / "names.md")
