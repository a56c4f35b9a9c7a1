"""The one way an order's status or flags change: a guarded update, one audit row and one outbox
event, in the caller's transaction. The completion function, expiry and the staff use cases all
go through `transition_order`, so no change can skip its audit or its event."""

from __future__ import annotations

from collections.abc import Mapping

from khqrpay.db import UnitOfWork
from khqrpay.orders.events import OrderEvent, OrderStatusChanged
from khqrpay.orders.model import Order, OrderStatus


class ConcurrentChange(RuntimeError):
    """A guarded update found the order changed under its lock: a bug, never a business case."""


def transition_order(
    uow: UnitOfWork,
    order: Order,
    target: OrderStatus,
    *,
    actor: str,
    action: str,
    reason: str | None,
    now_ms: int,
    event: OrderEvent | None = None,
    details: Mapping[str, object] | None = None,
    **columns: object,
) -> None:
    """Move `order` (as read under its lock) to `target` (or keep its status, changing only
    `columns`), audited as `action` by `actor` with `reason`, and announce `event` (by default
    the status change, with the same reason).

    The update is guarded by the status read (`WHERE status = :expected`); the caller holds the
    order's lock, so it failing means a bug: `ConcurrentChange` rolls the transaction back."""
    changed = uow.orders.transition(
        order.id, expected=order.status, target=target, now_ms=now_ms, **columns
    )
    if not changed:
        raise ConcurrentChange(f"order {order.id} changed while locked")
    uow.audit.append(
        order_id=order.id,
        at_ms=now_ms,
        actor=actor,
        action=action,
        from_status=order.status,
        to_status=target,
        reason=reason,
        details=details,
    )
    if event is None:
        event = OrderStatusChanged(
            order_id=order.id,
            at_ms=now_ms,
            from_status=order.status,
            to_status=target,
            reason=reason,
        )
    uow.outbox.add_event(event, now_ms=now_ms)
