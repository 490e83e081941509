"""`python -m unetinspect` and the `unetinspect` script: Ctrl-C is held before anything else is imported (see
cli_signals), so an interrupt during start-up is exit 130, never a traceback from an import or torch's abort."""

from unetinspect import cli_signals


def main() -> None:
    cli_signals.hold()
    from unetinspect.cli import main as run_cli  # after the hold: an interrupted import is a traceback or an abort

    run_cli()


if __name__ == "__main__":
    main()
