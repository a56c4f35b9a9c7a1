"""Verify Instantly, Check Payment Status, Mark as Paid and watching, against the simulator over
HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest

from khqrpay.db import tables as t
from khqrpay.orders.model import (
    Action,
    AttemptOutcome,
    EvidenceSource,
    OrderNotFound,
    OrderStatus,
    PaymentStatus,
)
from khqrpay.services.manual import ActionRefused, watch_order

if TYPE_CHECKING:
    from conftest import Engine, Shop


async def test_verify_instantly_completes_a_paid_order_at_once(engine: Engine, shop: Shop) -> None:
    product = shop.product(stock=2)
    created = shop.order((product, 2))
    await engine.pay(created.payment.qr)  # paid within a second: before any scheduled check
    result = await engine.actions().verify_instantly(created.order.id, actor="staff:sokha")
    assert (result.previous_status, result.status) == (OrderStatus.PENDING, OrderStatus.COMPLETED)
    (check,) = result.checks
    assert check.outcome is AttemptOutcome.PAID
    assert check.completion is not None
    assert check.completion.action is Action.COMPLETE
    assert engine.stock(product.id) == 0
    with engine.database.read() as uow:
        (evidence,) = uow.evidence.for_order(created.order.id)
        (attempt,) = uow.attempts.recent(created.payment.id)
        completed = [a for a in uow.audit.for_order(created.order.id) if a.action == "completed"]
    assert evidence.source is EvidenceSource.VERIFY_INSTANTLY
    assert attempt.source is EvidenceSource.VERIFY_INSTANTLY
    assert [a.actor for a in completed] == ["staff:sokha"]


async def test_verify_instantly_on_an_unpaid_order_changes_only_its_schedule(
    engine: Engine, shop: Shop
) -> None:
    created = shop.order((shop.product(), 1))
    result = await engine.actions().verify_instantly(created.order.id, actor="staff:sokha")
    assert result.status is OrderStatus.PENDING
    (check,) = result.checks
    assert (check.outcome, check.next_check_ms) == (
        AttemptOutcome.NOT_FOUND,
        engine.clock.now_ms() + 2_000,
    )
    (payment,) = engine.payments(created.order.id)
    assert (payment.status, payment.check_count) == (PaymentStatus.PENDING, 1)


async def test_check_payment_status_reports_bakong_and_changes_nothing(
    engine: Engine, shop: Shop
) -> None:
    created = shop.order((shop.product(), 1))
    engine.clock.advance(seconds=5)
    await engine.faults(service_unavailable=1.0)
    await engine.verifier().run_cycle()  # one attempt: Bakong unavailable (kept as a row)
    await engine.faults()
    transaction = await engine.pay(created.payment.qr)

    report = await engine.actions().check_status(created.order.id)

    (qr,) = report.qrs
    assert qr.outcome is AttemptOutcome.PAID
    assert qr.detail == f"hash {transaction['hash'][:8]}"
    assert [a.outcome for a in report.recent_attempts] == [AttemptOutcome.UNAVAILABLE]
    assert report.order.status is OrderStatus.PENDING
    assert engine.order(created.order.id).status is OrderStatus.PENDING
    assert engine.evidence_count(created.order.id) == 0
    with engine.database.read() as uow:
        assert len(uow.attempts.recent(created.payment.id)) == 1
        (payment,) = uow.payments.for_order(created.order.id)
    assert (payment.status, payment.check_count) == (PaymentStatus.PENDING, 1)


async def test_mark_paid_without_hash_then_the_detected_payment_is_attached(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=3)
    created = shop.order((product, 1))
    result = await engine.actions().mark_paid(
        created.order.id, reason="paid cash at the counter", bakong_hash=None, actor="staff:dara"
    )
    assert (result.completion.action, result.evidence) == (Action.COMPLETE, None)
    order = engine.order(created.order.id)
    assert (order.status, order.paid_manually_without_hash) == (OrderStatus.COMPLETED, True)
    assert engine.stock(product.id) == 2

    # The customer had in fact paid the QR: the verifier finds it; it is the payment staff saw.
    engine.clock.advance(seconds=10)
    await engine.pay(created.payment.qr)
    await engine.worker().run(asyncio.Event(), once=True)
    assert engine.order(created.order.id).status is OrderStatus.COMPLETED
    assert engine.stock(product.id) == 2
    assert engine.evidence_count(created.order.id) == 1
    assert engine.audit_actions(created.order.id)[-1] == "evidence_attached"


@pytest.mark.parametrize("length", [64, 8], ids=["hash", "short-hash"])
async def test_mark_paid_with_a_hash_bakong_confirms(
    engine: Engine, shop: Shop, length: int
) -> None:
    product = shop.product(price="3.00", stock=3)
    created = shop.order((product, 1))
    transaction = await engine.pay(created.payment.qr)
    result = await engine.actions().mark_paid(
        created.order.id,
        reason="customer showed the receipt",
        bakong_hash=transaction["hash"][:length].upper(),
        actor="staff:dara",
    )
    assert result.completion.status is OrderStatus.COMPLETED
    assert result.evidence is not None
    assert result.evidence.bakong_hash == transaction["hash"]
    # The verifier later finds the same transfer by md5: recorded once, QR marked paid.
    engine.clock.advance(seconds=10)
    (record,) = (await engine.verifier().run_cycle()).records
    assert record.completion is not None
    assert record.completion.action is Action.ALREADY_RECORDED
    assert engine.stock(product.id) == 2
    with engine.database.read() as uow:
        (evidence,) = uow.evidence.for_order(created.order.id)
    assert (evidence.source, evidence.payment_id) == (EvidenceSource.MARK_PAID, created.payment.id)
    assert engine.payments(created.order.id)[0].status is PaymentStatus.PAID


async def test_mark_paid_refusals_change_nothing(engine: Engine, shop: Shop) -> None:
    product = shop.product(price="3.00", stock=3)
    created = shop.order((product, 1))
    other = shop.order((product, 1))
    wrong_amount = await engine.pay(created.payment.qr, amount="2.00")
    others_payment = await engine.pay(other.payment.qr)
    engine.clock.advance(seconds=10)
    await engine.verifier().run_cycle()  # completes `other`; `created` goes to review
    fresh = shop.order((product, 1))
    actions = engine.actions()
    refusals = {
        "": ("missing reason", "a reason"),
        "zz": ("malformed", "64 hexadecimal"),
        "ab" * 32: ("unknown hash", "no payment"),
        wrong_amount["hash"]: ("another order's money", "not order"),
        others_payment["hash"]: ("recorded for another order", "already recorded"),
    }
    for given, (case, message) in refusals.items():
        with pytest.raises(ActionRefused, match=message):
            await actions.mark_paid(
                fresh.order.id,
                reason="" if case == "missing reason" else "receipt shown",
                bakong_hash=given or None,
                actor="staff:dara",
            )
    assert engine.order(fresh.order.id).status is OrderStatus.PENDING
    assert engine.evidence_count(fresh.order.id) == 0
    assert engine.audit_actions(fresh.order.id) == ["order_created"]
    assert engine.stock(product.id) == 2  # only `other` took stock
    with pytest.raises(OrderNotFound):
        await actions.verify_instantly(10_000, actor="staff:dara")


async def test_watching_makes_payments_hot_and_pulls_their_next_check_forward(
    engine: Engine, shop: Shop
) -> None:
    created = shop.order((shop.product(), 1))
    verifier = engine.verifier()
    engine.clock.advance(seconds=3600)
    (record,) = (await verifier.run_cycle()).records
    assert record.next_check_ms is not None
    assert record.next_check_ms - engine.clock.now_ms() > 300_000  # an hour old: ~6 min apart

    engine.clock.advance(seconds=30)
    assert (await verifier.run_cycle()).claimed == 0
    policy = verifier.policy
    assert watch_order(engine.database, created.order.id, policy=policy, clock=engine.clock) == 1
    (payment,) = engine.payments(created.order.id)
    assert payment.next_check_ms == engine.clock.now_ms()
    assert payment.hot_until_ms == engine.clock.now_ms() + policy.hot_window_ms
    (record,) = (await verifier.run_cycle()).records
    assert record.next_check_ms == engine.clock.now_ms() + policy.watched_interval_ms  # hot: 1 s
    assert engine.count(t.khqr_payments, t.khqr_payments.c.hot_until_ms.is_not(None)) == 1


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_mark_paid_waiting_for_a_busy_database_does_not_block_the_event_loop(
    engine: Engine, shop: Shop
) -> None:
    """A web app serves many customers on one loop: a staff action waiting for SQLite's write
    lock must leave it free."""
    created = shop.order((shop.product(), 1))
    holding = threading.Event()
    release = threading.Event()

    def hold_the_write_lock() -> None:
        with engine.database.write():
            holding.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    holding.wait(5)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    marking = asyncio.create_task(
        engine.actions().mark_paid(
            created.order.id, reason="receipt shown", bakong_hash=None, actor="staff:sokha"
        )
    )
    await asyncio.sleep(0.5)
    assert not marking.done()  # still waiting for the lock...
    assert ticks >= 20  # ...while the loop keeps running
    release.set()
    result = await marking
    ticker.cancel()
    holder.join(5)
    assert result.completion.status is OrderStatus.COMPLETED
