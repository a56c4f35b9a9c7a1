"""Expiring orders nobody paid: after a payment's final check (the verifier) and, as a safety net,
a sweep of pending orders whose window has ended with no QR left to check.

The sweep only finds work if the verifier stopped between expiring an order's last QR and
expiring the order (the two are separate transactions, so that no transaction locks both many
payments and an order); it is cheap (a partial index on pending orders' window end).
"""

from __future__ import annotations

from khqrpay.db import Database, UnitOfWork
from khqrpay.orders.model import OrderStatus, PaymentStatus, validate_actor
from khqrpay.services.transitions import transition_order

EXPIRY_REASON = "no payment found by the end of the payment window"
SWEEP_BATCH = 500


def expire_order_if_unpaid(uow: UnitOfWork, order_id: int, *, actor: str, now_ms: int) -> bool:
    """PENDING → EXPIRED when none of the order's QRs is still pending; with audit and outbox.

    Locks the order first (like the completion function), so a payment recorded concurrently
    either commits before (the order is no longer PENDING) or waits and then finds it EXPIRED,
    which the decision function sends to NEEDS_REVIEW with the money recorded.
    """
    validate_actor(actor)
    order = uow.orders.lock(order_id)
    if order.status is not OrderStatus.PENDING:
        return False
    if any(p.status is PaymentStatus.PENDING for p in uow.payments.for_order(order_id)):
        return False
    transition_order(
        uow,
        order,
        OrderStatus.EXPIRED,
        actor=actor,
        action="expired",
        reason=EXPIRY_REASON,
        now_ms=now_ms,
        details={"window_end_ms": order.window_end_ms},
    )
    return True


def sweep_expired_orders(
    database: Database, *, actor: str, now_ms: int, final_grace_ms: int, limit: int = SWEEP_BATCH
) -> list[int]:
    """Expire pending orders whose window (plus the final check's grace) has ended and that have
    no pending QR; the ids of the orders expired."""
    with database.read() as uow:
        candidates = uow.orders.unpaid_after_window(
            now_ms=now_ms, grace_ms=final_grace_ms, limit=limit
        )
    expired = []
    for order_id in candidates:
        with database.write() as uow:
            if expire_order_if_unpaid(uow, order_id, actor=actor, now_ms=now_ms):
                expired.append(order_id)
    return expired
