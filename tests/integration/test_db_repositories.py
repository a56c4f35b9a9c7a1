"""Repositories on SQLite and PostgreSQL: exact amounts, bounded attempts, the outbox, guards."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from khqrpay.clock import FakeClock
from khqrpay.db import Database, DuplicateHash, UnitOfWork
from khqrpay.orders.model import (
    AttemptOutcome,
    Evidence,
    EvidenceSource,
    OrderStatus,
    PaidTime,
    VerificationAttempt,
)
from khqrpay.services.checkout import CreatedOrder

if TYPE_CHECKING:
    from conftest import Shop


def add_evidence(
    uow: UnitOfWork,
    evidence: Evidence,
    order_id: int,
    *,
    now_ms: int,
    source: EvidenceSource = EvidenceSource.VERIFIER,
    mismatch_reason: str | None = None,
) -> int:
    """Evidence not tied to one of the order's QRs, found by the verifier unless told otherwise."""
    return uow.evidence.add(
        evidence,
        order_id=order_id,
        payment_id=None,
        source=source,
        mismatch_reason=mismatch_reason,
        now_ms=now_ms,
    )


@pytest.mark.parametrize("amount", ["0.01", "1.0", "1.005", "123456789.123456789", "9800", "1E+2"])
def test_evidence_amounts_are_stored_exactly_as_given(
    shop: Shop, database: Database, clock: FakeClock, amount: str
) -> None:
    created = shop.order((shop.product(), 1))
    evidence = shop.evidence(created.payment, amount=Decimal(amount))
    with database.write() as uow:
        add_evidence(uow, evidence, created.order.id, mismatch_reason="test", now_ms=clock.now_ms())
    with database.read() as uow:
        [recorded] = uow.evidence.for_order(created.order.id)
    assert recorded.evidence.amount == Decimal(amount)
    exact = evidence.money()
    assert recorded.amount_minor == (None if exact is None else exact.minor)


def test_evidence_keeps_an_unstated_account_and_where_its_paid_time_comes_from(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    evidence = replace(shop.evidence(created.payment), to_account=None, paid_time=PaidTime.SEEN)
    with database.write() as uow:
        add_evidence(uow, evidence, created.order.id, now_ms=clock.now_ms())
    with database.read() as uow:
        [recorded] = uow.evidence.for_order(created.order.id)
    assert recorded.evidence == evidence


def test_a_hash_is_recorded_once_across_all_orders(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product()
    first, second = shop.order((product, 1)), shop.order((product, 1))
    evidence = shop.evidence(first.payment)
    with database.write() as uow:
        add_evidence(uow, evidence, first.order.id, now_ms=clock.now_ms())
        # The refused insert is undone by its savepoint; the transaction goes on.
        with pytest.raises(DuplicateHash):
            add_evidence(
                uow,
                evidence,
                second.order.id,
                source=EvidenceSource.MARK_PAID,
                now_ms=clock.now_ms(),
            )
        assert uow.evidence.order_of_hash(evidence.bakong_hash) == first.order.id


def test_stock_is_taken_only_when_there_is_enough(shop: Shop, database: Database) -> None:
    product = shop.product(stock=3)
    with database.write() as uow:
        assert uow.products.take_all_stock({product.id: 2}, now_ms=1) is None
        assert uow.products.take_all_stock({product.id: 2}, now_ms=2) == product.id
        assert uow.products.take_all_stock({product.id: 1}, now_ms=3) is None
        assert uow.products.take_all_stock({product.id: 1}, now_ms=4) == product.id
        product_now = uow.products.get(product.id)
    assert product_now is not None
    assert (product_now.stock, product_now.updated_ms) == (0, 3)


def test_status_changes_are_guarded_and_follow_the_state_machine(
    shop: Shop, database: Database
) -> None:
    order_id = shop.order((shop.product(), 1)).order.id
    with database.write() as uow:
        assert not uow.orders.transition(
            order_id, expected=OrderStatus.NEEDS_REVIEW, target=OrderStatus.COMPLETED, now_ms=1
        )
        with pytest.raises(ValueError, match="cannot go from PENDING to REFUNDED"):
            uow.orders.transition(
                order_id, expected=OrderStatus.PENDING, target=OrderStatus.REFUNDED, now_ms=1
            )
        assert uow.orders.transition(
            order_id, expected=OrderStatus.PENDING, target=OrderStatus.CANCELLED, now_ms=2
        )
        assert uow.orders.get(order_id).status is OrderStatus.CANCELLED


def test_attempts_keep_the_last_few_per_payment_and_count_them_all(
    shop: Shop, database: Database
) -> None:
    one, two = shop.order((shop.product(), 1)), shop.order((shop.product(), 1))

    def attempt(created: CreatedOrder, at_ms: int, outcome: AttemptOutcome) -> VerificationAttempt:
        payment = created.payment
        return VerificationAttempt(
            payment_id=payment.id,
            order_id=payment.order_id,
            at_ms=at_ms,
            # Checks someone asked for: every outcome is kept as a row (the verifier's routine
            # not-found is only counted: test_engine_at_scale).
            source=EvidenceSource.VERIFY_INSTANTLY,
            outcome=outcome,
            latency_ms=12,
            detail="list call",
        )

    for batch in range(4):
        attempts = [attempt(one, batch * 10 + n, AttemptOutcome.NOT_FOUND) for n in range(3)] + [
            attempt(two, batch * 10, AttemptOutcome.UNAVAILABLE)
        ]
        with database.write() as uow:
            uow.attempts.record_batch(attempts, keep=5)
    with database.write() as uow:
        uow.attempts.record_batch([attempt(one, 100, AttemptOutcome.PAID)], keep=5)
        uow.attempts.record_batch([], keep=5)

    with database.read() as uow:
        recent_one = uow.attempts.recent(one.payment.id)
        recent_two = uow.attempts.recent(two.payment.id)
        totals_one = uow.attempts.totals(one.payment.id)
        totals_two = uow.attempts.totals(two.payment.id)
    assert [a.at_ms for a in recent_one] == [100, 32, 31, 30, 22]
    assert recent_one[0].outcome is AttemptOutcome.PAID
    assert [a.at_ms for a in recent_two] == [30, 20, 10, 0]
    assert totals_one == {AttemptOutcome.NOT_FOUND: 12, AttemptOutcome.PAID: 1}
    assert totals_two == {AttemptOutcome.UNAVAILABLE: 4}
    with pytest.raises(ValueError, match="at least one"), database.write() as uow:
        uow.attempts.record_batch([attempt(one, 1, AttemptOutcome.PAID)], keep=0)


def test_the_outbox_hands_out_unpublished_events_in_order(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = [shop.order((shop.product(), 1)) for _ in range(3)]
    with database.write() as uow:
        events = uow.outbox.unpublished(10)
        assert [e.order_id for e in events] == [c.order.id for c in created]
        assert [e.payload["order_id"] for e in events] == [c.order.id for c in created]
        uow.outbox.mark_published([events[0].id, events[1].id], now_ms=clock.now_ms())
        # Marking again changes nothing: published once.
        uow.outbox.mark_published([events[0].id], now_ms=clock.now_ms() + 1)
    with database.read() as uow:
        remaining = uow.outbox.unpublished(10)
        assert [e.id for e in remaining] == [events[2].id]
        assert uow.outbox.unpublished(0) == []
