"""The whole flow over HTTP against the simulator, on SQLite and PostgreSQL, with a FakeClock:
checkout → pay in the simulated banking app → the worker's cycle → the order's fate."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import REGISTRY

from khqrpay.db import tables as t
from khqrpay.events import Event
from khqrpay.orders.model import AttemptOutcome, EvidenceSource, OrderStatus, PaymentStatus
from khqrpay.services.checkout import new_qr_for_order
from khqrpay.services.customers import watch

if TYPE_CHECKING:
    from conftest import Engine, Shop


def _checks(outcome: str) -> float:
    return REGISTRY.get_sample_value("khqrpay_verifier_checks_total", {"outcome": outcome}) or 0.0


async def test_a_paid_order_is_completed_by_the_worker_and_announced(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(price="2.50", stock=5)
    created = shop.order((product, 2))
    engine.clock.advance(seconds=20)
    transaction = await engine.pay(created.payment.qr)
    paid_before = _checks("paid")

    async with engine.bus.subscribe() as events:
        await engine.worker().run(asyncio.Event(), once=True)
        received: list[Event] = []
        while not any(e.topic == "order.status_changed" for e in received):
            received.append(await asyncio.wait_for(anext(events), 5))

    order = engine.order(created.order.id)
    assert order.status is OrderStatus.COMPLETED
    assert engine.stock(product.id) == 3
    with engine.database.read() as uow:
        (evidence,) = uow.evidence.for_order(order.id)
        audit = uow.audit.for_order(order.id)
        (attempt,) = uow.attempts.recent(created.payment.id)
    assert evidence.evidence.bakong_hash == transaction["hash"]
    assert evidence.evidence.amount == Decimal("5.00")
    assert evidence.source is EvidenceSource.VERIFIER
    assert evidence.payment_id == created.payment.id
    completed = [entry for entry in audit if entry.action == "completed"]
    assert [entry.actor for entry in completed] == ["worker:test-worker"]
    assert attempt.outcome is AttemptOutcome.PAID
    (payment,) = engine.payments(order.id)
    assert (payment.status, payment.next_check_ms, payment.lease_owner) == (
        PaymentStatus.PAID,
        None,
        None,
    )
    # The check that found the money is counted on the QR too.
    assert (payment.check_count, payment.last_outcome) == (1, AttemptOutcome.PAID)
    # Every outbox row was relayed, and the bus carried the completion.
    assert engine.count(t.outbox, t.outbox.c.published_ms.is_(None)) == 0
    change = next(e for e in received if e.topic == "order.status_changed")
    assert (change.order_id, change.payload["to"]) == (order.id, "COMPLETED")
    assert change.outbox_id is not None
    assert _checks("paid") == paid_before + 1


async def test_nothing_is_checked_before_the_initial_delay(engine: Engine, shop: Shop) -> None:
    created = shop.order((shop.product(), 1))
    await engine.pay(created.payment.qr)
    engine.clock.advance(seconds=4)
    report = await engine.verifier().run_cycle()
    assert report.claimed == 0
    assert engine.order(created.order.id).status is OrderStatus.PENDING
    engine.clock.advance(seconds=1)
    report = await engine.verifier().run_cycle()
    assert report.claimed == 1
    assert engine.order(created.order.id).status is OrderStatus.COMPLETED


async def test_an_unpaid_qr_is_rescheduled_by_the_age_aware_schedule(
    engine: Engine, shop: Shop
) -> None:
    created = shop.order((shop.product(), 1))
    verifier = engine.verifier()
    engine.clock.advance(seconds=5)
    report = await verifier.run_cycle()
    (record,) = report.records
    assert record.outcome is AttemptOutcome.NOT_FOUND
    assert record.next_check_ms == engine.clock.now_ms() + 2_000  # fresh: every 2 s
    (payment,) = engine.payments(created.order.id)
    assert (payment.check_count, payment.lease_owner) == (1, None)
    # An hour old: the interval has grown with age (0.1 × age = 6 minutes).
    engine.clock.advance(seconds=3600)
    (record,) = (await verifier.run_cycle()).records
    assert record.next_check_ms == engine.clock.now_ms() + 360_500
    assert (await verifier.run_cycle()).claimed == 0  # not due again yet


async def test_a_wrong_amount_goes_to_review_with_the_money_recorded(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(price="2.50", stock=5)
    created = shop.order((product, 1))
    engine.clock.advance(seconds=10)
    await engine.pay(created.payment.qr, amount="2.00")
    await engine.worker().run(asyncio.Event(), once=True)
    order = engine.order(created.order.id)
    assert order.status is OrderStatus.NEEDS_REVIEW
    assert order.review_reason is not None
    assert "amount" in order.review_reason
    assert engine.stock(product.id) == 5  # no stock for money that does not match
    with engine.database.read() as uow:
        (evidence,) = uow.evidence.for_order(order.id)
    assert (evidence.evidence.amount, evidence.matched) == (Decimal("2.00"), False)


async def test_a_screenshot_of_an_older_qr_is_detected(engine: Engine, shop: Shop) -> None:
    created = shop.order((shop.product(), 1))
    engine.clock.advance(seconds=30)
    newer = new_qr_for_order(
        engine.database, order_id=created.order.id, settings=engine.settings, clock=engine.clock
    )
    engine.clock.advance(seconds=10)
    await engine.pay(created.payment.qr)  # the old code, from a screenshot
    await engine.worker().run(asyncio.Event(), once=True)
    assert engine.order(created.order.id).status is OrderStatus.COMPLETED
    statuses = {p.id: p.status for p in engine.payments(created.order.id)}
    assert statuses == {created.payment.id: PaymentStatus.PAID, newer.id: PaymentStatus.PENDING}


async def test_an_order_nobody_pays_expires_after_the_final_check_only(
    engine: Engine, shop: Shop
) -> None:
    created = shop.order((shop.product(), 1))
    window_end_ms = created.order.window_end_ms
    final_check_ms = window_end_ms + round(engine.settings.schedule_final_grace_s * 1000)
    verifier = engine.verifier()
    # The last regular check, just before the window ends, schedules the final check.
    engine.clock.set(window_end_ms - 1_000)
    (record,) = (await verifier.run_cycle()).records
    assert record.next_check_ms == final_check_ms
    assert engine.order(created.order.id).status is OrderStatus.PENDING
    engine.clock.set(final_check_ms - 1)
    assert (await verifier.run_cycle()).claimed == 0
    engine.clock.set(final_check_ms)
    (record,) = (await verifier.run_cycle()).records
    assert (record.outcome, record.next_check_ms) == (AttemptOutcome.NOT_FOUND, None), record
    assert (record.payment_expired, record.order_expired) == (True, True)
    order = engine.order(created.order.id)
    assert order.status is OrderStatus.EXPIRED
    assert engine.audit_actions(order.id)[-1] == "expired"
    (payment,) = engine.payments(order.id)
    assert (payment.status, payment.next_check_ms) == (PaymentStatus.EXPIRED, None)
    expiry = t.outbox.c
    assert engine.count(t.outbox, expiry.order_id == order.id, expiry.payload.is_not(None)) == 2


async def test_a_payment_settling_in_the_final_grace_still_completes(
    engine: Engine, shop: Shop
) -> None:
    created = shop.order((shop.product(), 1))
    window_end_ms = created.order.window_end_ms
    engine.clock.set(window_end_ms - 1_000)
    verifier = engine.verifier()
    await verifier.run_cycle()  # not found: the final check is scheduled
    # Paid one second before the end; Bakong shows it 30 s later, before the final check.
    await engine.pay(created.payment.qr, delay_s=30)
    engine.clock.set(window_end_ms + round(engine.settings.schedule_final_grace_s * 1000))
    await verifier.run_cycle()
    assert engine.order(created.order.id).status is OrderStatus.COMPLETED


async def test_a_payment_seen_after_the_window_goes_to_review(engine: Engine, shop: Shop) -> None:
    product = shop.product(stock=3)
    created = shop.order((product, 1))
    window_end_ms = created.order.window_end_ms
    engine.clock.set(window_end_ms - 1_000)
    verifier = engine.verifier()
    await verifier.run_cycle()
    # Bakong shows this payment only long after the window and its final check.
    transaction = await engine.pay(created.payment.qr, delay_s=3600)
    engine.clock.set(window_end_ms + 120_000)
    await verifier.run_cycle()
    assert engine.order(created.order.id).status is OrderStatus.EXPIRED
    # The customer shows the receipt; staff enter its hash, which Bakong now confirms.
    engine.clock.advance(seconds=3600)
    result = await engine.actions().mark_paid(
        created.order.id,
        reason="customer showed the receipt",
        bakong_hash=transaction["hash"],
        actor="staff:dara",
    )
    order = engine.order(created.order.id)
    assert (result.completion.status, order.status) == (OrderStatus.NEEDS_REVIEW,) * 2
    assert order.review_reason == "paid after the order expired"
    assert engine.evidence_count(order.id) == 1
    assert engine.stock(product.id) == 3


async def test_completed_orders_are_counted_once_however_often_bakong_is_asked(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=10)
    created = shop.order((product, 4))
    engine.clock.advance(seconds=10)
    await engine.pay(created.payment.qr)
    # Two workers whose leases both lapse check the same payment: it is recorded once.
    first, second = engine.verifier("one"), engine.verifier("two")
    await first.run_cycle()
    with engine.database.write() as uow:
        uow.connection.execute(
            t.khqr_payments.update().values(
                status=PaymentStatus.PENDING.value,
                next_check_ms=engine.clock.now_ms(),
                earliest_check_ms=engine.clock.now_ms(),
            )
        )
    (record,) = (await second.run_cycle()).records
    assert record.completion is not None
    assert record.completion.action.value == "ALREADY_RECORDED"
    assert engine.stock(product.id) == 6
    assert engine.evidence_count(created.order.id) == 1
    assert engine.audit_actions(created.order.id).count("completed") == 1
    with engine.database.read() as uow:
        totals = uow.attempts.totals(created.payment.id)
    assert totals == {AttemptOutcome.PAID: 2}
    assert engine.count(t.orders, t.orders.c.status == sa.literal("COMPLETED")) == 1


async def test_the_sweep_expires_an_order_left_pending_without_a_pending_qr(
    engine: Engine, shop: Shop
) -> None:
    # The verifier expired the QR but stopped before expiring the order (two transactions).
    stranded = shop.order((shop.product(), 1))
    within_window = shop.order((shop.product(), 1))
    with engine.database.write() as uow:
        uow.connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.order_id.in_([stranded.order.id, within_window.order.id]))
            .values(status=PaymentStatus.EXPIRED.value, next_check_ms=None, earliest_check_ms=None)
        )
    still_checked = shop.order((shop.product(), 1))
    engine.clock.set(stranded.order.window_end_ms - 1)
    await engine.worker().run(asyncio.Event(), once=True)
    assert engine.order(stranded.order.id).status is OrderStatus.PENDING  # window not over

    engine.clock.set(stranded.order.window_end_ms + 60_000)
    with engine.database.write() as uow:  # this one still has a QR to check: not the sweep's
        uow.connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.order_id == still_checked.order.id)
            .values(next_check_ms=engine.clock.now_ms() + 10**9)
        )
    await engine.worker().run(asyncio.Event(), once=True)
    assert engine.order(stranded.order.id).status is OrderStatus.EXPIRED
    assert engine.order(within_window.order.id).status is OrderStatus.EXPIRED
    assert engine.order(still_checked.order.id).status is OrderStatus.PENDING
    assert engine.audit_actions(stranded.order.id) == ["order_created", "expired"]


async def test_an_old_payment_rides_along_a_call_made_anyway_and_keeps_its_schedule(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=5)
    old = shop.order((product, 1))
    engine.clock.advance(seconds=2 * 3600)  # checked every 12 minutes at this age
    await engine.verifier().run_cycle()
    (before,) = engine.payments(old.order.id)
    assert before.next_check_ms is not None
    assert before.earliest_check_ms is not None
    engine.clock.advance(seconds=61)  # checked more than a minute ago, not yet early
    assert engine.clock.now_ms() < before.earliest_check_ms
    fresh = shop.order((product, 1))
    engine.clock.advance(seconds=5)  # the fresh order's first check is due: a call is made
    await engine.pay(old.payment.qr)
    report = await engine.verifier().run_cycle()
    assert report.batch_sizes == (2,)
    assert engine.order(old.order.id).status is OrderStatus.COMPLETED  # found by the ride-along
    (unpaid,) = engine.payments(fresh.order.id)
    assert unpaid.check_count == 1

    other = shop.order((product, 1))
    engine.clock.advance(seconds=2 * 3600)
    await engine.verifier().run_cycle()
    (checked,) = engine.payments(other.order.id)
    engine.clock.advance(seconds=61)
    shop.order((product, 1))
    engine.clock.advance(seconds=5)
    await engine.verifier().run_cycle()
    (rode,) = engine.payments(other.order.id)
    assert (rode.next_check_ms, rode.earliest_check_ms) == (
        checked.next_check_ms,
        checked.earliest_check_ms,
    )
    assert rode.check_count == checked.check_count + 1
    assert rode.last_checked_ms == engine.clock.now_ms()


async def test_an_old_unwatched_payment_is_swept_within_the_sweep_interval(
    engine: Engine, shop: Shop
) -> None:
    """Nothing due and nobody watching: once the longest-unchecked QR has waited the sweep
    interval, one call carries the pending QRs, as ride-alongs (their schedule stays as it is)."""
    product = shop.product(stock=5)
    paid, unpaid = shop.order((product, 1)), shop.order((product, 1))
    engine.clock.advance(seconds=2 * 3600)  # checked every 12 minutes at this age
    verifier = engine.verifier()
    assert (await verifier.run_cycle()).batch_sizes == (2,)
    (before,) = engine.payments(unpaid.order.id)
    await engine.pay(paid.payment.qr)
    sweep_s = round(engine.settings.schedule_sweep_interval_s)
    engine.clock.advance(seconds=sweep_s - 1)
    assert (await verifier.run_cycle()).claimed == 0  # nothing due, no sweep yet
    engine.clock.advance(seconds=1)
    assert (await verifier.run_cycle()).batch_sizes == (2,)
    assert engine.order(paid.order.id).status is OrderStatus.COMPLETED
    (after,) = engine.payments(unpaid.order.id)
    assert (after.next_check_ms, after.earliest_check_ms) == (
        before.next_check_ms,
        before.earliest_check_ms,
    )
    assert (after.check_count, after.last_checked_ms) == (
        before.check_count + 1,
        engine.clock.now_ms(),
    )
    assert (await verifier.run_cycle()).claimed == 0  # just swept


async def test_the_sweep_makes_no_call_while_a_watched_qrs_calls_carry_every_payment(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=5)
    old = shop.order((product, 1))
    engine.clock.advance(seconds=2 * 3600)
    verifier = engine.verifier()
    await verifier.run_cycle()
    watched = shop.order((product, 1))
    watch(engine.database, watched.order.id, policy=verifier.policy, clock=engine.clock)
    engine.clock.advance(seconds=5)
    sweep_s = round(engine.settings.schedule_sweep_interval_s)
    seconds = 3 * sweep_s
    for _ in range(seconds):
        report = await verifier.run_cycle()
        # Exactly the watched QR's call, every second; the old QR rides along in it.
        assert report.batch_sizes in {(1,), (2,)}
        assert watched.payment.id in {record.target.payment_id for record in report.records}
        engine.clock.advance(seconds=1)
    (payment,) = engine.payments(old.order.id)
    assert payment.last_checked_ms is not None
    assert engine.clock.now_ms() - payment.last_checked_ms < sweep_s * 1000
    # Once a minute (`schedule_ride_along_after_s`), in a call made anyway.
    ride_along_s = engine.settings.schedule_ride_along_after_s
    assert payment.check_count >= 1 + seconds // (ride_along_s + 1)
