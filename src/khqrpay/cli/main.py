"""The `khqrpay` entry point: assembles the command groups."""

from __future__ import annotations

import typer

from khqrpay.cli import (
    db,
    demo,
    order_actions,
    orders,
    products,
    qr,
    serve,
    simulator,
    webhooks,
    worker,
)

app = typer.Typer(
    name="khqrpay",
    help="Automatic KHQR (Bakong) payment verification.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(qr.app, name="qr")
app.command("simulator")(simulator.run)
app.add_typer(db.app, name="db")
app.add_typer(products.app, name="products")
order_actions.register(orders.app)
app.add_typer(orders.app, name="orders")
app.add_typer(webhooks.app, name="webhooks")
app.command("worker")(worker.run)
app.command("serve")(serve.run)
app.command("demo")(demo.run)
