"""The setup header: what was opened and how, rendered one way for every view and format.

Every result carries a `Setup` (sources/session.py); the table title, the Markdown heading line and the JSON
`setup` object all come from here, so that `summary`, `profile`, `compare` and `diagram` describe a run alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from unetinspect.families import Sizes
    from unetinspect.sources.session import Setup

SEPARATOR = " · "  # between the parts of a heading; a narrow terminal wraps the heading there


def size_text(sizes: Sizes) -> str:
    """"512×512 px (latent 64×64)" where the pixel size is known, else "latent 64×64"."""
    latent = "latent " + "×".join(map(str, sizes.latent))
    if sizes.pixels is None:
        return latent
    return "×".join(map(str, sizes.pixels)) + f" px ({latent})"


def context_text(sizes: Sizes) -> str:
    """"text 77 tokens", or what else the context is: SVD's "image embedding, 1 token" (not "text 1 tokens")."""
    count = f"{sizes.text_len} token{'s' * (sizes.text_len != 1)}"
    return f"text {count}" if sizes.context == "text" else f"{sizes.context}, {count}"


def setup_line(setup: Setup, *, device: str | None = None, sizes: bool = True) -> str:
    """One line: label · model · batch · size · text · device · dtype · weights (· notes).

    `device` replaces the bare device name where a view knows more (the GPU's name, the CPU's threads);
    `sizes=False` leaves out the batch and size where the rows are the sizes (a sweep)."""
    model = setup.model_type + (" (diffusers)" if setup.impl == "diffusers" else "")
    size = [f"batch {setup.sizes.batch}", size_text(setup.sizes)] if sizes else []
    if sizes and setup.sizes.frames is not None:
        size.insert(1, f"{setup.sizes.frames} frames")
    parts = [setup.label, model, *size, context_text(setup.sizes), device or setup.device, setup.dtype,
             setup.weights, *setup.notes]
    return SEPARATOR.join(parts)


def setup_dict(setup: Setup) -> dict[str, Any]:
    """The JSON `setup` object, the same in every command's output."""
    sizes = setup.sizes
    return {
        "label": setup.label, "kind": setup.kind, "model": setup.model_type, "impl": setup.impl,
        "device": setup.device, "dtype": setup.dtype, "batch": sizes.batch, "latent": list(sizes.latent),
        "pixels": list(sizes.pixels) if sizes.pixels else None, "text_len": sizes.text_len,
        "frames": sizes.frames, "weights": setup.weights, "weight_dtypes": list(setup.weight_dtypes), "notes": list(setup.notes),
    }
