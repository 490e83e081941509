"""The `Family` record: what the tool needs to know about one kind of model (see `unetinspect.families`).

A leaf module: the records (`unet2d`, `controlnet`, …) import it, and the registry imports them. The contracts a
record is made of are typed here: the config class a family reads (`FamilyConfig`), the tensors an input maker is
handed (`Tensors`) and what it makes them into (`InputMaker`).
"""


from __future__ import annotations

import importlib
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

from unetinspect.errors import RunError
from unetinspect.families.sizes import SizeAxes, Sizes

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

Shapes = Mapping[str, tuple[int, ...]]

# The config class a `from_dict`/`from_json` is called on, and so the type it returns: `typing.Self` would say it,
# but it is Python 3.11's and we support 3.10 (typing_extensions is not a dependency).
_Read = TypeVar("_Read", bound="FamilyConfig")


class FamilyConfig(Protocol):
    """What the tool reads off any family's config: how it is read and written as a config.json, and the few
    sizes that fix a forward pass's inputs and activations (the rest belongs to the family's own code)."""

    @classmethod
    def from_dict(cls: type[_Read], data: dict[str, Any], *, origin: str = ...) -> _Read: ...

    @classmethod
    def from_json(cls: type[_Read], path: str | Path) -> _Read: ...

    def to_dict(self) -> dict[str, Any]: ...

    @property
    def sample_size(self) -> int | list[int] | None: ...

    @property
    def in_channels(self) -> int: ...

    @property
    def out_channels(self) -> int: ...

    @property
    def block_out_channels(self) -> list[int]: ...

    @property
    def context_dim(self) -> int: ...

    @property
    def heads_per_block(self) -> list[int]: ...


C = TypeVar("C", bound=FamilyConfig)


class Tensors(Protocol):
    """Where and how an input maker makes its tensors: random but reproducible, on one device in one dtype (on
    the meta device shapes only)."""

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    def floats(self, *shape: int) -> torch.Tensor: ...

    def longs(self, high: int, *shape: int) -> torch.Tensor: ...


# (config, tensors, sizes) → the keyword arguments of one forward call
InputMaker = Callable[[C, Tensors, Sizes], dict[str, Any]]


class DiagramKind(NamedTuple):
    """A colour kind a family adds to diagrams: a module whose class name contains `fragment` is of `kind`, named
    `legend` in the legend and filled `light` or `dark` by theme."""

    fragment: str
    kind: str
    legend: str
    light: str
    dark: str


# The add-ons a source can be the base of (`Family.refusals` keys): a ControlNet step, a LoRA's base, the image UNet
# a motion adapter animates.
ADDONS = ("controlnet", "lora", "motion-adapter")


@dataclass(frozen=True)
class Family(Generic[C]):
    """A kind of model: what builds it, what its files look like, what its forward reads, how it is drawn."""

    name: str  # the registry's key: "unet2d", "controlnet"
    kind: str  # what `weights` calls a file of it: "unet", "controlnet"
    label: str  # the kind as a part name in sentences: "UNet", "ControlNet"
    class_name: str  # diffusers' class, and the `_class_name` of its config.json
    config_class: type[C]  # its config object: a source of its own, read from a config.json by `from_dict`
    model_path: str  # "module:Class" of our model, imported on first use (the registry stays torch-free)
    layout: str  # the name of its original single-file key layout ("ldm", "ldm-controlnet")
    looks_like_original: Callable[[Iterable[str]], bool]  # tensor names → in that layout?
    infer_original_config: Callable[[Shapes, str], C]  # (shapes, origin) → config, from an original file's shapes
    original_key_map: Callable[[Shapes, C], dict[str, str]]  # (shapes, config) → our key: the file's key
    diffusers_roots: frozenset[str]  # first parts of its diffusers keys …
    min_roots: int  # … of which a file must hold this many to be one of this family
    make_inputs: InputMaker[C]  # every input of its forward at these sizes
    axes: SizeAxes[C] = field(default_factory=SizeAxes)  # its sizes beyond an image UNet's (frames)
    diagram_kinds: tuple[DiagramKind, ...] = ()
    # add-on (ADDONS) → why a model of this family cannot be its base; an add-on not named is taken
    refusals: Mapping[str, str] = field(default_factory=dict)

    @property
    def model_class(self) -> type[nn.Module]:
        """Our model class, built from a config of this family."""
        module, name = self.model_path.split(":")
        model_class: type[nn.Module] = getattr(importlib.import_module(module), name)
        return model_class

    def diffusers_class(self) -> Any:
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

    def is_model_object(self, module: object) -> bool:
        """Whether `module` is a model of this family: ours or diffusers' own."""
        return self.is_diffusers_object(module) or isinstance(module, self.model_class)

    def config_of(self, model: object) -> C:
        """The config a model of this family carries on `.config`: ours keeps the config object it was built from;
        diffusers' own keeps its config.json's dict, read here as that file is. Anything else there (a user who
        replaced it) is refused, naming it."""
        config = getattr(model, "config", None)
        if self.is_diffusers_object(model) and isinstance(config, Mapping):
            return self.config_class.from_dict(dict(config), origin=f"{type(model).__name__}.config")
        if isinstance(config, self.config_class):
            return config
        raise RunError(f"a {type(model).__name__}'s .config is {type(config).__name__} {reprlib.repr(config)}, "
                       f"not its {self.config_class.__name__}", "leave .config as the model was built with")

    def holds_diffusers_keys(self, roots: set[str]) -> bool:
        return len(roots & self.diffusers_roots) >= self.min_roots
