"""The built-in presets with their parameter counts: what `unetinspect presets` lists."""

from __future__ import annotations

from typing import NamedTuple


class PresetRow(NamedTuple):
    name: str
    params: int
    description: str


def preset_rows() -> list[PresetRow]:
    """Every preset, its parameters counted on the meta device (no weights: instant)."""
    from unetinspect.presets import PRESETS
    from unetinspect.sources.loading import count_parameters, load_unet

    return [PresetRow(p.name, count_parameters(load_unet(p.name, device="meta")), p.description)
            for p in PRESETS.values()]
