"""The one way an order's status or flags change: a guarded update, one audit row and one outbox
event, in the caller's transaction. The completion function, expiry and the staff use cases all
go through `transition_orders` (`transition_order` for one), so no change can skip its audit or
its event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from khqrpay.db import UnitOfWork
from khqrpay.orders.events import OrderEvent, OrderStatusChanged
from khqrpay.orders.model import NewAuditEntry, Order, OrderStatus


class ConcurrentChange(RuntimeError):
    """A guarded update found the order changed under its lock: a bug, never a business case."""


@dataclass(frozen=True, slots=True)
class OrderChange:
    """`order` (as read under its lock, or as an earlier change of the same call left it) moved
    to `target` (or kept in its status, changing only `columns`), audited as `action` with
    `reason`, announcing `event` (None: the status change, with the same reason)."""

    order: Order
    target: OrderStatus
    action: str
    reason: str | None
    event: OrderEvent | None = None
    details: Mapping[str, object] | None = None
    columns: Mapping[str, object] = field(default_factory=dict)


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
    """Apply one `OrderChange` (see `transition_orders`)."""
    change = OrderChange(order, target, action, reason, event, details, columns)
    transition_orders(uow, [change], actor=actor, now_ms=now_ms)


def transition_orders(
    uow: UnitOfWork, changes: Sequence[OrderChange], *, actor: str, now_ms: int
) -> None:
    """Apply `changes` by `actor`, in order, in a few statements: each order's row written once,
    every change's audit row and event (one statement each for all of them).

    Several changes of one order follow each other: its row goes from the status of its first
    change to the target of its last, with their columns (a later one wins). Orders whose rows
    end alike are updated in one statement, guarded by the status read (`WHERE status =
    :expected`); the caller holds the orders' locks, so one not updated means a bug:
    `ConcurrentChange` rolls the transaction back."""
    rows: dict[int, tuple[OrderStatus, OrderStatus, dict[str, object]]] = {}
    for change in changes:
        first = rows.get(change.order.id)
        expected, columns = (change.order.status, {}) if first is None else (first[0], first[2])
        rows[change.order.id] = (expected, change.target, columns | dict(change.columns))
    alike: dict[tuple[OrderStatus, OrderStatus, tuple[tuple[str, object], ...]], list[int]] = {}
    for order_id, (expected, target, columns) in rows.items():
        alike.setdefault((expected, target, tuple(sorted(columns.items()))), []).append(order_id)
    for (expected, target, values), order_ids in alike.items():
        changed = uow.orders.transition_all(
            order_ids, expected=expected, target=target, now_ms=now_ms, **dict(values)
        )
        if changed != len(order_ids):
            raise ConcurrentChange(f"orders {sorted(order_ids)} changed while locked")
    uow.audit.append_all(
        [
            NewAuditEntry(
                order_id=change.order.id,
                at_ms=now_ms,
                actor=actor,
                action=change.action,
                from_status=change.order.status,
                to_status=change.target,
                reason=change.reason,
                details=change.details or {},
            )
            for change in changes
        ]
    )
    uow.outbox.add_events([_event(change, now_ms) for change in changes], now_ms=now_ms)


def _event(change: OrderChange, now_ms: int) -> OrderEvent:
    if change.event is not None:
        return change.event
    return OrderStatusChanged(
        order_id=change.order.id,
        at_ms=now_ms,
        from_status=change.order.status,
        to_status=change.target,
        reason=change.reason,
    )
