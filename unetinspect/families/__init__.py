"""One record per model family: everything the rest of the tool needs to know about a kind of model.

A `Family` names its diffusers class, its config class (whose objects are sources of their own), its model class,
how its files are recognised (an original single-file layout, diffusers' key roots), its input maker with its size
axes, its diagram kinds and colours, and the add-ons it cannot take. `sources`, `loading`, `live`, `kinds`, the
graph and its palettes ask the registry instead of asking "is this a ControlNet?": adding a family is one new
record here and its model and config code.

Everything is read off `FAMILIES` when asked (`registered()`), never copied at import, so that the registry is the
one place a family is added — a test registers one by setting `FAMILIES` alone. A source asks once, when it is
opened (`sources.resolve.Source.family`, `sources.live.LiveModel.family`), and carries the answer.

The registry is torch-free (model classes are named, and imported on first use), so that resolving a source and
`--help` never wait for torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from unetinspect.errors import RunError
from unetinspect.families.controlnet import CONTROLNET
from unetinspect.families.family import ADDONS, DiagramKind, Family, FamilyConfig, Tensors
from unetinspect.families.sizes import SizeAxes, Sizes
from unetinspect.families.unet2d import UNET2D
from unetinspect.families.video import MOTION, SVD
from unetinspect.presets import load_preset_dict

__all__ = ["ADDONS", "FAMILIES", "DiagramKind", "Family", "FamilyConfig", "SizeAxes", "Sizes", "Tensors"]

# The most specific first: a ControlNet's keys hold a UNet's encoder, so it must be asked before the UNet; the
# video UNets' model classes are UNet2DConditionModel's subclasses, so they too come first.
FAMILIES: tuple[Family[Any], ...] = (CONTROLNET, SVD, MOTION, UNET2D)
DEFAULT = UNET2D  # a config.json without `_class_name` is a UNet2DConditionModel's, as diffusers reads it


def registered() -> tuple[Family[Any], ...]:
    """Every family, the most specific first."""
    return FAMILIES


def config_classes() -> tuple[type[FamilyConfig], ...]:
    """The config classes whose objects are sources (a `UNetConfig`, an `SVDConfig`, …)."""
    return tuple(f.config_class for f in FAMILIES)


def family_of(config: object) -> Family[Any]:
    """The family whose config class `config` is."""
    for family in FAMILIES:
        if isinstance(config, family.config_class):
            return family
    raise RunError(f"a {type(config).__name__} is not the config of a model this tool builds",
                   f"configs are {', '.join(f.config_class.__name__ for f in FAMILIES)}")


def is_model_config(obj: object) -> bool:
    return isinstance(obj, config_classes())


def family_named(class_name: object) -> Family[Any] | None:
    """The family of a diffusers class name (a config.json's `_class_name`); None for any other."""
    return next((f for f in FAMILIES if f.class_name == class_name), None)


def family_with_layout(layout: str) -> Family[Any] | None:
    """The family whose original single-file layout is `layout`; None for "diffusers" (keys are already ours)."""
    return next((f for f in FAMILIES if f.layout == layout), None)


def family_of_object(module: object) -> Family[Any] | None:
    """The family of a live module: our model class or diffusers' own of it; None for any other module."""
    return next((f for f in FAMILIES if f.is_model_object(module)), None)


def config_from_dict(data: dict[str, Any], *, origin: str = "config") -> FamilyConfig:
    """A diffusers config dict as the config of the family its `_class_name` names (a UNet's without one; an
    unknown class name is refused by the UNet's config, which names what is supported)."""
    class_name = data.get("_class_name") if isinstance(data, dict) else None  # not a dict: from_dict says so
    return (family_named(class_name) or DEFAULT).config_class.from_dict(data, origin=origin)


def load_preset(name: str) -> FamilyConfig:
    """A preset's config, as the config class of the family its `_class_name` names."""
    return config_from_dict(load_preset_dict(name), origin=f"preset {name}")


def diagram_kinds() -> tuple[DiagramKind, ...]:
    """Every family's own diagram kinds (with their colours), the most specific family first."""
    return tuple(kind for f in FAMILIES for kind in f.diagram_kinds)


def original_family(names: Iterable[str]) -> Family[Any] | None:
    """The family whose original single-file layout these tensor names are in (the most specific first)."""
    names = list(names)
    return next((f for f in FAMILIES if f.looks_like_original(names)), None)


def diffusers_family(names: Iterable[str]) -> Family[Any] | None:
    """The family whose diffusers keys these are, told by their first parts (the most specific first)."""
    roots = {n.split(".", 1)[0] for n in names}
    return next((f for f in FAMILIES if f.holds_diffusers_keys(roots)), None)
