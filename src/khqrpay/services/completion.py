"""The one completion function: every path that records a payment or completes an order calls it.

`record_payment` runs inside the caller's write transaction (`Database.write()`), which it must be
given fresh: it locks the order first. Callers check Bakong *before* opening the transaction; no
transaction is ever held open across a Bakong call.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from khqrpay import fault_points
from khqrpay.db import DuplicateHash, UnitOfWork
from khqrpay.orders.events import (
    EvidenceAttached,
    OrderEvent,
    OrderStatusChanged,
    PaymentConflict,
    RefundFlagged,
)
from khqrpay.orders.model import (
    Action,
    Decision,
    Evidence,
    EvidenceSource,
    KhqrPayment,
    Order,
    OrderError,
    OrderFacts,
    OrderStatus,
    PaymentStatus,
    conflict_reason_for_recorded_order,
    decide,
    flags_refund,
    status_after,
    validate_actor,
    validate_reason,
)
from khqrpay.services.transitions import transition_order

# The audit trail's name for what each action did to the order.
AUDIT_ACTIONS = {
    Action.COMPLETE: "completed",
    Action.NEEDS_REVIEW: "needs_review",
    Action.FLAG_REFUND: "refund_flagged",
    Action.ATTACH_EVIDENCE_ONLY: "evidence_attached",
    Action.CONFLICT: "payment_conflict",
}


class HashRecordedMeanwhile(RuntimeError):
    """Another transaction recorded this transfer's hash for another order while this one ran.

    The conflict must lock that order too, and locks are taken in id order before anything else,
    so the caller rolls back and runs the call again (it then sees the other order up front)."""


@dataclass(frozen=True, slots=True)
class CompletionResult:
    """What `record_payment` did. `action` is what was applied: a COMPLETE that found too little
    stock is reported as NEEDS_REVIEW."""

    order_id: int
    action: Action
    previous_status: OrderStatus
    status: OrderStatus
    reason: str | None
    evidence_id: int | None
    # CONFLICT: the order the transfer's hash is recorded for (flagged too).
    other_order_id: int | None = None

    @property
    def completed(self) -> bool:
        return self.action is Action.COMPLETE


def record_payment(
    uow: UnitOfWork,
    *,
    order_id: int,
    evidence: Evidence | None,
    source: EvidenceSource,
    actor: str,
    now_ms: int,
    reason: str | None = None,
    payment_id: int | None = None,
) -> CompletionResult:
    """Record what Bakong said about a payment of the order (or a staff mark without evidence,
    `evidence=None`) and apply the decision of `khqrpay.orders.model.decide`.

    In the caller's transaction: lock the order, decide, insert the evidence (its hash is unique
    across all orders), take the stock with guarded decrements (too little: NEEDS_REVIEW, nothing
    taken), guarded status update, the paid QR (`payment_id`) marked PAID and unscheduled, one
    audit record and one outbox event. Idempotent: the same hash again is ALREADY_RECORDED and
    writes nothing new. Staff (`MARK_PAID`) must give a reason.

    A hash recorded for another order is REFUSED for staff; from Bakong (automatic sources) it is
    a CONFLICT: both orders are locked in id order and flagged, the QR is marked PAID, no evidence
    is inserted. Raises `HashRecordedMeanwhile` when such a hash was recorded concurrently: the
    caller runs the transaction again.
    """
    validate_actor(actor)
    staff_reason = _staff_reason(source, reason)
    if evidence is None and source is not EvidenceSource.MARK_PAID:
        raise OrderError("only Mark as Paid may record a payment without Bakong evidence")
    if evidence is None and payment_id is not None:
        # Only Bakong can say which QR was paid; staff's word leaves every QR checked.
        raise OrderError("a QR is marked paid only with Bakong evidence of its payment")
    # A recorded hash never moves to another order, so reading its owner before the locks is
    # safe; a conflict flags that order too, so both are locked, in id order (no deadlock).
    owner = None if evidence is None else uow.evidence.order_of_hash(evidence.bakong_hash)
    other_order_id = owner if owner != order_id else None
    conflict_with = None if source is EvidenceSource.MARK_PAID else other_order_id
    lock_ids = {order_id} if conflict_with is None else {order_id, conflict_with}
    locked = {locked_id: uow.orders.lock(locked_id) for locked_id in sorted(lock_ids)}
    order = locked[order_id]
    payments = uow.payments.for_order(order_id)
    payment = _payment_of(payments, order_id, payment_id)
    recorded = uow.evidence.for_order(order_id)
    facts = OrderFacts(
        status=order.status,
        window_end_ms=order.window_end_ms,
        expected=order.total,
        receiving_accounts=frozenset(p.to_account for p in payments),
        recorded_hashes=frozenset(r.evidence.bakong_hash for r in recorded),
        paid_manually_without_hash=order.paid_manually_without_hash,
        conflict_hashes=frozenset() if conflict_with is None else _conflict_hashes(uow, order_id),
    )
    decision = decide(
        facts,
        evidence,
        source=source,
        other_order_id=other_order_id,
        qr_md5=None if payment is None else payment.md5,
        qr_created_ms=order.created_ms if payment is None else payment.created_ms,
    )
    recording = _Recording(
        uow, order, facts, evidence, payment, source, actor, staff_reason, now_ms
    )
    if conflict_with is not None:
        result = recording.apply_conflict(decision, locked[conflict_with])
    else:
        result = recording.apply(decision)
    fault_points.reached(fault_points.COMPLETION_BEFORE_COMMIT)
    return result


def _conflict_hashes(uow: UnitOfWork, order_id: int) -> frozenset[str]:
    """The hashes of the conflicts already applied to this order (its audit trail records them),
    so the same conflict seen again writes nothing."""
    return frozenset(
        str(entry.details["bakong_hash"])
        for entry in uow.audit.for_order(order_id)
        if entry.action == AUDIT_ACTIONS[Action.CONFLICT]
        and entry.details.get("paid_order_id") == order_id
    )


def _staff_reason(source: EvidenceSource, reason: str | None) -> str | None:
    cleaned = validate_reason(reason, required=False)
    if source is EvidenceSource.MARK_PAID and cleaned is None:
        raise OrderError("Mark as Paid needs a reason")
    return cleaned


def _payment_of(
    payments: Sequence[KhqrPayment], order_id: int, payment_id: int | None
) -> KhqrPayment | None:
    """The QR `payment_id` among the order's own (read once for the facts too)."""
    if payment_id is None:
        return None
    payment = next((p for p in payments if p.id == payment_id), None)
    if payment is None:
        raise OrderError(f"payment {payment_id} is not a QR of order {order_id}")
    return payment


