"""The completion function on SQLite and PostgreSQL: every decision path, idempotence, atomicity,
and races between real threads."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.events import Topic
from khqrpay.orders.model import (
    Action,
    Evidence,
    EvidenceSource,
    OrderError,
    OrderNotFound,
    OrderStatus,
    PaymentStatus,
)
from khqrpay.services.checkout import new_qr_for_order
from khqrpay.services.completion import CompletionResult, record_payment
from khqrpay.services.orders import order_details
from khqrpay.settings import Settings

if TYPE_CHECKING:
    from conftest import Shop

VERIFIER = EvidenceSource.VERIFIER
STAFF = EvidenceSource.MARK_PAID


def record(
    database: Database,
    order_id: int,
    evidence: Evidence | None,
    *,
    clock: FakeClock,
    source: EvidenceSource = VERIFIER,
    payment_id: int | None = None,
    actor: str = "worker:test",
    reason: str | None = None,
) -> CompletionResult:
    with database.write() as uow:
        return record_payment(
            uow,
            order_id=order_id,
            evidence=evidence,
            source=source,
            actor=actor,
            reason=reason,
            payment_id=payment_id,
            now_ms=clock.now_ms(),
        )


def count(database: Database, table: sa.Table, *conditions: Any) -> int:
    with database.read() as uow:
        query = sa.select(sa.func.count()).select_from(table).where(*conditions)
        return int(uow.connection.execute(query).scalar_one())


def mark_paid(
    database: Database,
    order_id: int,
    evidence: Evidence | None,
    *,
    clock: FakeClock,
    reason: str,
    actor: str = "staff:sok",
) -> CompletionResult:
    """Staff's Mark as Paid, with or without a Bakong hash."""
    return record(
        database, order_id, evidence, clock=clock, source=STAFF, actor=actor, reason=reason
    )


def ledger_rows(database: Database) -> list[int]:
    """How many evidence, audit and outbox rows there are: what recording a payment adds to."""
    return [count(database, table) for table in (t.payment_evidence, t.audit_log, t.outbox)]


def stock(database: Database, sku: str) -> int:
    with database.read() as uow:
        return uow.products.by_skus([sku])[sku].stock


