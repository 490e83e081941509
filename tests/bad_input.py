"""What every bad-input case asserts, in one place: exit code 1, one `error:` line naming the problem, no traceback,
no "internal error", nothing on stdout, and no file created, changed or removed where the test made its files.

Not a test module: the tests/test_bad_*.py files (one per layer: sources, config values, safetensors, sharded
folders, outputs, CLI options, forward inputs, pictures) import it. With UNETINSPECT_BAD_INPUT_LOG=FILE each checked case
appends its name and seconds to FILE, which is how the battery's count and worst time are measured (the tests
themselves never assert on wall time: a shared CI machine can be ten times slower than usual).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

OUTPUT = "out.json"


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `folder` (not following links) with its kind, size and modification time."""
    entries = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            status = os.lstat(Path(root, name))
            entries[str(Path(root, name).relative_to(folder))] = (status.st_mode, status.st_size, status.st_mtime_ns)
    return entries


def assert_one_line_failure(result, output_dir: Path | None = None, exit_code: int = 1) -> str:
    """Exit code 1, a single `error:` line on stderr, nothing on stdout, no traceback, no output file left."""
    assert result.exit_code == exit_code, (result.exit_code, result.stdout, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    assert "Traceback" not in result.output and "internal error" not in message, message
    assert result.stdout == ""
    if output_dir is not None:
        assert not any(p.name.startswith((OUTPUT, f".{OUTPUT}")) for p in output_dir.iterdir())
    return message


@contextmanager
def untouched(folder: Path, case: str = "") -> Iterator[None]:
    """Nothing under `folder` may be created, changed or removed inside the block; its time is logged."""
    before = snapshot(folder)
    start = time.perf_counter()
    yield
    _log(case, time.perf_counter() - start)
    assert snapshot(folder) == before


def refused(invoke, folder: Path, *args, words: str = "", exit_code: int = 1) -> str:
    """Run the CLI with `args` and check the refusal: one line containing `words`, `folder` left as it was."""
    with untouched(folder, " ".join(str(a) for a in args)[:200]):
        message = assert_one_line_failure(invoke(*args), exit_code=exit_code)
    assert words in message, message
    return message


def _log(case: str, seconds: float) -> None:
    log = os.environ.get("UNETINSPECT_BAD_INPUT_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"{seconds:.3f}\t{case}\n")
