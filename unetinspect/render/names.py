"""`--names`: a view's module paths as diffusers writes them, as the original LDM UNet does, or as LoRA Block
Weight IDs. Every view that shows module paths asks here, so a table, its CSV, its Markdown and the diagram's
labels name a block alike; JSON keeps diffusers' `path` (scripts key on it) and adds `ldm` and `lbw` beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from unetinspect.weights.block_names import NAMINGS, check_naming

if TYPE_CHECKING:
    from unetinspect.sources.session import Setup

__all__ = ["NAMINGS", "namer", "names_data"]


def namer(setup: Setup | None, naming: str) -> Callable[[str], str]:
    """Path → the name shown under `--names naming`; refuses ldm/lbw for a model without an original layout."""
    check_naming(naming, setup.naming if setup is not None else None,
                 setup.label if setup is not None else "this model")
    if naming == "diffusers" or setup is None or setup.naming is None:
        return lambda path: path
    names = setup.naming
    return lambda path: names.shown(path, naming)


def names_data(setup: Setup | None, path: str) -> dict[str, Any]:
    """The JSON fields `ldm` and `lbw` of a module (null where it has none); none for a model without them."""
    if setup is None or setup.naming is None:
        return {}
    name = setup.naming.of(path)
    return {"ldm": name.ldm, "lbw": name.lbw}
