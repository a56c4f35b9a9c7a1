"""The `khqrpay` entry point: assembles the command groups.

Every command's module is imported only when the command runs (or shows its own help), so
`khqrpay --help` imports no database, web or Bakong library, and a command imports only what it
runs on.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from khqrpay.cli.common import OneLineErrorsGroup


class LazyCommand(TyperCommand):
    """Stands for the command or group `target` in its parent's help: `module:function` (a
    command) or `module:app` (a `typer.Typer`, a group). The module is imported only when the
    command runs or shows its own help."""

    def __init__(self, name: str, target: str, *, short_help: str) -> None:
        super().__init__(name, short_help=short_help)
        self.target = target

    def load(self) -> TyperCommand | TyperGroup:
        module, attribute = self.target.split(":")
        loaded = getattr(importlib.import_module(module), attribute)
        if isinstance(loaded, typer.Typer):
            return typer.main.get_group(loaded)
        alone = typer.Typer(add_completion=False)
        alone.command(self.name)(loaded)
        command = typer.main.get_command(alone)
        assert isinstance(command, TyperCommand)
        return command

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        return self.load().make_context(info_name, args, parent=parent, **extra)


def _lazy(name: str, target: str, short_help: str) -> tuple[str, LazyCommand]:
    return name, LazyCommand(name, target, short_help=short_help)


# In the order `khqrpay --help` lists them; each short help is the command's own (a test checks).
LAZY_COMMANDS: dict[str, LazyCommand] = dict(
    [
        _lazy("qr", "khqrpay.cli.qr:app", "Encode, decode, verify and draw KHQR strings."),
        _lazy("db", "khqrpay.cli.db:app", "Create and upgrade the database."),
        _lazy("products", "khqrpay.cli.products:app", "Add, list and edit products."),
        _lazy("apikey", "khqrpay.cli.apikeys:app", "Make, list and revoke JSON API keys."),
        _lazy(
            "orders",
            "khqrpay.cli.orders:app",
            "Create, show and list orders; staff actions on one.",
        ),
        _lazy(
            "webhooks",
            "khqrpay.cli.webhooks:app",
            "Signed webhooks (Standard Webhooks) to other software: add, list, remove, the "
            "delivery log, replay.",
        ),
        _lazy("worker", "khqrpay.cli.worker:run", "Run the payment verifier worker."),
        _lazy("admin", "khqrpay.cli.admin:app", "Staff console accounts."),
        _lazy(
            "doctor",
            "khqrpay.cli.doctor:run",
            "Check the settings, the database, Bakong, the receiving account and the clock.",
        ),
        _lazy(
            "serve",
            "khqrpay.cli.serve:run",
            "Serve the shop, the staff console and the API (with the worker).",
        ),
        _lazy(
            "simulator",
            "khqrpay.cli.simulator:run",
            "Serve a simulated Bakong Open API, with its control API and banking page under "
            "/_sim/.",
        ),
        _lazy(
            "demo",
            "khqrpay.cli.demo:run",
            "Show the whole thing working: simulator, shop, customers, verifier, live dashboard.",
        ),
    ]
)


class CommandGroups(OneLineErrorsGroup):
    """The commands, every one loaded when it runs; refusals are one line."""

    def list_commands(self, ctx: Any) -> list[str]:  # noqa: ARG002 (click's signature)
        return list(LAZY_COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:  # noqa: ARG002
        return LAZY_COMMANDS.get(cmd_name)


app = typer.Typer(
    name="khqrpay",
    help="Automatic KHQR (Bakong) payment verification.",
    cls=CommandGroups,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def khqrpay() -> None:
    """Automatic KHQR (Bakong) payment verification."""
