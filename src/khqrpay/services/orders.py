"""Reading orders, for the CLI now and the shop and the staff console later."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from khqrpay.db import Database, UnitOfWork
from khqrpay.orders.model import (
    AuditEntry,
    KhqrPayment,
    Order,
    OrderLine,
    OrderStatus,
    RecordedEvidence,
)


@dataclass(frozen=True, slots=True)
class OrderDetails:
    """Everything known about one order, read in one snapshot."""

    order: Order
    lines: tuple[OrderLine, ...]
    payments: tuple[KhqrPayment, ...]
    evidence: tuple[RecordedEvidence, ...]
    audit: tuple[AuditEntry, ...]


def order_details(database: Database, order_id: int) -> OrderDetails:
    with database.read() as uow:
        return read_order_details(uow, order_id)


def read_order_details(uow: UnitOfWork, order_id: int) -> OrderDetails:
    """The order's details in the caller's transaction."""
    return OrderDetails(
        order=uow.orders.get(order_id),
        lines=tuple(uow.orders.lines(order_id)),
        payments=tuple(uow.payments.for_order(order_id)),
        evidence=tuple(uow.evidence.for_order(order_id)),
        audit=tuple(uow.audit.for_order(order_id)),
    )


def order_by_token(database: Database, public_token: str) -> Order:
    """The customer's way in: their order, by the token they were given at checkout."""
    with database.read() as uow:
        return uow.orders.by_token(public_token)


def list_orders(database: Database, status: OrderStatus | None = None) -> list[Order]:
    """Orders, newest first, optionally only those with one status."""
    with database.read() as uow:
        return uow.orders.find(status)


def pending_payments_by_age(
    database: Database, *, now_ms: int, bands: Sequence[tuple[str, int]]
) -> dict[str, int]:
    """How many QRs are still pending in each age band (see `uow.payments.count_pending_by_age`)."""
    with database.read() as uow:
        return uow.payments.count_pending_by_age(now_ms=now_ms, bands=bands)
