"""The `khqrpay` command line: one module per command group, each thin."""

import sys

INTERRUPTED = 130  # the shell's code for a process ended by SIGINT


def entry() -> None:
    """The `khqrpay` command. Ctrl-C while the command line itself is still loading ends as it
    does once a command runs: exit 130, no traceback."""
    try:
        from khqrpay.cli.main import app
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        raise SystemExit(INTERRUPTED) from None
    app()
