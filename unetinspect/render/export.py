"""Writing results to files: JSON, CSV and Markdown text, written whole or not at all.

An output path is never a directory, never one of the command's inputs (by any name: a symbolic or hard link),
and a half-written file is never left behind: content goes to a temporary file beside the target and is renamed
over it only when complete. A device or FIFO the user names (/dev/stdout, /dev/null) is written through, never
replaced by a regular file.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterable
from pathlib import Path

from unetinspect.errors import OutputError
from unetinspect.files import kind_of

# Folders of the kernel's own files: nothing is created there, and what exists is written through or refused.
SYSTEM_FOLDERS = (Path("/dev"), Path("/proc"), Path("/sys"))


def check_output_path(path: Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse an output path that is a directory, an input of the command, a device that is not a stream, or
    in a missing folder; every way the file system can say no is an `OutputError`, never a crash."""
    try:
        return _check_output_path(Path(path).expanduser(), inputs)
    except OSError as exc:  # a name too long, a loop of links, a folder we may not look into
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_output_path(path: Path, inputs: Iterable[str | Path]) -> Path:
    if path.is_dir():
        raise OutputError(f"output {path} is a directory", "give a file name, e.g. -o unet.svg")
    resolved = path.resolve()
    for source in inputs:
        source_path = Path(source).expanduser()
        if _names_a_file(source_path) and (_same_file(source_path, path)
                                     or (source_path.is_dir() and source_path.resolve() in resolved.parents
                                         and resolved.suffix in (".safetensors", ".json"))):
            raise OutputError(f"output {path} would overwrite an input of this command", "choose another -o path")
    if path.exists():
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            raise OutputError(f"output {path} is {kind_of(mode)}, which is not written to",
                              "give a regular file, or a stream such as /dev/stdout")
        return path
    if _in_system_folder(path):
        raise OutputError(f"cannot write {path}: no new files are made in {path.parent}", "choose another -o path")
    if not path.parent.exists():
        raise OutputError(f"cannot write {path}: folder {path.parent} does not exist")
    if not path.parent.is_dir():
        raise OutputError(f"cannot write {path}: {path.parent} is a file, not a folder")
    return path


def _names_a_file(value: Path) -> bool:
    """Whether an argument's value names something on disk: a prompt of 10,000 characters is text, not a path the
    system would even look up (its name is too long), and never an input to protect."""
    try:
        return value.exists()
    except OSError:
        return False


def _same_file(source: Path, output: Path) -> bool:
    """The same file by its real path (through symbolic links) or by its inode (a hard link)."""
    return source.resolve() == output.resolve() or (output.exists() and os.path.samefile(source, output))


def write_output(path: Path, content: str | bytes, inputs: Iterable[str | Path] = (), *, replace: bool = True) -> Path:
    """Write `content` to `path` whole or not at all, after `check_output_path`.

    A regular file is written beside the target and renamed over it when complete (`replace=False`: only when
    no file of that name exists, for files the user did not name). A stream the user named — /dev/stdout,
    /dev/null, a FIFO someone reads — is written through, never replaced by a regular file.
    """
    path = check_output_path(path, inputs)
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        if path.exists() and (not path.is_file() or _in_system_folder(path)):
            _write_through(path, data)
        else:
            _write_atomically(path.resolve(), data, replace)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {_REASONS.get(exc.errno or 0) or exc.strerror or exc}") from None
    return path


# What an errno means for an output, where the system's words would puzzle.
_REASONS = {errno.EEXIST: "a file of that name exists, and only the file named with -o is replaced",
            errno.ENXIO: "it is a FIFO that no program is reading"}


def _write_through(path: Path, data: bytes) -> None:
    """Into a stream that exists: no file is created or replaced, and a FIFO without a reader is an error
    (ENXIO, from the non-blocking open) rather than a wait forever."""
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        os.set_blocking(fd, True)  # a reader that is slower than us makes us wait, as a shell pipe would
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _write_atomically(path: Path, data: bytes, replace: bool) -> None:
    # The temporary name is kept short, so that a target name near the file system's limit still fits.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
            f.write(data)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails (EEXIST) rather than replace a file that appeared meanwhile
    finally:
        Path(tmp).unlink(missing_ok=True)


def _in_system_folder(path: Path) -> bool:
    absolute = Path(os.path.abspath(path))
    return any(folder == absolute.parent or folder in absolute.parents for folder in SYSTEM_FOLDERS)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

