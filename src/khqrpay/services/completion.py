"""The one completion function: every path that records a payment or completes an order calls it.

`record_payments` (`record_payment` for one) runs inside the caller's write transaction
(`Database.write()`), which it must be given fresh: it locks the orders first. Callers check
Bakong *before* opening the transaction; no transaction is ever held open across a Bakong call.
The verifier records the paid answers of a round in one call: a few statements for all of them,
not a dozen per payment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from khqrpay import fault_points
from khqrpay.db import NewEvidence, UnitOfWork
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
    OrderLine,
    OrderNotFound,
    OrderStatus,
    PaymentStatus,
    Product,
    conflict_reason_for_recorded_order,
    decide,
    flags_refund,
    status_after,
    validate_actor,
    validate_reason,
)
from khqrpay.services.transitions import ConcurrentChange, OrderChange, transition_orders

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


@dataclass(frozen=True, slots=True)
class ReportedPayment:
    """A payment to record: what Bakong said about a transfer for order `order_id` (`evidence`;
    None: staff vouch for a payment without it), paid to its QR `payment_id` if known."""

    order_id: int
    evidence: Evidence | None
    payment_id: int | None = None


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
    """Record one payment: `record_payments` of one."""
    (result,) = record_payments(
        uow,
        [ReportedPayment(order_id, evidence, payment_id)],
        source=source,
        actor=actor,
        now_ms=now_ms,
        reason=reason,
    )
    return result


def record_payments(
    uow: UnitOfWork,
    payments: Sequence[ReportedPayment],
    *,
    source: EvidenceSource,
    actor: str,
    now_ms: int,
    reason: str | None = None,
) -> list[CompletionResult]:
    """Record what Bakong said about payments (or a staff mark without evidence,
    `evidence=None`), one after another in the order given, each applying the decision of
    `khqrpay.orders.model.decide`; their results, in that order.

    In the caller's transaction: lock the orders (one statement, in id order), then their
    products; read what the decisions need (a few queries for all); decide each payment against
    what the ones before it did; then write it all in set-based statements: the evidence (a hash
    is unique across all orders), the paid QRs (PAID and unscheduled), the stock (too little
    for an order sends it to NEEDS_REVIEW, nothing taken), the guarded status updates, one audit
    record and one outbox event per change. The outcome is the same as recording the payments
    one by one. Idempotent: the same hash again is ALREADY_RECORDED and writes nothing new.
    Staff (`MARK_PAID`) record one payment at a time and must give a reason.

    A hash recorded for another order is REFUSED for staff; from Bakong (automatic sources) it is
    a CONFLICT: both orders are locked and flagged, the QR is marked PAID, no evidence is
    inserted. Raises `HashRecordedMeanwhile` when such a hash was recorded concurrently: the
    caller runs the transaction again (or the payments one by one).
    """
    validate_actor(actor)
    staff_reason = _staff_reason(source, reason)
    if source is EvidenceSource.MARK_PAID and len(payments) != 1:
        raise OrderError("staff record one payment at a time")
    for payment in payments:
        if payment.evidence is None and source is not EvidenceSource.MARK_PAID:
            raise OrderError("only Mark as Paid may record a payment without Bakong evidence")
        if payment.evidence is None and payment.payment_id is not None:
            # Only Bakong can say which QR was paid; staff's word leaves every QR checked.
            raise OrderError("a QR is marked paid only with Bakong evidence of its payment")
    batch = _Batch.read(uow, payments, source=source, now_ms=now_ms)
    recordings = [
        batch.record(payment, source=source, staff_reason=staff_reason) for payment in payments
    ]
    results = batch.write(recordings, source=source, actor=actor)
    fault_points.reached(fault_points.COMPLETION_BEFORE_COMMIT)
    return results


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


@dataclass(slots=True)
class _Batch:
    """What the payments of one `record_payments` call need to know, read under the locks and
    kept up to date as each payment is decided (the next one sees it as if the ones before it
    were written), and the writes they plan, done together at the end."""

    uow: UnitOfWork
    now_ms: int
    orders: dict[int, Order]
    qrs: dict[int, list[KhqrPayment]]
    recorded: dict[int, set[str]]
    owners: dict[str, int]
    lines: dict[int, list[OrderLine]]
    products: dict[int, Product]
    conflicts: dict[int, set[str]] = field(default_factory=dict)
    new_evidence: list[NewEvidence] = field(default_factory=list)
    paid_qrs: list[int] = field(default_factory=list)
    links: list[tuple[str, int]] = field(default_factory=list)
    taken: Counter[int] = field(default_factory=Counter)
    changes: list[OrderChange] = field(default_factory=list)

    @classmethod
    def read(
        cls,
        uow: UnitOfWork,
        payments: Sequence[ReportedPayment],
        *,
        source: EvidenceSource,
        now_ms: int,
    ) -> _Batch:
        order_ids = {payment.order_id for payment in payments}
        hashes = {p.evidence.bakong_hash for p in payments if p.evidence is not None}
        # A recorded hash never moves to another order, so reading its owner before the locks is
        # safe; a conflict flags that order too, so it is locked with the others, in id order.
        owners = uow.evidence.orders_of_hashes(hashes) if hashes else {}
        automatic = source is not EvidenceSource.MARK_PAID
        orders = uow.orders.lock_all({*order_ids, *(owners.values() if automatic else ())})
        if missing := sorted(order_ids - orders.keys()):
            raise OrderNotFound(f"order {missing[0]} not found")
        return cls(
            uow=uow,
            now_ms=now_ms,
            orders=orders,
            qrs=uow.payments.for_orders(order_ids),
            recorded=uow.evidence.hashes_of_orders(order_ids),
            owners=owners,
            lines=uow.orders.lines_of(sorted(order_ids)),
            products=uow.products.lock_for_orders(order_ids),
        )

    def record(
        self,
        payment: ReportedPayment,
        *,
        source: EvidenceSource,
        staff_reason: str | None,
    ) -> _Recording:
        """Decide one payment against what the batch knows now, and plan its writes."""
        order_id, evidence = payment.order_id, payment.evidence
        owner = None if evidence is None else self.owners.get(evidence.bakong_hash)
        other_order_id = owner if owner != order_id else None
        conflict_with = None if source is EvidenceSource.MARK_PAID else other_order_id
        order = self.orders[order_id]
        qrs = self.qrs.get(order_id, [])
        qr = _payment_of(qrs, order_id, payment.payment_id)
        facts = OrderFacts(
            status=order.status,
            window_end_ms=order.window_end_ms,
            expected=order.total,
            receiving_accounts=frozenset(p.to_account for p in qrs),
            recorded_hashes=frozenset(self.recorded.get(order_id, ())),
            paid_manually_without_hash=order.paid_manually_without_hash,
            conflict_hashes=(
                frozenset() if conflict_with is None else frozenset(self._conflicts(order_id))
            ),
        )
        decision = decide(
            facts,
            evidence,
            source=source,
            other_order_id=other_order_id,
            qr_md5=None if qr is None else qr.md5,
            qr_created_ms=order.created_ms if qr is None else qr.created_ms,
        )
        recording = _Recording(self, order, facts, evidence, qr, source, staff_reason)
        if conflict_with is not None:
            recording.apply_conflict(decision, self.orders[conflict_with])
        else:
            recording.apply(decision)
        return recording

    def _conflicts(self, order_id: int) -> set[str]:
        """The hashes of the conflicts already applied to this order (its audit trail records
        them, and this batch), so the same conflict seen again writes nothing."""
        if order_id not in self.conflicts:
            self.conflicts[order_id] = {
                str(entry.details["bakong_hash"])
                for entry in self.uow.audit.for_order(order_id)
                if entry.action == AUDIT_ACTIONS[Action.CONFLICT]
                and entry.details.get("paid_order_id") == order_id
            }
        return self.conflicts[order_id]

    def add_evidence(self, entry: NewEvidence) -> None:
        self.new_evidence.append(entry)
        self.owners[entry.evidence.bakong_hash] = entry.order_id
        self.recorded.setdefault(entry.order_id, set()).add(entry.evidence.bakong_hash)

    def mark_qr_paid(self, qr: KhqrPayment) -> None:
        self.paid_qrs.append(qr.id)
        self.qrs[qr.order_id] = [
            replace(p, status=PaymentStatus.PAID) if p.id == qr.id else p
            for p in self.qrs[qr.order_id]
        ]

    def take_stock(self, order_id: int) -> str | None:
        """Take every line's stock, or none of it; the reason when a product has too little.
        The products are locked and their stock read, so deciding here is exact."""
        needed = Counter[int]()
        for line in self.lines.get(order_id, []):
            needed[line.product_id] += line.quantity
        short_id = next((i for i in sorted(needed) if self.products[i].stock < needed[i]), None)
        if short_id is not None:
            product = self.products[short_id]
            return (
                f"insufficient stock for {product.sku}: "
                f"{needed[short_id]} needed, {product.stock} left"
            )
        for product_id, quantity in needed.items():
            product = self.products[product_id]
            self.products[product_id] = replace(product, stock=product.stock - quantity)
        self.taken.update(needed)
        return None

    def transition(self, change: OrderChange) -> None:
        self.changes.append(change)
        columns: dict[str, Any] = dict(change.columns)
        self.orders[change.order.id] = replace(
            change.order, status=change.target, updated_ms=self.now_ms, **columns
        )

    def write(
        self, recordings: Sequence[_Recording], *, source: EvidenceSource, actor: str
    ) -> list[CompletionResult]:
        """Do the planned writes; the recordings' results, with the ids of their evidence."""
        uow = self.uow
        evidence_ids = uow.evidence.add_all(self.new_evidence, source=source, now_ms=self.now_ms)
        if taken := [e for e in self.new_evidence if e.evidence.bakong_hash not in evidence_ids]:
            # Recorded meanwhile for another order (these are locked, so not for them).
            if source is not EvidenceSource.MARK_PAID:
                raise HashRecordedMeanwhile(taken[0].evidence.short_hash)
            # Staff record one payment, and its evidence is its first write: nothing was written.
            (recording,) = recordings
            return [recording.refused_meanwhile()]
        if self.paid_qrs:
            uow.payments.mark_all_paid(self.paid_qrs, now_ms=self.now_ms)
        for bakong_hash, payment_id in self.links:
            uow.evidence.link_payment(bakong_hash, payment_id)
        if self.taken and (short := uow.products.take_all_stock(self.taken, now_ms=self.now_ms)):
            raise ConcurrentChange(f"the stock of product {short} changed while locked")
        transition_orders(uow, self.changes, actor=actor, now_ms=self.now_ms)
        return [recording.result_with(evidence_ids) for recording in recordings]


