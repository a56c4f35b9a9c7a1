"""The `khqrpay` entry point: assembles the command groups.

Commands import what they run on when they run, so `khqrpay --help` and the database commands
start in a fraction of a second; `demo`, `serve` and `simulator` are even loaded only when they
run, because their modules import the web stack (FastAPI, uvicorn) or the simulator.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperCommand

from khqrpay.cli import (
    admin,
    apikeys,
    db,
    doctor,
    order_actions,
    orders,
    products,
    qr,
    webhooks,
    worker,
)
from khqrpay.cli.common import OneLineErrorsGroup


class LazyCommand(TyperCommand):
    """Stands for the command `target` (`module:function`) in its group's help; the module is
    imported only when the command runs or shows its own help."""

    def __init__(self, name: str, target: str, *, short_help: str) -> None:
        super().__init__(name, short_help=short_help)
        self.target = target

    def load(self) -> TyperCommand:
        module, function = self.target.split(":")
        alone = typer.Typer(add_completion=False)
        alone.command(self.name)(getattr(importlib.import_module(module), function))
        command = typer.main.get_command(alone)
        assert isinstance(command, TyperCommand)
        return command

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        return self.load().make_context(info_name, args, parent=parent, **extra)


LAZY_COMMANDS: dict[str, LazyCommand] = {
    "serve": LazyCommand(
        "serve",
        "khqrpay.cli.serve:run",
        short_help="Serve the shop, the staff console and the API (with the worker).",
    ),
    "simulator": LazyCommand(
        "simulator",
        "khqrpay.cli.simulator:run",
        short_help="Serve a simulated Bakong Open API for development and the demo.",
    ),
    "demo": LazyCommand(
        "demo",
        "khqrpay.cli.demo:run",
        short_help="Show the whole thing working: simulator, shop, customers, verifier, live "
        "dashboard.",
    ),
}


class CommandGroups(OneLineErrorsGroup):
    """The command groups, with the lazily loaded commands after them; refusals are one line."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return LAZY_COMMANDS.get(cmd_name) or super().get_command(ctx, cmd_name)


app = typer.Typer(
    name="khqrpay",
    help="Automatic KHQR (Bakong) payment verification.",
    cls=CommandGroups,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(qr.app, name="qr")
app.add_typer(db.app, name="db")
app.add_typer(products.app, name="products")
app.add_typer(apikeys.app, name="apikey")
order_actions.register(orders.app)
app.add_typer(orders.app, name="orders")
app.add_typer(webhooks.app, name="webhooks")
app.command("worker")(worker.run)
app.add_typer(admin.app, name="admin")
app.command("doctor")(doctor.run)
