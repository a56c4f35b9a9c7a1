"""What staff do to an order by hand: cancel it, resolve its review (accept the payment or refund
it), clear its refund flag. Each is one transaction: the order is locked, the state machine
(`orders.model.STAFF_TRANSITIONS`) says whether the action is allowed (`TransitionRefused` if
not, nothing changed), and the change is written with its audit row (the actor and their reason)
and its event by `transition_order`. Accepting a payment completes the order through the one
completion function, so stock is taken there and only there.
"""

from __future__ import annotations

from dataclasses import dataclass

from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.orders.events import RefundFlagCleared
from khqrpay.orders.model import (
    Action,
    EvidenceSource,
    Order,
    OrderError,
    OrderStatus,
    StaffAction,
    TransitionRefused,
    staff_target,
    validate_actor,
    validate_reason,
    validate_refund_reference,
)
from khqrpay.services.completion import record_payment
from khqrpay.services.transitions import transition_order


class InsufficientStock(OrderError):
    """Accepting the payment would complete an order whose stock is no longer there."""


@dataclass(frozen=True, slots=True)
class StaffActionResult:
    """The order after the action, and its status before."""

    order: Order
    previous_status: OrderStatus


def _validated(actor: str, reason: str) -> str:
    validate_actor(actor)
    cleaned = validate_reason(reason, required=True)
    assert cleaned is not None  # required
    return cleaned


def cancel_order(
    database: Database, order_id: int, *, actor: str, reason: str, clock: Clock
) -> StaffActionResult:
    """PENDING → CANCELLED. Its QRs keep being checked until they expire: a payment found later
    (a customer paying an old screenshot) sends the order to NEEDS_REVIEW with a refund flag, never
    lost. Refused for any other status (a paid order is not cancelled: refund it)."""
    cleaned = _validated(actor, reason)
    with database.write() as uow:
        order = uow.orders.lock(order_id)
        target = staff_target(StaffAction.CANCEL, order_id=order.id, current=order.status)
        transition_order(
            uow,
            order,
            target,
            actor=actor,
            action="cancelled",
            reason=cleaned,
            now_ms=clock.now_ms(),
        )
        return StaffActionResult(uow.orders.get(order_id), order.status)


def resolve_review(
    database: Database,
    order_id: int,
    *,
    resolution: StaffAction,
    refund_reference: str | None = None,
    actor: str,
    reason: str,
    clock: Clock,
) -> StaffActionResult:
    """Settle a NEEDS_REVIEW order, and with it its refund flag if it has one:

    - `ACCEPT_PAYMENT`: the shop keeps the money → COMPLETED, taking the stock (through the
      completion function); too little stock refuses (`InsufficientStock`), nothing changed.
    - `REFUND` with the refund's reference: the money went back → REFUNDED.
    """
    cleaned = _validated(actor, reason)
    if resolution is StaffAction.REFUND:
        if refund_reference is None:
            raise OrderError("a refund needs the refund's reference")
        refund_reference = validate_refund_reference(refund_reference)
    elif resolution is StaffAction.ACCEPT_PAYMENT:
        if refund_reference is not None:
            raise OrderError("accepting the payment takes no refund reference")
    else:
        raise OrderError(f"{resolution} does not resolve a review: accept the payment or refund")
    with database.write() as uow:
        now_ms = clock.now_ms()
        order = uow.orders.lock(order_id)
        target = staff_target(resolution, order_id=order.id, current=order.status)
        if resolution is StaffAction.ACCEPT_PAYMENT:
            _accept_payment(uow, order, actor=actor, reason=cleaned, now_ms=now_ms)
        else:
            transition_order(
                uow,
                order,
                target,
                actor=actor,
                action="refunded",
                reason=cleaned,
                now_ms=now_ms,
                details={
                    "refund_reference": refund_reference,
                    "refund_reason": order.refund_reason,
                },
                refund_reference=refund_reference,
                refund_flag=False,
                review_reason=None,
            )
        return StaffActionResult(uow.orders.get(order_id), order.status)


def _accept_payment(uow: UnitOfWork, order: Order, *, actor: str, reason: str, now_ms: int) -> None:
    completion = record_payment(
        uow,
        order_id=order.id,
        evidence=None,
        source=EvidenceSource.MARK_PAID,
        actor=actor,
        now_ms=now_ms,
        reason=reason,
    )
    if completion.action is Action.NEEDS_REVIEW:
        # Raised inside the transaction: the completion's writes are rolled back with it.
        raise InsufficientStock(
            f"cannot accept order {order.id}'s payment: {completion.reason}; "
            "add stock first (nothing was changed)"
        )
    if completion.action is not Action.COMPLETE:
        raise TransitionRefused(completion.reason or f"order {order.id} could not be completed")
    if order.refund_flag:
        # The shop keeps the money it was flagged to give back (a cancelled order paid).
        completed = uow.orders.get(order.id)
        _clear_flag(uow, completed, actor=actor, reason=reason, reference=None, now_ms=now_ms)


def clear_refund_flag(
    database: Database, order_id: int, *, reference: str, actor: str, reason: str, clock: Clock
) -> StaffActionResult:
    """Staff refunded the money the order's refund flag was about: clear the flag, recording the
    refund's reference. The status does not change. Refused when the order has no flag."""
    cleaned = _validated(actor, reason)
    cleaned_reference = validate_refund_reference(reference)
    with database.write() as uow:
        order = uow.orders.lock(order_id)
        if not order.refund_flag:
            raise TransitionRefused(f"order {order_id} has no refund flag to clear")
        _clear_flag(
            uow,
            order,
            actor=actor,
            reason=cleaned,
            reference=cleaned_reference,
            now_ms=clock.now_ms(),
        )
        return StaffActionResult(uow.orders.get(order_id), order.status)


def _clear_flag(
    uow: UnitOfWork,
    order: Order,
    *,
    actor: str,
    reason: str,
    reference: str | None,
    now_ms: int,
) -> None:
    columns: dict[str, object] = {"refund_flag": False}
    if reference is not None:
        columns["refund_reference"] = reference
    transition_order(
        uow,
        order,
        order.status,
        actor=actor,
        action="refund_flag_cleared",
        reason=reason,
        now_ms=now_ms,
        event=RefundFlagCleared(
            order_id=order.id, at_ms=now_ms, reason=reason, reference=reference
        ),
        details={"refund_reference": reference, "refund_reason": order.refund_reason},
        **columns,
    )