@dataclass(slots=True)
class _Recording:
    """One payment of `record_payments`, once its order is locked and its facts are read: its
    decision applied to the batch (`result` without the evidence's id until written)."""

    batch: _Batch
    order: Order
    facts: OrderFacts
    evidence: Evidence | None
    payment: KhqrPayment | None
    source: EvidenceSource
    staff_reason: str | None
    result: CompletionResult | None = None
    adds_evidence: bool = False

    @property
    def now_ms(self) -> int:
        return self.batch.now_ms

    def _result(self, action: Action, status: OrderStatus, reason: str | None) -> CompletionResult:
        return CompletionResult(self.order.id, action, self.order.status, status, reason, None)

    def result_with(self, evidence_ids: Mapping[str, int]) -> CompletionResult:
        assert self.result is not None
        if not self.adds_evidence:
            return self.result
        assert self.evidence is not None
        return replace(self.result, evidence_id=evidence_ids[self.evidence.bakong_hash])

    def refused_meanwhile(self) -> CompletionResult:
        """Staff gave a hash that another transaction recorded for another order meanwhile."""
        assert self.evidence is not None
        owner = self.batch.uow.evidence.order_of_hash(self.evidence.bakong_hash)
        refusal = decide(self.facts, self.evidence, source=self.source, other_order_id=owner)
        return self._result(refusal.action, self.order.status, refusal.reason)

    def apply(self, decision: Decision) -> None:
        order, evidence = self.order, self.evidence
        if decision.action is Action.REFUSED:
            self.result = self._result(Action.REFUSED, order.status, decision.reason)
            return
        is_new = evidence is not None and evidence.bakong_hash not in self.facts.recorded_hashes
        if evidence is not None and is_new:
            self.adds_evidence = True
            self.batch.add_evidence(
                NewEvidence(
                    evidence,
                    order.id,
                    None if self.payment is None else self.payment.id,
                    decision.mismatch,
                )
            )
        self._mark_qr_paid()
        if self.payment is not None and evidence is not None and not is_new:
            self.batch.links.append((evidence.bakong_hash, self.payment.id))
        if decision.action is Action.ALREADY_RECORDED:
            self.result = self._result(Action.ALREADY_RECORDED, order.status, None)
            return

        action, reason = decision.action, decision.reason
        if action is Action.COMPLETE and (shortage := self.batch.take_stock(order.id)):
            action, reason = Action.NEEDS_REVIEW, shortage
        status = status_after(action, order.status)
        self._transition(order, action, status, reason, {})
        self.result = CompletionResult(order.id, action, order.status, status, reason, None)

    def apply_conflict(self, decision: Decision, recorded_for: Order) -> None:
        """Bakong found this order's QR paid by a transfer recorded for `recorded_for`: the QR is
        paid (no more checks), and both orders are flagged for people (no evidence row: the other
        order's row is the record of the money). The same conflict again writes nothing."""
        self._mark_qr_paid()
        if decision.action is not Action.CONFLICT:  # ALREADY_RECORDED: seen before
            self.result = self._result(decision.action, self.order.status, None)
            return
        assert self.evidence is not None  # a conflict is about a transfer
        link = {"paid_order_id": self.order.id, "recorded_order_id": recorded_for.id}
        status = status_after(Action.CONFLICT, self.order.status)
        self._transition(self.order, Action.CONFLICT, status, decision.reason, link)
        self.batch.conflicts[self.order.id].add(self.evidence.bakong_hash)
        other_reason = conflict_reason_for_recorded_order(
            self.evidence,
            qr_md5=None if self.payment is None else self.payment.md5,
            paid_order_id=self.order.id,
        )
        other_status = status_after(Action.CONFLICT, recorded_for.status)
        self._transition(recorded_for, Action.CONFLICT, other_status, other_reason, link)
        self.result = CompletionResult(
            self.order.id,
            Action.CONFLICT,
            self.order.status,
            status,
            decision.reason,
            None,
            other_order_id=recorded_for.id,
        )

    def _mark_qr_paid(self) -> None:
        # Already PAID: nothing to write (the same answer seen again).
        if self.payment is not None and self.payment.status is not PaymentStatus.PAID:
            self.batch.mark_qr_paid(self.payment)

    def _transition(
        self,
        order: Order,
        action: Action,
        status: OrderStatus,
        reason: str | None,
        link: Mapping[str, int],
    ) -> None:
        """Plan `action` on `order`: the status and columns, one audit row, one event."""
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
        self.batch.transition(
            OrderChange(
                order,
                status,
                action=AUDIT_ACTIONS[action],
                reason=self.staff_reason or reason,
                event=self._event(order, action, status, reason, link),
                details={**details, **link},
                columns=self._columns(order, action, status, reason),
            )
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
