"""The one place that may unpickle: pickle checkpoints (.ckpt, .pt, .pth, .bin), only when the user allowed it.

Unpickling a stranger's file can run any code, so nothing is opened without `--allow-pickle`, and even then only
PyTorch's weights-only unpickler reads it (tensors and plain containers; no imports, so no code runs). A file it
refuses — an old or malformed pickle, one that asks to import something — is one plain sentence, not torch's
multi-line advice with terminal escape codes.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from unetinspect.errors import WeightsError
from unetinspect.files import check_regular

if TYPE_CHECKING:
    import torch

NOT_READABLE_HINT = "only weights-only PyTorch checkpoints are read; convert it to .safetensors"


def refuse_pickle(path: Path, allow_pickle: bool) -> None:
    """Stop before a pickle is opened unless the user allowed it: unpickling a stranger's file can run code."""
    if not allow_pickle:
        raise WeightsError(
            f"{path} is a pickle file, which can run arbitrary code when opened; it was not read",
            "convert it to .safetensors, or pass --allow-pickle if you trust it (read with weights_only=True)",
        )


def read_pickle(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a pickle checkpoint the user allowed, read weights-only (memory-mapped when it is a zip
    archive, as `torch.save` has written them since PyTorch 1.6; read whole when it is the legacy format)."""
    import torch

    check_regular(path, WeightsError)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols before it refuses the file
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # torch raises many kinds for a bad or hostile pickle
        raise WeightsError(f"{path} is not a readable checkpoint: {_why(exc)}", NOT_READABLE_HINT) from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise WeightsError(f"{path} is not a readable checkpoint: it holds a {type(data).__name__}, not a state dict",
                           NOT_READABLE_HINT)
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def read_pickle_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in read_pickle(path).items()}


def _why(exc: Exception) -> str:
    """torch's reason in a few plain words (its messages run to paragraphs of advice)."""
    text = str(exc)
    imported = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
    if imported:
        return f"it asks to import {imported[1]}, which weights-only loading refuses (no code from it was run)"
    if isinstance(exc, EOFError) or "EOF" in text:
        return "it ends early (truncated or empty)"
    return "weights-only loading cannot read it (an unknown, old or corrupt format)"
