"""`khqrpay orders ...`: create, show and list orders (staff and scripts, until the web console)."""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli.common import fail, open_app, print_json
from khqrpay.orders.model import LineRequest, OrderStatus
from khqrpay.services.checkout import create_order
from khqrpay.services.orders import list_orders, order_details
from khqrpay.services.schemas import CreatedOrderView, OrderSummary, OrderView

app = typer.Typer(help="Create, show and list orders.", no_args_is_help=True)


@app.command()
def create(
    line: Annotated[list[str], typer.Option(help="SKU:QTY, e.g. TEA-1:2 (repeat for more lines).")],
    phone: Annotated[str | None, typer.Option(help="The customer's Cambodian phone.")] = None,
) -> None:
    """Create a PENDING order and its KHQR code."""
    with open_app() as app:
        requests = [LineRequest.parse(text) for text in line]
        created = create_order(
            app.database,
            lines=requests,
            phone=phone,
            settings=app.settings,
            clock=app.clock,
            actor="cli",
        )
        print_json(CreatedOrderView.of(created).json_dict())


@app.command()
def show(order_id: Annotated[int, typer.Argument(help="The order's id.")]) -> None:
    """An order's status, lines, QR codes, payment evidence and audit trail."""
    with open_app() as app:
        details = order_details(app.database, order_id)
    print_json(OrderView.details(details).json_dict())


@app.command("list")
def list_command(
    status: Annotated[
        str | None, typer.Option(help="Only orders in this status (PENDING, COMPLETED, ...).")
    ] = None,
) -> None:
    """Orders, newest first."""
    wanted = None
    if status is not None:
        try:
            wanted = OrderStatus(status.strip().upper())
        except ValueError:
            fail(f"status {status!r} is not one of {', '.join(OrderStatus)}")
    with open_app() as app:
        orders = list_orders(app.database, wanted)
    print_json([OrderSummary.of(order).json_dict() for order in orders])
