"""The `khqrpay` entry point: assembles the command groups."""

from __future__ import annotations

import typer

from khqrpay.cli import (
    admin,
    apikeys,
    db,
    demo,
    doctor,
    order_actions,
    orders,
    products,
    qr,
    serve,
    simulator,
    worker,
)
from khqrpay.cli.common import OneLineErrorsGroup

app = typer.Typer(
    name="khqrpay",
    help="Automatic KHQR (Bakong) payment verification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=OneLineErrorsGroup,
)
app.add_typer(qr.app, name="qr")
app.command("simulator")(simulator.run)
app.add_typer(db.app, name="db")
app.add_typer(products.app, name="products")
app.add_typer(apikeys.app, name="apikey")
order_actions.register(orders.app)
app.add_typer(orders.app, name="orders")
app.command("worker")(worker.run)
app.command("serve")(serve.run)
app.add_typer(admin.app, name="admin")
app.command("demo")(demo.run)
app.command("doctor")(doctor.run)
