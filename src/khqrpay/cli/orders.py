"""`khqrpay orders ...`: create, show and list orders; cancel one, resolve its review, clear its
refund flag (staff and scripts, until the web console).

Each command imports the service it calls and the view it prints when it runs: `orders show`
starts without the checkout, the staff actions or the other views.
"""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli import order_actions
from khqrpay.cli.common import OrderId, Reason, Staff, fail, open_app, print_json, staff_actor
from khqrpay.orders.model import LineRequest, OrderStatus, StaffAction

app = typer.Typer(help="Create, show and list orders; staff actions on one.", no_args_is_help=True)


@app.command()
def create(
    line: Annotated[list[str], typer.Option(help="SKU:QTY, e.g. TEA-1:2 (repeat for more lines).")],
    phone: Annotated[str | None, typer.Option(help="The customer's Cambodian phone.")] = None,
) -> None:
    """Create a PENDING order and its KHQR code."""
    from khqrpay.services.checkout import create_order
    from khqrpay.services.schemas import CreatedOrderView

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
def show(order_id: OrderId) -> None:
    """An order's status, lines, QR codes, payment evidence and audit trail."""
    from khqrpay.services.orders import order_details
    from khqrpay.services.schemas import OrderView

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
    from khqrpay.services.orders import list_orders
    from khqrpay.services.schemas import OrderSummary

    wanted = None
    if status is not None:
        try:
            wanted = OrderStatus(status.strip().upper())
        except ValueError:
            fail(f"status {status!r} is not one of {', '.join(OrderStatus)}")
    with open_app() as app:
        orders = list_orders(app.database, wanted)
    print_json([OrderSummary.of(order).json_dict() for order in orders])


@app.command()
def cancel(order_id: OrderId, reason: Reason, staff: Staff = None) -> None:
    """Cancel a PENDING order (a payment found later sends it to review, flagged for refund)."""
    from khqrpay.services.schemas import StaffActionView
    from khqrpay.services.staff import cancel_order

    with open_app() as app:
        result = cancel_order(
            app.database, order_id, actor=staff_actor(staff), reason=reason, clock=app.clock
        )
    print_json(StaffActionView.of(result).json_dict())


@app.command()
def resolve(
    order_id: OrderId,
    reason: Reason,
    accept: Annotated[
        bool, typer.Option("--accept", help="Keep the payment: COMPLETED, stock taken.")
    ] = False,
    refund: Annotated[
        str | None,
        typer.Option(
            metavar="REFERENCE", help="The money went back: REFUNDED, with its reference."
        ),
    ] = None,
    staff: Staff = None,
) -> None:
    """Resolve a NEEDS_REVIEW order: --accept the payment, or --refund REFERENCE."""
    from khqrpay.services.schemas import StaffActionView
    from khqrpay.services.staff import resolve_review

    if accept == (refund is not None):
        fail("give either --accept or --refund REFERENCE")
    resolution = StaffAction.ACCEPT_PAYMENT if accept else StaffAction.REFUND
    with open_app() as app:
        result = resolve_review(
            app.database,
            order_id,
            resolution=resolution,
            refund_reference=refund,
            actor=staff_actor(staff),
            reason=reason,
            clock=app.clock,
        )
    print_json(StaffActionView.of(result).json_dict())


@app.command("clear-refund-flag")
def clear_refund_flag_command(
    order_id: OrderId,
    reference: Annotated[str, typer.Option(help="The refund's reference (bank or Bakong).")],
    reason: Reason,
    staff: Staff = None,
) -> None:
    """Clear an order's refund flag once the money went back, with the refund's reference."""
    from khqrpay.services.schemas import StaffActionView
    from khqrpay.services.staff import clear_refund_flag

    with open_app() as app:
        result = clear_refund_flag(
            app.database,
            order_id,
            reference=reference,
            actor=staff_actor(staff),
            reason=reason,
            clock=app.clock,
        )
    print_json(StaffActionView.of(result).json_dict())


order_actions.register(app)