@dataclass(frozen=True, slots=True)
class _Recording:
    """One call of `record_payment`, once the order is locked and the facts are read."""

    uow: UnitOfWork
    order: Order
    facts: OrderFacts
    evidence: Evidence | None
    payment: KhqrPayment | None
    source: EvidenceSource
    actor: str
    staff_reason: str | None
    now_ms: int

    def _result(self, action: Action, status: OrderStatus, reason: str | None) -> CompletionResult:
        return CompletionResult(self.order.id, action, self.order.status, status, reason, None)

    def apply(self, decision: Decision) -> CompletionResult:
        order, evidence = self.order, self.evidence
        if decision.action is Action.REFUSED:
            return self._result(Action.REFUSED, order.status, decision.reason)
        is_new = evidence is not None and evidence.bakong_hash not in self.facts.recorded_hashes
        evidence_id = None
        if evidence is not None and is_new:
            try:
                evidence_id = self.uow.evidence.add(
                    evidence,
                    order_id=order.id,
                    payment_id=None if self.payment is None else self.payment.id,
                    source=self.source,
                    mismatch_reason=decision.mismatch,
                    now_ms=self.now_ms,
                )
            except DuplicateHash as exc:
                # Recorded meanwhile for another order (this one is locked, so not for it).
                if self.source is not EvidenceSource.MARK_PAID:
                    raise HashRecordedMeanwhile(evidence.short_hash) from exc
                other_order_id = self.uow.evidence.order_of_hash(evidence.bakong_hash)
                refusal = decide(
                    self.facts, evidence, source=self.source, other_order_id=other_order_id
                )
                return self._result(refusal.action, order.status, refusal.reason)
        self._mark_qr_paid()
        if self.payment is not None and evidence is not None and not is_new:
            self.uow.evidence.link_payment(evidence.bakong_hash, self.payment.id)
        if decision.action is Action.ALREADY_RECORDED:
            return self._result(Action.ALREADY_RECORDED, order.status, None)

        action, reason = decision.action, decision.reason
        if action is Action.COMPLETE and (shortage := self._take_stock()):
            action, reason = Action.NEEDS_REVIEW, shortage
        status = status_after(action, order.status)
        self._transition(order, action, status, reason, {})
        return CompletionResult(order.id, action, order.status, status, reason, evidence_id)

    def apply_conflict(self, decision: Decision, recorded_for: Order) -> CompletionResult:
        """Bakong found this order's QR paid by a transfer recorded for `recorded_for`: the QR is
        paid (no more checks), and both orders are flagged for people (no evidence row: the other
        order's row is the record of the money). The same conflict again writes nothing."""
        self._mark_qr_paid()
        if decision.action is not Action.CONFLICT:  # ALREADY_RECORDED: seen before
            return self._result(decision.action, self.order.status, None)
        assert self.evidence is not None  # a conflict is about a transfer
        link = {"paid_order_id": self.order.id, "recorded_order_id": recorded_for.id}
        status = status_after(Action.CONFLICT, self.order.status)
        self._flag_conflict(self.order, status, decision.reason, link)
        other_reason = conflict_reason_for_recorded_order(
            self.evidence,
            qr_md5=None if self.payment is None else self.payment.md5,
            paid_order_id=self.order.id,
        )
        other_status = status_after(Action.CONFLICT, recorded_for.status)
        self._flag_conflict(recorded_for, other_status, other_reason, link)
        return CompletionResult(
            self.order.id,
            Action.CONFLICT,
            self.order.status,
            status,
            decision.reason,
            None,
            other_order_id=recorded_for.id,
        )

    def _flag_conflict(
        self, order: Order, status: OrderStatus, reason: str | None, link: Mapping[str, int]
    ) -> None:
        self._transition(order, Action.CONFLICT, status, reason, link)

    def _mark_qr_paid(self) -> None:
        # Already PAID: nothing to write (the same answer seen again).
        if self.payment is not None and self.payment.status is not PaymentStatus.PAID:
            self.uow.payments.mark_paid(self.payment.id, now_ms=self.now_ms)

    def _take_stock(self) -> str | None:
        """Take every line's stock, or none of it; the reason when a product has too little."""
        needed = Counter[int]()
        for line in self.uow.orders.lines(self.order.id):
            needed[line.product_id] += line.quantity
        short_id = self.uow.products.take_all_stock(needed, now_ms=self.now_ms)
        if short_id is None:
            return None
        product = self.uow.products.get(short_id)
        left = 0 if product is None else product.stock
        sku = short_id if product is None else product.sku
        return f"insufficient stock for {sku}: {needed[short_id]} needed, {left} left"

    def _transition(
        self,
        order: Order,
        action: Action,
        status: OrderStatus,
        reason: str | None,
        link: Mapping[str, int],
    ) -> None:
        """Apply `action` to `order`: the status and columns, one audit row, one event."""
        details: dict[str, object] = {"source": self.source.value, "decision_reason": reason}
        if self.payment is not None:
            details["payment_id"] = self.payment.id
        if self.evidence is not None:
            details |= {
                "bakong_hash": self.evidence.bakong_hash,
                "amount": str(self.evidence.amount),
                "currency": self.evidence.currency,
                "paid_ms": self.evidence.paid_ms,
            }
        transition_order(
            self.uow,
            order,
            status,
            actor=self.actor,
            action=AUDIT_ACTIONS[action],
            reason=self.staff_reason or reason,
            now_ms=self.now_ms,
            event=self._event(order, action, status, reason, link),
            details={**details, **link},
            **self._columns(order, action, status, reason),
        )

    def _columns(
        self, order: Order, action: Action, status: OrderStatus, reason: str | None
    ) -> dict[str, object]:
        # Staff vouching without a hash is the only record of that money: keep it, even when the
        # order then goes to review (short of stock).
        if action is Action.COMPLETE:
            return {
                "completed_ms": self.now_ms,
                "review_reason": None,
                "paid_manually_without_hash": self._staff_vouches(),
            }
        columns: dict[str, object] = {}
        if flags_refund(action, order.status):
            columns |= {"refund_flag": True, "refund_reason": reason}
        # Evidence attached to an order already in review keeps the reason it is there for.
        if status is OrderStatus.NEEDS_REVIEW and action is not Action.ATTACH_EVIDENCE_ONLY:
            columns["review_reason"] = reason
            if self._staff_vouches():
                columns["paid_manually_without_hash"] = True
        return columns

    def _staff_vouches(self) -> bool:
        return self.evidence is None and not self.facts.recorded_hashes

    def _event(
        self,
        order: Order,
        action: Action,
        status: OrderStatus,
        reason: str | None,
        link: Mapping[str, int],
    ) -> OrderEvent:
        short_hash = None if self.evidence is None else self.evidence.short_hash
        paid_order_id, recorded_order_id = link.get("paid_order_id"), link.get("recorded_order_id")
        if status is not order.status:
            return OrderStatusChanged(
                order_id=order.id,
                at_ms=self.now_ms,
                from_status=order.status,
                to_status=status,
                reason=reason,
                short_hash=short_hash,
                paid_order_id=paid_order_id,
                recorded_order_id=recorded_order_id,
            )
        flagged = flags_refund(action, order.status)
        if not flagged and action is not Action.CONFLICT:
            return EvidenceAttached(
                order_id=order.id, at_ms=self.now_ms, reason=reason, short_hash=short_hash
            )
        disputed = RefundFlagged if flagged else PaymentConflict
        return disputed(
            order_id=order.id,
            at_ms=self.now_ms,
            reason=reason,
            short_hash=short_hash,
            paid_order_id=paid_order_id,
            recorded_order_id=recorded_order_id,
        )