def test_a_matching_payment_completes_the_order_and_records_everything(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    tea, cake = shop.product(stock=5), shop.product(price="2", stock=2)
    created = shop.order((tea, 2), (cake, 1))
    payment = created.payment
    clock.advance(seconds=30)
    evidence = shop.evidence(payment, amount=Decimal("5.0"))

    result = record(database, created.order.id, evidence, clock=clock, payment_id=payment.id)

    assert result.action is Action.COMPLETE
    assert result.completed
    assert (result.previous_status, result.status) == (OrderStatus.PENDING, OrderStatus.COMPLETED)
    assert (stock(database, tea.sku), stock(database, cake.sku)) == (3, 1)
    with database.read() as uow:
        details = order_details(database, created.order.id)
        events = uow.outbox.unpublished(10)
    order = details.order
    assert order.status is OrderStatus.COMPLETED
    assert order.completed_ms == clock.now_ms()
    assert not order.paid_manually_without_hash
    [recorded] = details.evidence
    assert recorded.id == result.evidence_id
    assert recorded.evidence == evidence  # the amount exactly as Bakong wrote it: 5.0
    assert str(recorded.evidence.amount) == "5.0"
    assert recorded.amount_minor == 500
    assert (recorded.payment_id, recorded.source, recorded.matched) == (payment.id, VERIFIER, True)
    [paid_qr] = details.payments
    assert paid_qr.status is PaymentStatus.PAID
    assert paid_qr.next_check_ms is None
    assert paid_qr.earliest_check_ms is None
    completion = details.audit[-1]
    assert (completion.action, completion.actor) == ("completed", "worker:test")
    assert (completion.from_status, completion.to_status) == (
        OrderStatus.PENDING,
        OrderStatus.COMPLETED,
    )
    assert completion.details["bakong_hash"] == evidence.bakong_hash
    assert events[-1].topic == Topic.ORDER_STATUS_CHANGED
    assert events[-1].payload["to"] == "COMPLETED"
    assert events[-1].payload["short_hash"] == evidence.short_hash


def test_the_same_payment_again_changes_nothing(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=5)
    created = shop.order((product, 1))
    evidence = shop.evidence(created.payment)
    first = record(database, created.order.id, evidence, clock=clock, payment_id=created.payment.id)
    rows = ledger_rows(database)
    for source in EvidenceSource:
        again = record(
            database,
            created.order.id,
            evidence,
            clock=clock,
            source=source,
            payment_id=created.payment.id,
            reason="customer showed the receipt",
        )
        assert again.action is Action.ALREADY_RECORDED
        assert again.status is OrderStatus.COMPLETED
    assert first.completed
    assert ledger_rows(database) == rows
    assert stock(database, product.sku) == 4


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"amount": Decimal("1.49")}, "amount mismatch: expected 1.50 USD, paid 1.49 USD"),
        ({"currency": "KHR", "amount": Decimal(6000)}, "currency or amount not as expected"),
        ({"to_account": "someone@else"}, "paid to account 'someone@else'"),
    ],
)
def test_a_payment_that_does_not_match_goes_to_review_with_the_money_recorded(
    shop: Shop, database: Database, clock: FakeClock, change: dict[str, Any], reason: str
) -> None:
    product = shop.product(stock=5)
    created = shop.order((product, 1))
    evidence = shop.evidence(created.payment, **change)
    result = record(
        database, created.order.id, evidence, clock=clock, payment_id=created.payment.id
    )
    assert result.action is Action.NEEDS_REVIEW
    assert result.reason is not None
    assert reason in result.reason
    details = order_details(database, created.order.id)
    assert details.order.status is OrderStatus.NEEDS_REVIEW
    assert details.order.review_reason == result.reason
    [recorded] = details.evidence
    assert not recorded.matched
    assert recorded.mismatch_reason == result.reason
    assert details.payments[0].status is PaymentStatus.PAID
    assert stock(database, product.sku) == 5


def test_a_payment_after_the_window_goes_to_review(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    late = shop.evidence(created.payment, paid_ms=created.order.window_end_ms + 1)
    result = record(database, created.order.id, late, clock=clock, payment_id=created.payment.id)
    assert (result.action, result.reason) == (
        Action.NEEDS_REVIEW,
        "paid after the payment window ended",
    )


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (OrderStatus.EXPIRED, "paid after the order expired"),
        (OrderStatus.CANCELLED, "paid a cancelled order"),
    ],
)
def test_money_for_an_expired_or_cancelled_order_goes_to_review(
    shop: Shop, database: Database, clock: FakeClock, status: OrderStatus, reason: str
) -> None:
    product = shop.product(stock=1)
    created = shop.order((product, 1))
    with database.write() as uow:
        assert uow.orders.transition(
            created.order.id, expected=OrderStatus.PENDING, target=status, now_ms=clock.now_ms()
        )
    evidence = shop.evidence(created.payment)
    result = record(
        database, created.order.id, evidence, clock=clock, payment_id=created.payment.id
    )
    assert (result.action, result.status, result.reason) == (
        Action.NEEDS_REVIEW,
        OrderStatus.NEEDS_REVIEW,
        reason,
    )
    assert count(database, t.payment_evidence) == 1
    assert stock(database, product.sku) == 1


