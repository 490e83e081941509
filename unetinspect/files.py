"""Opening the files a user names, safely: only regular files, and never more of them than we mean to read.

A FIFO blocks the reader until someone writes to it, and a symlink to `/dev/zero` or `/dev/urandom` never ends:
both are refused by their kind before a byte is read. The check is made on the opened descriptor (opened
non-blocking, so that opening a FIFO does not itself block), so a path swapped between a check and the open
cannot slip through.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from unetinspect.errors import UnetInspectError

# What a file that is not a regular file is, in words, by the S_IS* test that recognises it.
_KINDS = (
    (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def kind_of(mode: int) -> str:
    """A file's kind in words ("a regular file", "a FIFO (named pipe)", ...), from its `st_mode`."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


def not_regular(path: Path, mode: int, error: type[UnetInspectError]) -> UnetInspectError:
    """The error for a path that exists but is not a regular file."""
    return error(f"{path} is {kind_of(mode)}, not a regular file; it was not read",
                 "give the file itself (a FIFO or device never ends, or blocks)")


def check_regular(path: str | Path, error: type[UnetInspectError]) -> os.stat_result:
    """The file's status, after refusing anything but a regular file (symlinks are followed)."""
    path = Path(path)
    try:
        status = path.stat()
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(status.st_mode):
        raise not_regular(path, status.st_mode, error)
    return status


def open_regular(path: str | Path, error: type[UnetInspectError]) -> int:
    """A read-only descriptor of `path`, which must be a regular file (checked on the descriptor itself)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular(path, mode, error)
    return fd


def read_capped(path: str | Path, limit: int, error: type[UnetInspectError], what: str) -> bytes:
    """The whole of a small regular file, refused beyond `limit` bytes (read: limit + 1, never more)."""
    fd = open_regular(path, error)
    try:
        with os.fdopen(fd, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path} is over {limit:,} bytes, too large for {what}", f"give the {what} itself")
    return data
