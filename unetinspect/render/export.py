"""Writing results to files: JSON, CSV and Markdown text, written whole or not at all.

An output path is never a directory, never one of the command's inputs, and a half-written file is never left
behind: content goes to a temporary file beside the target and is renamed over it only when complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from unetinspect.errors import OutputError


def check_output_path(path: Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse an output path that is a directory, an input of the command, or in a missing folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OutputError(f"output {path} is a directory", "give a file name, e.g. -o unet.svg")
    resolved = path.resolve()
    for source in inputs:
        source_path = Path(source).expanduser()
        if source_path.exists() and (source_path.resolve() == resolved
                                     or (source_path.is_dir() and source_path.resolve() in resolved.parents
                                         and resolved.suffix in (".safetensors", ".json"))):
            raise OutputError(f"output {path} would overwrite an input of this command", "choose another -o path")
    if not path.parent.exists():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    return path


def write_output(path: Path, content: str | bytes, inputs: Iterable[str | Path] = ()) -> Path:
    """Write `content` to `path` atomically, after `check_output_path`."""
    path = check_output_path(path, inputs)
    data = content.encode("utf-8") if isinstance(content, str) else content
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

