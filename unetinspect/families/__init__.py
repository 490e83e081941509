"""One record per model family: everything the rest of the tool needs to know about a kind of model.

A `Family` names its diffusers class, its config class, its model class, how its files are recognised (an original
single-file layout, diffusers' key roots), the inputs its forward needs beyond a UNet's, and its diagram kinds.
`sources`, `loading`, `live`, `kinds` and the graph walk `FAMILIES` instead of asking "is this a ControlNet?":
adding a family is one new record here and its model code.

The registry is torch-free (model classes are named, and imported on first use), so that resolving a source and
`--help` never wait for torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from unetinspect.errors import RunError
from unetinspect.families.controlnet import CONTROLNET
from unetinspect.families.family import Family
from unetinspect.families.unet2d import UNET2D
from unetinspect.families.video import MOTION, SVD

# The most specific first: a ControlNet's keys hold a UNet's encoder, so it must be asked before the UNet; the
# video UNets' model classes are UNet2DConditionModel's subclasses, so they too come first.
FAMILIES: tuple[Family, ...] = (CONTROLNET, SVD, MOTION, UNET2D)
DEFAULT = FAMILIES[-1]  # a config.json without `_class_name` is a UNet2DConditionModel's, as diffusers reads it


def family_of(config: object) -> Family:
    """The family whose config class `config` is."""
    for family in FAMILIES:
        if isinstance(config, family.config_class):
            return family
    raise RunError(f"a {type(config).__name__} is not the config of a model this tool builds",
                   f"configs are {', '.join(f.config_class.__name__ for f in FAMILIES)}")


def is_model_config(obj: object) -> bool:
    return any(isinstance(obj, f.config_class) for f in FAMILIES)


def family_named(class_name: object) -> Family | None:
    """The family of a diffusers class name (a config.json's `_class_name`); None for any other."""
    return next((f for f in FAMILIES if f.class_name == class_name), None)


def family_with_layout(layout: str) -> Family | None:
    """The family whose original single-file layout is `layout`; None for "diffusers" (keys are already ours)."""
    return next((f for f in FAMILIES if f.layout == layout), None)


def family_of_object(module: object) -> Family | None:
    """The family of a live module: our model class or diffusers' own of it; None for any other module."""
    for family in FAMILIES:
        if family.is_diffusers_object(module) or isinstance(module, family.model_class):
            return family
    return None


def config_from_dict(data: dict[str, Any], *, origin: str = "config") -> Any:
    """A diffusers config dict as the config of the family its `_class_name` names (a UNet's without one; an
    unknown class name is refused by the UNet's config, which names what is supported)."""
    class_name = data.get("_class_name") if isinstance(data, dict) else None  # not a dict: from_dict says so
    return (family_named(class_name) or DEFAULT).config_class.from_dict(data, origin=origin)


def original_family(names: Iterable[str]) -> Family | None:
    """The family whose original single-file layout these tensor names are in (the most specific first)."""
    names = list(names)
    return next((f for f in FAMILIES if f.looks_like_original(names)), None)


def diffusers_family(names: Iterable[str]) -> Family | None:
    """The family whose diffusers keys these are, told by their first parts (the most specific first)."""
    roots = {n.split(".", 1)[0] for n in names}
    return next((f for f in FAMILIES if f.holds_diffusers_keys(roots)), None)