def test_too_little_stock_takes_none_and_staff_complete_after_restocking(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    plenty, scarce = shop.product(stock=10), shop.product(stock=1)
    created = shop.order((plenty, 3), (scarce, 1))
    rival = shop.order((scarce, 1))
    assert record(database, rival.order.id, shop.evidence(rival.payment), clock=clock).completed

    result = record(database, created.order.id, shop.evidence(created.payment), clock=clock)
    assert result.action is Action.NEEDS_REVIEW
    assert result.reason == f"insufficient stock for {scarce.sku}: 1 needed, 0 left"
    # The decrement of the product that had enough was undone too.
    assert (stock(database, plenty.sku), stock(database, scarce.sku)) == (10, 0)
    assert count(database, t.payment_evidence, t.payment_evidence.c.order_id == created.order.id)

    # Staff completing it while still out of stock: still in review, nothing taken.
    still = mark_paid(
        database,
        created.order.id,
        None,
        clock=clock,
        reason="customer paid, checked the receipt",
        actor="staff:dara",
    )
    assert (still.action, still.status) == (Action.NEEDS_REVIEW, OrderStatus.NEEDS_REVIEW)
    with database.write() as uow:
        uow.connection.execute(
            t.products.update().where(t.products.c.id == scarce.id).values(stock=5)
        )
    done = mark_paid(
        database, created.order.id, None, clock=clock, reason="restocked", actor="staff:dara"
    )
    assert (done.action, done.status) == (Action.COMPLETE, OrderStatus.COMPLETED)
    assert (stock(database, plenty.sku), stock(database, scarce.sku)) == (7, 4)
    details = order_details(database, created.order.id)
    # The order had evidence, so it was not paid "manually without a hash".
    assert not details.order.paid_manually_without_hash
    assert details.order.review_reason is None
    assert [(e.action, e.actor, e.reason) for e in details.audit[1:]] == [
        ("needs_review", "worker:test", result.reason),
        ("needs_review", "staff:dara", "customer paid, checked the receipt"),
        ("completed", "staff:dara", "restocked"),
    ]


def test_a_second_paid_qr_flags_the_order_for_refund(
    shop: Shop, database: Database, settings: Settings, clock: FakeClock
) -> None:
    product = shop.product(stock=5)
    created = shop.order((product, 1))
    second_qr = new_qr_for_order(
        database, order_id=created.order.id, settings=settings, clock=clock
    )
    first = shop.evidence(created.payment)
    second = shop.evidence(second_qr)
    assert record(
        database, created.order.id, first, clock=clock, payment_id=created.payment.id
    ).completed
    result = record(database, created.order.id, second, clock=clock, payment_id=second_qr.id)
    assert (result.action, result.status) == (Action.FLAG_REFUND, OrderStatus.COMPLETED)
    with database.read() as uow:
        details = order_details(database, created.order.id)
        events = uow.outbox.unpublished(10)
    assert details.order.refund_flag
    assert details.order.refund_reason == result.reason
    assert first.short_hash in (result.reason or "")
    assert {e.evidence.bakong_hash for e in details.evidence} == {
        first.bakong_hash,
        second.bakong_hash,
    }
    assert [p.status for p in details.payments] == [PaymentStatus.PAID, PaymentStatus.PAID]
    assert events[-1].topic == Topic.ORDER_REFUND_FLAGGED
    assert stock(database, product.sku) == 4


def test_a_later_detection_of_a_manually_paid_order_attaches_its_evidence_only(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=5)
    created = shop.order((product, 1))
    manual = mark_paid(database, created.order.id, None, clock=clock, reason="paid at the counter")
    assert manual.completed
    detected = shop.evidence(created.payment)
    attached = record(
        database, created.order.id, detected, clock=clock, payment_id=created.payment.id
    )
    assert (attached.action, attached.status) == (
        Action.ATTACH_EVIDENCE_ONLY,
        OrderStatus.COMPLETED,
    )
    another = record(database, created.order.id, shop.evidence(created.payment), clock=clock)
    assert another.action is Action.FLAG_REFUND
    with database.read() as uow:
        details = order_details(database, created.order.id)
        topics = [event.topic for event in uow.outbox.unpublished(10)]
    assert details.order.paid_manually_without_hash
    assert details.order.refund_flag
    assert len(details.evidence) == 2
    assert stock(database, product.sku) == 4  # taken once, by the manual completion
    assert [e.action for e in details.audit] == [
        "order_created",
        "completed",
        "evidence_attached",
        "refund_flagged",
    ]
    assert topics[-2:] == [Topic.ORDER_EVIDENCE_ATTACHED, Topic.ORDER_REFUND_FLAGGED]


def test_a_staff_hash_is_linked_to_its_qr_when_the_verifier_finds_it(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    evidence = shop.evidence(created.payment)
    staff = mark_paid(
        database, created.order.id, evidence, clock=clock, reason="customer gave the hash"
    )
    assert staff.completed
    found = record(database, created.order.id, evidence, clock=clock, payment_id=created.payment.id)
    assert found.action is Action.ALREADY_RECORDED
    details = order_details(database, created.order.id)
    assert details.evidence[0].payment_id == created.payment.id
    assert details.evidence[0].source is STAFF
    assert details.payments[0].status is PaymentStatus.PAID


def test_a_hash_recorded_for_another_order_is_refused(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product()
    mine, theirs = shop.order((product, 1)), shop.order((product, 1))
    evidence = shop.evidence(theirs.payment)
    assert record(database, theirs.order.id, evidence, clock=clock).completed
    rows = ledger_rows(database)
    result = mark_paid(database, mine.order.id, evidence, clock=clock, reason="wrong order")
    assert (result.action, result.status) == (Action.REFUSED, OrderStatus.PENDING)
    assert "already recorded for another order" in (result.reason or "")
    assert ledger_rows(database) == rows


def test_marking_a_completed_order_paid_without_a_hash_is_refused(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    assert record(database, created.order.id, shop.evidence(created.payment), clock=clock).completed
    result = mark_paid(database, created.order.id, None, clock=clock, reason="again")
    assert (result.action, result.reason) == (
        Action.REFUSED,
        "a COMPLETED order cannot be marked paid",
    )


def test_bad_requests_are_refused_before_anything_is_written(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    created, other = shop.order((shop.product(), 1)), shop.order((shop.product(), 1))
    evidence = shop.evidence(created.payment)
    with pytest.raises(OrderError, match="needs a reason"):
        record(database, created.order.id, None, clock=clock, source=STAFF, reason="  ")
    with pytest.raises(OrderError, match="only Mark as Paid"):
        record(database, created.order.id, None, clock=clock)
    with pytest.raises(OrderError, match="only with Bakong evidence"):
        record(
            database,
            created.order.id,
            None,
            clock=clock,
            source=STAFF,
            reason="r",
            payment_id=created.payment.id,
        )
    with pytest.raises(OrderError, match="is not a QR of order"):
        record(database, created.order.id, evidence, clock=clock, payment_id=other.payment.id)
    with pytest.raises(OrderError, match="actor"):
        record(database, created.order.id, evidence, clock=clock, actor="anonymous")
    with pytest.raises(OrderError, match="at most 500"):
        record(database, created.order.id, evidence, clock=clock, source=STAFF, reason="x" * 501)
    with pytest.raises(OrderNotFound):
        record(database, 10_000, evidence, clock=clock)
    assert count(database, t.payment_evidence) == 0


def test_a_failure_midway_leaves_no_trace(
    shop: Shop, database: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Status, stock, evidence, payment, audit and outbox commit together or not at all."""
    from khqrpay.db.repositories import OutboxRepository

    product = shop.product(stock=3)
    created = shop.order((product, 1))
    before = ledger_rows(database)

    def broken_outbox(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(OutboxRepository, "add_events", broken_outbox)
    with pytest.raises(RuntimeError, match="disk is full"):
        record(
            database,
            created.order.id,
            shop.evidence(created.payment),
            clock=clock,
            payment_id=created.payment.id,
        )
    monkeypatch.undo()
    details = order_details(database, created.order.id)
    assert details.order.status is OrderStatus.PENDING
    assert details.payments[0].status is PaymentStatus.PENDING
    assert stock(database, product.sku) == 3
    assert ledger_rows(database) == before


# -- races between real threads -------------------------------------------------------------------


def _in_threads(jobs: list[Any], threads: int) -> list[CompletionResult]:
    """Run the jobs on `threads` threads, the first of them released together."""
    start = threading.Barrier(threads)

    def lined_up(job: Any) -> CompletionResult:
        with contextlib.suppress(threading.BrokenBarrierError):
            start.wait(timeout=10)
        return job()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(lined_up, job) for job in jobs[:threads]]
        futures += [pool.submit(job) for job in jobs[threads:]]
        return [future.result(timeout=60) for future in futures]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_100_paid_orders_for_10_in_stock_complete_exactly_10(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=10)
    orders = [shop.order((product, 1)) for _ in range(100)]
    jobs = [
        (
            lambda o=o: record(
                database, o.order.id, shop.evidence(o.payment), clock=clock, payment_id=o.payment.id
            )
        )
        for o in orders
    ]
    results = _in_threads(jobs, threads=8)
    assert Counter(r.action for r in results) == {Action.COMPLETE: 10, Action.NEEDS_REVIEW: 90}
    assert stock(database, product.sku) == 0
    assert count(database, t.orders, t.orders.c.status == "COMPLETED") == 10
    assert count(database, t.orders, t.orders.c.status == "NEEDS_REVIEW") == 90
    assert count(database, t.payment_evidence) == 100  # every payment recorded


@pytest.mark.parametrize(
    ("database_url", "orders_count"),
    [("sqlite", 20), pytest.param("postgresql", 60, marks=pytest.mark.postgres)],
    indirect=["database_url"],
)
def test_eight_threads_completing_the_same_orders_complete_each_once(
    shop: Shop, database: Database, clock: FakeClock, orders_count: int
) -> None:
    product = shop.product(stock=orders_count * 2)
    orders = [shop.order((product, 2)) for _ in range(orders_count)]
    evidence = {o.order.id: shop.evidence(o.payment) for o in orders}
    jobs = []
    for thread in range(8):
        for o in orders:
            # Half the threads are the verifier (with the QR), half Verify Instantly (without).
            jobs.append(
                lambda o=o, thread=thread: record(
                    database,
                    o.order.id,
                    evidence[o.order.id],
                    clock=clock,
                    source=EvidenceSource.VERIFY_INSTANTLY if thread % 2 else VERIFIER,
                    payment_id=None if thread % 2 else o.payment.id,
                )
            )
    results = _in_threads(jobs, threads=8)
    actions = Counter(r.action for r in results)
    assert actions == {Action.COMPLETE: orders_count, Action.ALREADY_RECORDED: 7 * orders_count}
    assert stock(database, product.sku) == 0
    assert count(database, t.payment_evidence) == orders_count
    assert count(database, t.audit_log, t.audit_log.c.action == "completed") == orders_count
    assert count(database, t.outbox, t.outbox.c.topic == Topic.ORDER_STATUS_CHANGED) == orders_count
    assert count(database, t.khqr_payments, t.khqr_payments.c.status == "PAID") == orders_count


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_one_hash_claimed_by_two_orders_at_once_goes_to_one(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=100)
    pairs = [(shop.order((product, 1)), shop.order((product, 1))) for _ in range(20)]
    jobs = []
    for first, second in pairs:
        evidence = shop.evidence(first.payment)
        for created in (first, second):
            jobs.append(
                lambda created=created, evidence=evidence: mark_paid(
                    database,
                    created.order.id,
                    evidence,
                    clock=clock,
                    reason="customer gave the hash",
                )
            )
    results = _in_threads(jobs, threads=8)
    assert Counter(r.action for r in results) == {Action.COMPLETE: 20, Action.REFUSED: 20}
    assert count(database, t.payment_evidence) == 20
    assert stock(database, product.sku) == 80
