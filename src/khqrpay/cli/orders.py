"""`khqrpay orders ...`: create, show and list orders (staff and scripts, until the web console)."""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli.common import OrderId, amount, fail, iso, open_database, print_json
from khqrpay.clock import SystemClock
from khqrpay.orders.model import (
    AuditEntry,
    KhqrPayment,
    LineRequest,
    Order,
    OrderLine,
    OrderStatus,
    RecordedEvidence,
    ReviewNote,
)
from khqrpay.services.checkout import create_order
from khqrpay.services.orders import list_orders, order_details

app = typer.Typer(help="Create, show and list orders.", no_args_is_help=True)


def order_summary_json(order: Order) -> dict[str, object]:
    return {
        "id": order.id,
        "status": order.status.value,
        "total": amount(order.total),
        "currency": order.currency.value,
        "created_at": iso(order.created_ms),
        "expires_at": iso(order.window_end_ms),
        "completed_at": iso(order.completed_ms),
        "review_reason": order.review_reason,
        "refund_flag": order.refund_flag,
    }


def _line_json(line: OrderLine) -> dict[str, object]:
    return {
        "sku": line.sku,
        "name": line.name,
        "unit_price": amount(line.unit_price),
        "quantity": line.quantity,
        "total": amount(line.total),
    }


def _qr_json(payment: KhqrPayment) -> dict[str, object]:
    return {
        "id": payment.id,
        "md5": payment.md5,
        "qr": payment.qr,
        "status": payment.status.value,
        "amount": amount(payment.amount),
        "to_account": payment.to_account,
        "created_at": iso(payment.created_ms),
        "expires_at": iso(payment.expires_ms),
        "next_check_at": iso(payment.next_check_ms),
        "check_count": payment.check_count,
        "last_checked_at": iso(payment.last_checked_ms),
        "last_outcome": None if payment.last_outcome is None else payment.last_outcome.value,
    }


def _evidence_json(recorded: RecordedEvidence) -> dict[str, object]:
    evidence = recorded.evidence
    return {
        "id": recorded.id,
        "payment_id": recorded.payment_id,
        "bakong_hash": evidence.bakong_hash,
        "short_hash": evidence.short_hash,
        "from_account": evidence.from_account,
        "to_account": evidence.to_account,
        "amount": str(evidence.amount),
        "currency": evidence.currency,
        "paid_at": iso(evidence.paid_ms),
        "source": recorded.source.value,
        "matched": recorded.matched,
        "mismatch_reason": recorded.mismatch_reason,
        "recorded_at": iso(recorded.recorded_ms),
    }


def _audit_json(entry: AuditEntry) -> dict[str, object]:
    return {
        "at": iso(entry.at_ms),
        "actor": entry.actor,
        "action": entry.action,
        "from_status": None if entry.from_status is None else entry.from_status.value,
        "to_status": None if entry.to_status is None else entry.to_status.value,
        "reason": entry.reason,
        "details": dict(entry.details),
    }


def _review_json(note: ReviewNote) -> dict[str, object]:
    return {"at": iso(note.at_ms), "reason": note.reason, "actor": note.actor}


@app.command()
def create(
    line: Annotated[list[str], typer.Option(help="SKU:QTY, e.g. TEA-1:2 (repeat for more lines).")],
    phone: Annotated[str | None, typer.Option(help="The customer's Cambodian phone.")] = None,
) -> None:
    """Create a PENDING order and its KHQR code."""
    with open_database() as (database, settings):
        requests = [LineRequest.parse(text) for text in line]
        with database.write() as uow:
            created = create_order(
                uow,
                lines=requests,
                phone=phone,
                settings=settings,
                clock=SystemClock(),
                actor="cli",
            )
        print_json(
            {
                "id": created.order.id,
                "token": created.order.public_token,
                "status": created.order.status.value,
                "qr": created.payment.qr,
                "md5": created.payment.md5,
                "expires_at": iso(created.payment.expires_ms),
            }
        )


@app.command()
def show(order_id: OrderId) -> None:
    """An order's status, lines, QR codes, payment evidence and audit trail."""
    with open_database() as (database, _settings), database.read() as uow:
        details = order_details(uow, order_id)
    order = details.order
    print_json(
        order_summary_json(order)
        | {
            "token": order.public_token,
            "phone": order.customer_phone,
            "refund_reason": order.refund_reason,
            "paid_manually_without_hash": order.paid_manually_without_hash,
            "lines": [_line_json(line) for line in details.lines],
            "qrs": [_qr_json(payment) for payment in details.payments],
            "evidence": [_evidence_json(recorded) for recorded in details.evidence],
            "audit": [_audit_json(entry) for entry in details.audit],
            "review_history": [_review_json(note) for note in details.review_history],
        }
    )


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
    with open_database() as (database, _settings), database.read() as uow:
        print_json([order_summary_json(order) for order in list_orders(uow, wanted)])
