"""How every `unetinspect` command runs, whatever it is: the Typer `app` and its top-level options (--version,
--no-color, --debug), the command group that turns any failure into one line and an exit code (Ctrl-C: 130),
the checks before a command's body (outputs against inputs, torch imported with Ctrl-C released), and the one
way out to the user (`emit`, `say`, `progress`).

Kept apart from `cli.py`, which declares WHAT the commands are (their options, help and one library call each):
a command is added or changed there without reading this machinery, and this machinery is changed here without
scrolling past a dozen commands' help texts. Nothing here names a command; `cli.py` registers them with `command()`.
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import warnings
from collections.abc import Iterator
from contextvars import ContextVar
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console
from rich.text import Text

from unetinspect import __version__, cli_signals
from unetinspect.errors import UnetInspectError

# torch warns at import when numpy is not installed (a fresh venv: torch does not depend on it); nothing here uses
# numpy, so a newcomer's first command must not open with that warning. Set before any command imports torch.
warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)

# The options that name what a command writes; every other file a command's options or arguments name is an input.
OUTPUTS = ("output", "trace")


class Commands(typer.core.TyperGroup):
    """The command group, and the one place a failure becomes what the user sees: a `UnetInspectError` from deep
    down is one line and its exit code, a bug of ours one "internal error" line (--debug: the traceback), and
    Ctrl-C at any point — importing torch, loading weights, timing, writing — exit code 130 (what shells expect
    of an interrupted program) instead of click's "Aborted!" and 1. Outputs are written whole or not at all
    (render/export), so nothing is left half-written."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except KeyboardInterrupt:
            say("interrupted", "error")
            raise typer.Exit(130) from None
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors and exits: click's own handling
        except UnetInspectError as exc:
            if State.debug:
                raise
            say(exc.one_line(), "error")
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:  # a bug of ours: still one line, with the way to see more
            if State.debug:
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            say(f"internal error: {type(exc).__name__}: {first} — rerun with --debug for the traceback and report it",
                "error")
            raise typer.Exit(1) from None


class Command(typer.core.TyperCommand):
    """Every command. Before its body runs (its options read: --help never waits for this), every file it will
    write is checked against every file it was given — a bad -o fails now, not after minutes of timing, and an
    input is never an output (`attention --image cat.png -o cat.png`) — then torch and our models are imported
    and their objects frozen: they never become garbage, yet every full collection would walk them (a summary's
    thousands of hooks and records trigger several, ~0.3 s of a cold start)."""

    imports_torch = True

    def invoke(self, ctx: typer.Context) -> Any:
        from unetinspect.render.export import check_output_path

        given = named_files(ctx.params)
        for name in OUTPUTS:
            if ctx.params.get(name) is not None:
                check_output_path(ctx.params[name], given)
        if self.imports_torch:  # torch, our models and families: what every such command's library call imports
            import unetinspect.sources.open  # noqa: F401

            _started()
        gc.freeze()
        token = GIVEN.set(tuple(given))
        try:
            return super().invoke(ctx)
        finally:
            GIVEN.reset(token)


# The files the running command was given: `emit` never writes over one of them.
GIVEN: ContextVar[tuple[str, ...]] = ContextVar("GIVEN", default=())


def named_files(params: dict[str, Any]) -> list[str]:
    """Every path-like value of a command's arguments and options, its outputs aside."""
    values = [value for name, value in params.items() if name not in OUTPUTS]
    flat = [item for value in values for item in (value if isinstance(value, (list, tuple)) else [value])]
    return [str(item) for item in flat if isinstance(item, (str, Path)) and not isinstance(item, Enum)]


app = typer.Typer(
    cls=Commands,
    name="unetinspect",
    help="See inside the Stable Diffusion UNet: shapes, parameters, FLOPs, latency and diagrams, block by block.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


class State:
    """Global switches set by the top-level options."""

    debug = False
    no_color = False
    started = False  # torch imported and Ctrl-C released, or the output being written (see _started)


def _started() -> None:
    """Torch is imported (with Ctrl-C still held, see cli_signals): from here Ctrl-C is a KeyboardInterrupt again
    (exit 130); one pressed during start-up is raised now, before any work or output. A command that never imports
    torch (weights of a safetensors file) holds it to the end: checked before writing."""
    if State.started or "torch" not in sys.modules:
        return
    State.started = True
    cli_signals.release()


@contextlib.contextmanager
def writing() -> Iterator[None]:
    """Ctrl-C held while the output is written: interrupted before (nothing written, exit 130), or written whole
    and the command ends 0 — never exit 130 with the file in place."""
    State.started = True
    cli_signals.hold()
    try:
        cli_signals.check()
        yield
    finally:
        cli_signals.release(raise_pressed=False)


def console(stderr: bool = False) -> Console:
    """A console honouring --no-color and NO_COLOR (rich reads NO_COLOR itself); piped, as wide as a file's tables
    rather than the 80 columns rich assumes off a terminal."""
    from unetinspect.render.formats import FILE_WIDTH

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or "COLUMNS" in os.environ else FILE_WIDTH
    return Console(stderr=stderr, no_color=State.no_color or None, highlight=False, width=width)


def _version(value: bool) -> None:
    if value:
        print(f"unetinspect {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colours (also set by NO_COLOR).")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
) -> None:
    """See inside the Stable Diffusion UNet."""
    State.no_color = no_color
    State.debug = debug


class HeadersCommand(Command):
    """A command that reads file headers by hand and never needs torch (`weights`: milliseconds, not seconds)."""

    imports_torch = False


def command(cls: type[Command] = Command, name: str | None = None) -> Any:
    """Register a command of the group (as `Command`: its outputs checked and torch readied before its body)."""
    return app.command(name, cls=cls)


def say(message: str, label: str | None = None, style: str = "bold red") -> None:
    """One line on stderr, `label:` styled and the message as inert text: messages quote paths, tensor names and
    config values from strangers, which must neither be read as rich markup nor reach the terminal as escapes."""
    inert = "".join(c if c.isprintable() else repr(c)[1:-1] for c in " ".join(message.split()))
    line = Text.assemble((f"{label}:", style), " ", inert) if label else Text(inert)
    console(stderr=True).print(line, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
    """Warnings in the tool's own voice: one `warning:` line, not Python's two with a source line."""
    say(str(message), "warning", "yellow")


def emit(view: Any, fmt: Enum | str | None, result: Any, output: Path | None = None) -> None:
    """Show a result through its view in the format asked for (none: the view's first, or the file format -o's
    suffix names): on stdout, or written whole to `output`, never over a file the command was given. A picture
    or a page is a format of its view too. Every command answers here."""
    from unetinspect.render import formats

    with writing():
        path = formats.emit(view, format_value(fmt), result, output=output, inputs=GIVEN.get(), console=console())
    if path is not None:
        say(f"wrote {path}")


def format_value(fmt: Enum | str | None) -> str | None:
    """The name of the format asked for: --format's choice (an Enum) or a name given as text."""
    return fmt.value if isinstance(fmt, Enum) else fmt


def progress(fmt: Enum | None, output: Path | None) -> Any:
    """A progress bar on stderr, where a person watches: not under JSON, and not when stdout is piped away."""
    from unetinspect.render.profile_view import progress_bar

    shown = format_value(fmt) != "json" and sys.stderr.isatty() and (output is not None or sys.stdout.isatty())
    return progress_bar(console(stderr=True), shown)
