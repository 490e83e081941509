"""Errors a user can cause, each a one-line message and an exit code.

They are raised deep down (config validation, weight loading, rendering) and turned into one line on stderr in
`cli_runtime.py` only (the command group), so the library stays usable from Python with ordinary exceptions.
"""

from __future__ import annotations


class UnetInspectError(Exception):
    """Base of every error the CLI reports as one line; `exit_code` is what the process returns."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message, with the hint after it, on a single line."""
        text = f"{self.message} — {self.hint}" if self.hint else self.message
        return " ".join(text.split())


class SourceError(UnetInspectError):
    """The SOURCE could not be found or recognised (missing path, folder without config, unknown preset)."""


class ConfigError(UnetInspectError):
    """A config is malformed or names a value our UNet does not build."""


class UnsupportedConfigError(ConfigError):
    """A valid diffusers config that uses a feature we do not implement yet."""

    def __init__(self, field: str, value: object, hint: str | None = None) -> None:
        super().__init__(f"not supported yet: {field}={value!r}", hint)
        self.field = field


class WeightsError(UnetInspectError):
    """A weight file is unreadable, unsafe, or does not fit the model (missing/unexpected keys, wrong shapes)."""


class RunError(UnetInspectError):
    """Running the model failed (out of memory, device unavailable)."""


class InputError(UnetInspectError, ValueError):
    """An input of the model's forward does not fit its config (a ValueError too, as diffusers raises)."""


class OutputError(UnetInspectError):
    """An output file cannot be written where it was asked for."""


class OptionsError(UnetInspectError):
    """Options that cannot go together, or a value no option takes: a usage error, exit code 2 as Typer's own."""

    exit_code = 2


class ImageError(UnetInspectError):
    """A picture to draw on (`--image`) is missing or of a kind not read (read: PNG, JPEG and WebP, within size caps)."""


class ConfigWarning(UserWarning):
    """Something in a config we keep but do not use (unknown fields); the CLI prints it as one `warning:` line."""


class LongRunWarning(UserWarning):
    """A run estimated to take long (but allowed): said before it starts, so that a wait is never silent; the CLI
    prints it as one `warning:` line."""


class PromptWarning(UserWarning):
    """A prompt the tokenizer cut to its length (as the pipeline does): said as one `warning:` line, and in the
    result's notes."""
