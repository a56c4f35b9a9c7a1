"""Reading orders, for the CLI now and the shop and the staff console later."""

from __future__ import annotations

from dataclasses import dataclass

from khqrpay.db import UnitOfWork
from khqrpay.orders.model import (
    AuditEntry,
    KhqrPayment,
    Order,
    OrderLine,
    OrderStatus,
    RecordedEvidence,
    ReviewNote,
    review_history,
    validate_order_id,
)


@dataclass(frozen=True, slots=True)
class OrderDetails:
    """Everything known about one order, read in one snapshot."""

    order: Order
    lines: tuple[OrderLine, ...]
    payments: tuple[KhqrPayment, ...]
    evidence: tuple[RecordedEvidence, ...]
    audit: tuple[AuditEntry, ...]

    @property
    def review_history(self) -> tuple[ReviewNote, ...]:
        """Every review reason the order was given, oldest first (`order.review_reason` is the
        latest)."""
        return review_history(self.audit)


def order_details(uow: UnitOfWork, order_id: int) -> OrderDetails:
    validate_order_id(order_id)
    return OrderDetails(
        order=uow.orders.get(order_id),
        lines=tuple(uow.orders.lines(order_id)),
        payments=tuple(uow.payments.for_order(order_id)),
        evidence=tuple(uow.evidence.for_order(order_id)),
        audit=tuple(uow.audit.for_order(order_id)),
    )


def order_by_token(uow: UnitOfWork, public_token: str) -> Order:
    """The customer's way in: their order, by the token they were given at checkout."""
    return uow.orders.by_token(public_token)


def list_orders(uow: UnitOfWork, status: OrderStatus | None = None) -> list[Order]:
    """Orders, newest first, optionally only those with one status."""
    return uow.orders.find(status)
