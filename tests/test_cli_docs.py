"""docs/cli.md documents every command and option the CLI has, and every command's help has an example."""

from __future__ import annotations

from pathlib import Path

import typer

from unetinspect.cli import app

CLI_MD = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def _commands():
    group = typer.main.get_command(app)
    return group, group.commands


def test_every_option_of_every_command_is_in_cli_md():
    text = CLI_MD.read_text()
    group, commands = _commands()
    missing = []
    for name, command in commands.items():
        section = text.split(f"## `unetinspect {name}`", 1)
        if len(section) < 2:
            missing.append(f"section for {name}")
            continue
        body = section[1].split("\n## ", 1)[0]
        for param in command.params:
            for option in param.opts:
                if option.startswith("--") and option not in body:
                    missing.append(f"{name} {option}")
    for param in group.params:
        for option in param.opts:
            if option.startswith("--") and option not in text:
                missing.append(option)
    assert not missing, f"not in docs/cli.md (run python docs/make_cli_docs.py): {missing}"


def test_every_command_help_has_an_example():
    _, commands = _commands()
    for name, command in commands.items():
        assert "unetinspect " + name in (command.help or ""), f"{name} --help has no example"
