"""A transfer Bakong reports for one order's QR whose hash staff recorded for another order: both
orders are flagged, the QR is paid and never expires, and the same conflict again writes nothing.
On SQLite and PostgreSQL, through the simulator, the verifier and the completion function."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.db.repositories import OrderRepository
from khqrpay.orders.events import Topic
from khqrpay.orders.model import (
    Action,
    Evidence,
    EvidenceSource,
    KhqrPayment,
    Order,
    OrderStatus,
    PaymentStatus,
)
from khqrpay.services.completion import CompletionResult, HashRecordedMeanwhile, record_payment
from khqrpay.services.expiry import sweep_expired_orders

if TYPE_CHECKING:
    from conftest import Engine, Shop

VERIFIER = EvidenceSource.VERIFIER
INSTANT = EvidenceSource.VERIFY_INSTANTLY
STAFF = EvidenceSource.MARK_PAID


def record(
    database: Database,
    order_id: int,
    evidence: Evidence,
    *,
    clock: FakeClock,
    source: EvidenceSource = VERIFIER,
    payment_id: int | None = None,
) -> CompletionResult:
    with database.write() as uow:
        return record_payment(
            uow,
            order_id=order_id,
            evidence=evidence,
            source=source,
            actor="staff:sok" if source is STAFF else "worker:test",
            reason="customer showed a receipt" if source is STAFF else None,
            payment_id=payment_id,
            now_ms=clock.now_ms(),
        )


def rows_of(database: Database, order_id: int) -> list[int]:
    """How many evidence, audit and outbox rows the order has: what recording a payment adds."""
    with database.read() as uow:
        return [
            int(
                uow.connection.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.c.order_id == order_id)
                ).scalar_one()
            )
            for table in (t.payment_evidence, t.audit_log, t.outbox)
        ]


def order(database: Database, order_id: int) -> Order:
    with database.read() as uow:
        return uow.orders.get(order_id)


async def test_the_verifier_flags_both_orders_and_the_paid_qr_never_expires(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(price="2.00", stock=5)
    a, b = shop.order((product, 1)), shop.order((product, 1))
    transfer = await engine.pay(b.payment.qr)
    short = transfer["hash"][:8]
    # Staff mistake: B's customer's receipt is typed in as A's payment.
    marked = await engine.actions().mark_paid(
        a.order.id, reason="receipt shown", bakong_hash=transfer["hash"], actor="staff:dara"
    )
    assert marked.completion.status is OrderStatus.COMPLETED
    a_rows, b_rows = rows_of(engine.database, a.order.id), rows_of(engine.database, b.order.id)

    engine.clock.advance(seconds=10)
    records = (await engine.verifier().run_cycle()).records
    (found,) = [r for r in records if r.target.payment_id == b.payment.id]

    assert found.completion is not None
    assert (found.completion.action, found.completion.other_order_id) == (
        Action.CONFLICT,
        a.order.id,
    )
    b_reason = (
        f"Bakong payment {short} for QR {b.payment.md5} is already recorded for order {a.order.id}"
    )
    a_reason = (
        f"its recorded Bakong payment {short} was made for QR {b.payment.md5} of order {b.order.id}"
    )
    flagged_b, flagged_a = engine.order(b.order.id), engine.order(a.order.id)
    assert (flagged_b.status, flagged_b.review_reason) == (OrderStatus.NEEDS_REVIEW, b_reason)
    assert not flagged_b.refund_flag
    assert (flagged_a.status, flagged_a.refund_flag, flagged_a.refund_reason) == (
        OrderStatus.COMPLETED,
        True,
        a_reason,
    )
    (b_qr,) = engine.payments(b.order.id)
    assert (b_qr.status, b_qr.next_check_ms, b_qr.lease_owner) == (PaymentStatus.PAID, None, None)
    # No second evidence row: A's row (the hash is unique) stays the record of the money.
    assert engine.evidence_count(b.order.id) == 0
    assert engine.evidence_count(a.order.id) == 1
    assert engine.stock(product.id) == 4  # taken once, by A's completion
    assert rows_of(engine.database, b.order.id) == [b_rows[0], b_rows[1] + 1, b_rows[2] + 1]
    assert rows_of(engine.database, a.order.id) == [a_rows[0], a_rows[1] + 1, a_rows[2] + 1]
    with engine.database.read() as uow:
        b_audit, a_audit = uow.audit.for_order(b.order.id)[-1], uow.audit.for_order(a.order.id)[-1]
        events = {event.order_id: event for event in uow.outbox.unpublished(100)}
    assert (b_audit.action, b_audit.from_status, b_audit.to_status, b_audit.reason) == (
        "payment_conflict",
        OrderStatus.PENDING,
        OrderStatus.NEEDS_REVIEW,
        b_reason,
    )
    assert (a_audit.action, a_audit.to_status, a_audit.reason) == (
        "payment_conflict",
        OrderStatus.COMPLETED,
        a_reason,
    )
    for entry in (b_audit, a_audit):
        assert entry.details["bakong_hash"] == transfer["hash"]
        assert (entry.details["paid_order_id"], entry.details["recorded_order_id"]) == (
            b.order.id,
            a.order.id,
        )
    assert (events[b.order.id].topic, events[b.order.id].payload["to"]) == (
        Topic.ORDER_STATUS_CHANGED,
        "NEEDS_REVIEW",
    )
    assert events[a.order.id].topic == Topic.ORDER_REFUND_FLAGGED
    assert events[a.order.id].payload["reason"] == a_reason

    # Checked again, and long after B's window and final check: nothing changes, B never expires.
    a_rows, b_rows = rows_of(engine.database, a.order.id), rows_of(engine.database, b.order.id)
    verifier = engine.verifier()
    await verifier.run_cycle()
    final_grace_ms = round(engine.settings.schedule_final_grace_s * 1000)
    engine.clock.set(b.order.window_end_ms + final_grace_ms + 60_000)
    await verifier.run_cycle()
    assert (
        sweep_expired_orders(
            engine.database,
            actor="system",
            now_ms=engine.clock.now_ms(),
            final_grace_ms=final_grace_ms,
        )
        == []
    )
    assert engine.order(b.order.id) == flagged_b
    assert engine.order(a.order.id) == flagged_a
    assert engine.payments(b.order.id) == [b_qr]
    assert rows_of(engine.database, b.order.id) == b_rows
    assert rows_of(engine.database, a.order.id) == a_rows


@pytest.mark.parametrize("source", [VERIFIER, INSTANT])
def test_the_same_conflict_again_writes_nothing(
    shop: Shop, database: Database, clock: FakeClock, source: EvidenceSource
) -> None:
    product = shop.product()
    a, b = shop.order((product, 1)), shop.order((product, 1))
    transfer = shop.evidence(b.payment)
    assert record(database, a.order.id, transfer, clock=clock, source=STAFF).completed
    first = record(database, b.order.id, transfer, clock=clock, payment_id=b.payment.id)
    assert first.action is Action.CONFLICT
    settled = [order(database, o.order.id) for o in (a, b)]
    rows = [rows_of(database, o.order.id) for o in (a, b)]
    (paid_qr,) = _payments(database, b.order.id)
    clock.advance(seconds=30)
    for payment_id in (b.payment.id, None):
        again = record(
            database, b.order.id, transfer, clock=clock, source=source, payment_id=payment_id
        )
        assert (again.action, again.status) == (Action.ALREADY_RECORDED, OrderStatus.NEEDS_REVIEW)
    assert [order(database, o.order.id) for o in (a, b)] == settled
    assert [rows_of(database, o.order.id) for o in (a, b)] == rows
    assert _payments(database, b.order.id) == [paid_qr]  # not even the QR's check time moved
    # Staff typing that hash for B is still refused.
    refused = record(database, b.order.id, transfer, clock=clock, source=STAFF)
    assert refused.action is Action.REFUSED
    assert "already recorded for another order" in (refused.reason or "")


def _payments(database: Database, order_id: int) -> list[KhqrPayment]:
    with database.read() as uow:
        return list(uow.payments.for_order(order_id))


@pytest.mark.parametrize(
    ("b_status", "b_after", "b_refund"),
    [
        (OrderStatus.EXPIRED, OrderStatus.NEEDS_REVIEW, False),
        (OrderStatus.CANCELLED, OrderStatus.NEEDS_REVIEW, False),
        (OrderStatus.COMPLETED, OrderStatus.COMPLETED, True),
    ],
)
def test_a_conflict_flags_orders_in_any_state(
    shop: Shop,
    database: Database,
    clock: FakeClock,
    b_status: OrderStatus,
    b_after: OrderStatus,
    b_refund: bool,
) -> None:
    # A is short of stock when staff record the transfer: A is in review, and stays there.
    scarce = shop.product(stock=1)
    a, b = shop.order((scarce, 1)), shop.order((shop.product(price="1.50"), 1))
    with database.write() as uow:
        uow.products.take_all_stock(Counter({scarce.id: 1}), now_ms=clock.now_ms())
    transfer = shop.evidence(b.payment)
    assert record(database, a.order.id, transfer, clock=clock, source=STAFF).action is (
        Action.NEEDS_REVIEW
    )
    if b_status is OrderStatus.COMPLETED:
        # B was paid by its first QR; the transfer staff gave A paid B's second QR.
        assert record(database, b.order.id, shop.evidence(b.payment), clock=clock).completed
        with database.write() as uow:
            qr = uow.payments.add(
                order_id=b.order.id,
                qr=b.payment.qr + "2",
                md5="f" * 32,
                amount=b.payment.amount,
                to_account=b.payment.to_account,
                created_ms=clock.now_ms(),
                expires_ms=b.payment.expires_ms,
                next_check_ms=clock.now_ms(),
                earliest_check_ms=clock.now_ms(),
            )
        payment_id, md5 = qr.id, qr.md5
    else:
        with database.write() as uow:
            uow.orders.transition(
                b.order.id, expected=OrderStatus.PENDING, target=b_status, now_ms=clock.now_ms()
            )
        payment_id, md5 = b.payment.id, b.payment.md5

    result = record(database, b.order.id, transfer, clock=clock, payment_id=payment_id)

    reason = (
        f"Bakong payment {transfer.short_hash} for QR {md5} "
        f"is already recorded for order {a.order.id}"
    )
    assert (result.action, result.previous_status, result.status, result.reason) == (
        Action.CONFLICT,
        b_status,
        b_after,
        reason,
    )
    flagged_b, flagged_a = order(database, b.order.id), order(database, a.order.id)
    assert flagged_b.status is b_after
    if b_refund:
        assert (flagged_b.refund_flag, flagged_b.refund_reason) == (True, reason)
    else:
        assert (flagged_b.refund_flag, flagged_b.review_reason) == (False, reason)
    assert flagged_a.status is OrderStatus.NEEDS_REVIEW
    assert flagged_a.review_reason == (
        f"its recorded Bakong payment {transfer.short_hash} was made for QR {md5} "
        f"of order {b.order.id}"
    )
    assert not flagged_a.refund_flag


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_one_transfer_found_for_two_orders_at_once_never_deadlocks(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    """Each pair's two QRs are reported paid by the same transfer at once (the verifier and
    Verify Instantly): one order completes, the other conflicts with it, whichever locks first;
    pairs cross ids so lock order matters. A hash recorded meanwhile is run again, as the
    verifier does."""
    product = shop.product(stock=100)
    pairs = [(shop.order((product, 1)), shop.order((product, 1))) for _ in range(20)]
    start = threading.Barrier(8)

    def found(qr: KhqrPayment, evidence: Evidence, source: EvidenceSource) -> CompletionResult:
        for _ in range(3):
            try:
                return record(
                    database, qr.order_id, evidence, clock=clock, source=source, payment_id=qr.id
                )
            except HashRecordedMeanwhile:
                continue
        raise AssertionError("still conflicting after three runs")

    jobs = []
    for first, second in pairs:
        evidence = shop.evidence(first.payment)
        jobs += [(first.payment, evidence, VERIFIER), (second.payment, evidence, INSTANT)]

    def lined_up(index: int) -> CompletionResult:
        if index < 8:
            start.wait(timeout=10)
        return found(*jobs[index])

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lined_up, range(len(jobs))))

    assert Counter(r.action for r in results) == {Action.COMPLETE: 20, Action.CONFLICT: 20}
    for first, second in pairs:
        statuses = {order(database, o.order.id).status for o in (first, second)}
        assert statuses == {OrderStatus.COMPLETED, OrderStatus.NEEDS_REVIEW}
    with database.read() as uow:
        evidence_rows = uow.connection.execute(
            sa.select(sa.func.count()).select_from(t.payment_evidence)
        ).scalar_one()
        paid = uow.connection.execute(
            sa.select(sa.func.count())
            .select_from(t.khqr_payments)
            .where(t.khqr_payments.c.status == PaymentStatus.PAID.value)
        ).scalar_one()
    assert (evidence_rows, paid) == (20, 40)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_crossed_conflicts_found_at_once_never_deadlock(
    shop: Shop, database: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Transfer 1 paid A's QR but staff recorded it for B; transfer 2 paid B's QR but was recorded
    for A. Bakong shows both at once: each conflict locks both orders. Each call waits (up to a
    second) after its first locking statement for the other's, so that two calls locking the
    orders in different orders would each hold one and wait for the other: a deadlock."""
    product = shop.product(stock=10)
    a, b = shop.order((product, 1)), shop.order((product, 1))
    to_a, to_b = shop.evidence(a.payment), shop.evidence(b.payment)
    assert record(database, b.order.id, to_a, clock=clock, source=STAFF).action is Action.COMPLETE
    assert record(database, a.order.id, to_b, clock=clock, source=STAFF).action is Action.COMPLETE

    first_locks = threading.Barrier(2)
    holding = threading.local()
    lock_all = OrderRepository.lock_all

    def lock_and_meet(repository: OrderRepository, order_ids: Iterable[int]) -> dict[int, Order]:
        locked = lock_all(repository, order_ids)
        if not getattr(holding, "one", False):
            holding.one = True
            with contextlib.suppress(threading.BrokenBarrierError):
                first_locks.wait(timeout=1)
        return locked

    monkeypatch.setattr(OrderRepository, "lock_all", lock_and_meet)
    jobs = [(a.order.id, to_a, a.payment.id), (b.order.id, to_b, b.payment.id)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda job: record(database, job[0], job[1], clock=clock, payment_id=job[2]), jobs
            )
        )
    assert [result.action for result in results] == [Action.CONFLICT, Action.CONFLICT]
    assert [order(database, o.order.id).refund_flag for o in (a, b)] == [True, True]
