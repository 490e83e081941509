"""Ctrl-C held back while the command line cannot be interrupted safely: start-up, and writing its output.

A KeyboardInterrupt raised inside torch's import (its C++ start-up calls back into Python) aborts the process
(SIGABRT) or is lost, and one raised among the imports before the command starts leaves a traceback. So the
process starts with Ctrl-C *held*: the signal is remembered, not raised, until torch is imported and the command's
work begins (`release`: one pressed meanwhile is raised then, before anything is written — exit 130). Writing the
output holds it again: the file is written whole and the command ends with 0, or it was interrupted before and
nothing is written; never exit 130 with the output in place.

Only the command line holds signals (from its main thread): the library never touches a process's handlers.
Torch-free; imported first by `python -m unetinspect` and the `unetinspect` script.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class _Held:
    on = False
    pressed = False
    before: object = signal.default_int_handler  # the handler held over, put back by release


def _remember(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001  (a signal handler's signature)
    _Held.pressed = True


def hold() -> None:
    """From now on a Ctrl-C is remembered, not raised (a no-op off the main thread, where no handler can be set)."""
    if threading.current_thread() is threading.main_thread() and not _Held.on:
        _Held.before = signal.signal(signal.SIGINT, _remember)
        _Held.on = True


def release(*, raise_pressed: bool = True) -> None:
    """Ctrl-C does what it did before `hold` (Python's KeyboardInterrupt); one pressed while held is raised now
    (`raise_pressed`), or, once the work is done and written, dropped."""
    if not _Held.on:
        return
    signal.signal(signal.SIGINT, _Held.before)  # type: ignore[arg-type]
    _Held.on = False
    pressed, _Held.pressed = _Held.pressed, False
    if pressed and raise_pressed:
        raise KeyboardInterrupt


def check() -> None:
    """Raise a Ctrl-C pressed while held, and go on holding (before writing: nothing is written after one)."""
    if _Held.pressed:
        _Held.pressed = False
        raise KeyboardInterrupt
