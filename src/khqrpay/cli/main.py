"""The `khqrpay` entry point: assembles the command groups."""

from __future__ import annotations

import typer

from khqrpay.cli import qr

app = typer.Typer(
    name="khqrpay",
    help="Automatic KHQR (Bakong) payment verification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(qr.app, name="qr")
