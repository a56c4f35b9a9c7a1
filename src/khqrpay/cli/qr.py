"""`khqrpay qr ...`: encode, decode, verify and draw KHQR strings."""

from __future__ import annotations

import typer

app = typer.Typer(help="Encode, decode, verify and draw KHQR strings.", no_args_is_help=True)
