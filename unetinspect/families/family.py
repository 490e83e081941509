"""The `Family` record: what the tool needs to know about one kind of model (see `unetinspect.families`).

A leaf module: the records (`unet2d`, `controlnet`, …) import it, and the registry imports them.
"""


from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unetinspect.errors import RunError

if TYPE_CHECKING:
    from torch import nn

Shapes = Mapping[str, tuple[int, ...]]
# (fragment of a class name, kind, legend text): the first fragment a module's class name contains gives its kind.
DiagramKind = tuple[str, str, str]


def _no_inputs(config: Any, floats: Callable[..., Any], batch: int, latent: tuple[int, int]) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Family:
    """A kind of model: what builds it, what its files look like, what its forward reads."""

    name: str  # the registry's key: "unet2d", "controlnet"
    kind: str  # what `weights` calls a file of it: "unet", "controlnet"
    label: str  # the kind as a part name in sentences: "UNet", "ControlNet"
    class_name: str  # diffusers' class, and the `_class_name` of its config.json
    config_class: type  # ours: `from_dict(data, origin=...)`, `from_json(path)`
    model_path: str  # "module:Class" of our model, imported on first use (the registry stays torch-free)
    layout: str  # the name of its original single-file key layout ("ldm", "ldm-controlnet")
    looks_like_original: Callable[[Iterable[str]], bool]  # tensor names → in that layout?
    infer_original_config: Callable[..., Any]  # (shapes, origin=) → config, from an original file's shapes
    original_key_map: Callable[[Shapes, Any], dict[str, str]]  # (shapes, config) → our key: the file's key
    diffusers_roots: frozenset[str]  # first parts of its diffusers keys …
    min_roots: int  # … of which a file must hold this many to be one of this family
    extra_inputs: Callable[[Any, Callable[..., Any], int, tuple[int, int]], dict[str, Any]] = _no_inputs
    # (config, floats, sizes) → all the forward's inputs, for families whose forward is unlike a UNet's (video)
    make_inputs: Callable[[Any, Callable[..., Any], Any], dict[str, Any]] | None = None
    diagram_kinds: tuple[DiagramKind, ...] = field(default=())

    @property
    def model_class(self) -> type[nn.Module]:
        module, name = self.model_path.split(":")
        return getattr(importlib.import_module(module), name)

    def diffusers_class(self) -> type[nn.Module]:
        """diffusers' own class of this family (for `--impl diffusers`); diffusers is imported only here."""
        try:
            return getattr(importlib.import_module("diffusers"), self.class_name)
        except (ImportError, AttributeError):
            raise RunError(f"--impl diffusers needs diffusers installed (with {self.class_name})",
                           "pip install diffusers") from None

    def is_diffusers_object(self, module: object) -> bool:
        """Whether `module` is diffusers' own model of this family (told by class, without importing diffusers)."""
        cls = type(module)
        return cls.__name__ == self.class_name and cls.__module__.startswith("diffusers.")

    def holds_diffusers_keys(self, roots: set[str]) -> bool:
        return len(roots & self.diffusers_roots) >= self.min_roots


