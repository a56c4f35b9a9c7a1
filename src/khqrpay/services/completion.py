"""The one completion function: every path that records a payment or completes an order calls it.

`record_payment` runs inside the caller's write transaction (`Database.write()`), which it must be
given fresh: it locks the order first. Callers check Bakong *before* opening the transaction; no
transaction is ever held open across a Bakong call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from khqrpay.db import DuplicateHash, UnitOfWork
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
    Topic,
    decide,
    status_after,
    validate_actor,
)

MAX_REASON_LENGTH = 500

# The audit trail's name for what each action did to the order.
AUDIT_ACTIONS = {
    Action.COMPLETE: "completed",
    Action.NEEDS_REVIEW: "needs_review",
    Action.FLAG_REFUND: "refund_flagged",
    Action.ATTACH_EVIDENCE_ONLY: "evidence_attached",
}


class ConcurrentChange(RuntimeError):
    """A guarded update found the order changed under its lock: a bug, never a business case."""


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
    """
    validate_actor(actor)
    staff_reason = _staff_reason(source, reason)
    if evidence is None and source is not EvidenceSource.MARK_PAID:
        raise OrderError("only Mark as Paid may record a payment without Bakong evidence")
    if evidence is None and payment_id is not None:
        # Only Bakong can say which QR was paid; staff's word leaves every QR checked.
        raise OrderError("a QR is marked paid only with Bakong evidence of its payment")
    order = uow.orders.lock(order_id)
    payment = _payment_of(uow, order_id, payment_id)
    recorded = uow.evidence.for_order(order_id)
    facts = OrderFacts(
        status=order.status,
        window_end_ms=order.window_end_ms,
        expected=order.total,
        receiving_accounts=frozenset(p.to_account for p in uow.payments.for_order(order_id)),
        recorded_hashes=frozenset(r.evidence.bakong_hash for r in recorded),
        paid_manually_without_hash=order.paid_manually_without_hash,
    )
    owner = None if evidence is None else uow.evidence.order_of_hash(evidence.bakong_hash)
    decision = decide(
        facts,
        evidence,
        source=source,
        hash_recorded_for_other_order=owner not in (None, order_id),
    )
    recording = _Recording(
        uow, order, facts, evidence, payment, source, actor, staff_reason, now_ms
    )
    return recording.apply(decision)


def _staff_reason(source: EvidenceSource, reason: str | None) -> str | None:
    cleaned = (reason or "").strip() or None
    if source is EvidenceSource.MARK_PAID and cleaned is None:
        raise OrderError("Mark as Paid needs a reason")
    if cleaned is not None and len(cleaned) > MAX_REASON_LENGTH:
        raise OrderError(f"a reason is at most {MAX_REASON_LENGTH} characters")
    return cleaned


def _payment_of(uow: UnitOfWork, order_id: int, payment_id: int | None) -> KhqrPayment | None:
    if payment_id is None:
        return None
    payment = uow.payments.get(payment_id)
    if payment is None or payment.order_id != order_id:
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
            except DuplicateHash:
                # Recorded meanwhile for another order (this one is locked, so not for it).
                refusal = decide(
                    self.facts, evidence, source=self.source, hash_recorded_for_other_order=True
                )
                return self._result(refusal.action, order.status, refusal.reason)
        if self.payment is not None:
            self.uow.payments.mark_paid(self.payment.id, now_ms=self.now_ms)
            if evidence is not None and not is_new:
                self.uow.evidence.link_payment(evidence.bakong_hash, self.payment.id)
        if decision.action is Action.ALREADY_RECORDED:
            return self._result(Action.ALREADY_RECORDED, order.status, None)

        action, reason = decision.action, decision.reason
        if action is Action.COMPLETE and (shortage := self._take_stock()):
            action, reason = Action.NEEDS_REVIEW, shortage
        status = status_after(action, order.status)
        self._update_order(action, status, reason)
        self._audit(action, status, reason)
        self._announce(action, status, reason)
        return CompletionResult(order.id, action, order.status, status, reason, evidence_id)

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

    def _update_order(self, action: Action, status: OrderStatus, reason: str | None) -> None:
        columns: dict[str, object] = {}
        # Staff vouching without a hash is the only record of that money: keep it, even when the
        # order then goes to review (short of stock).
        if action is Action.COMPLETE:
            columns = {
                "completed_ms": self.now_ms,
                "review_reason": None,
                "paid_manually_without_hash": self._staff_vouches(),
            }
        elif action is Action.NEEDS_REVIEW:
            columns = {"review_reason": reason}
            if self._staff_vouches():
                columns["paid_manually_without_hash"] = True
        elif action is Action.FLAG_REFUND:
            columns = {"refund_flag": True, "refund_reason": reason}
        changed = self.uow.orders.transition(
            self.order.id,
            expected=self.order.status,
            target=status,
            now_ms=self.now_ms,
            **columns,
        )
        if not changed:
            raise ConcurrentChange(f"order {self.order.id} changed while locked")

    def _staff_vouches(self) -> bool:
        return self.evidence is None and not self.facts.recorded_hashes

    def _audit(self, action: Action, status: OrderStatus, reason: str | None) -> None:
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
        self.uow.audit.append(
            order_id=self.order.id,
            at_ms=self.now_ms,
            actor=self.actor,
            action=AUDIT_ACTIONS[action],
            from_status=self.order.status,
            to_status=status,
            reason=self.staff_reason or reason,
            details=details,
        )

    def _announce(self, action: Action, status: OrderStatus, reason: str | None) -> None:
        payload: dict[str, object] = {"order_id": self.order.id, "at_ms": self.now_ms}
        payload["reason"] = reason
        if status is not self.order.status:
            topic = Topic.ORDER_STATUS_CHANGED
            payload |= {"from": self.order.status.value, "to": status.value}
        elif action is Action.FLAG_REFUND:
            topic = Topic.ORDER_REFUND_FLAGGED
        else:
            topic = Topic.ORDER_EVIDENCE_ATTACHED
        if self.evidence is not None:
            payload["short_hash"] = self.evidence.short_hash
        self.uow.outbox.add(
            topic=topic, order_id=self.order.id, payload=payload, now_ms=self.now_ms
        )
