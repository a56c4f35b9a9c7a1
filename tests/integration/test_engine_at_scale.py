"""The engine at scale (issue 9 §2, §3), on SQLite and PostgreSQL: the answers of a call applied
in one transaction with a savepoint per payment, the set-based reschedule, which attempts are
kept as rows, the pending-by-age gauge by range counts, and one worker at a time sweeping."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import sqlalchemy as sa

from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.events import Topic
from khqrpay.orders.model import (
    AttemptOutcome,
    EvidenceSource,
    OrderStatus,
    PaymentStatus,
    VerificationAttempt,
)
from khqrpay.orders.schedule import NextCheck

if TYPE_CHECKING:
    from conftest import Engine, Shop

BATCH = 50


def _refuse_audit_rows_of(database: Database, order_id: int) -> None:
    """From now on the database refuses the audit row of one order: a completion of it fails
    after its evidence, stock and QR writes were made."""
    with database.write() as uow:
        if uow.backend == "sqlite":
            uow.connection.exec_driver_sql(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                f"WHEN NEW.order_id = {order_id} BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
        else:
            uow.connection.exec_driver_sql(
                "CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.order_id = {order_id} THEN RAISE EXCEPTION 'refused'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            uow.connection.exec_driver_sql(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
            )


def _allow_audit_rows(database: Database) -> None:
    with database.write() as uow:
        uow.connection.exec_driver_sql(
            "DROP TRIGGER refuse_audit" + ("" if uow.backend == "sqlite" else " ON audit_log")
        )


async def test_one_order_failing_in_a_batch_of_50_does_not_lose_the_others(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=BATCH + 10)
    orders = [shop.order((product, 1)) for _ in range(BATCH)]
    for created in orders:
        await engine.pay(created.payment.qr)
    engine.clock.advance(seconds=10)
    failing = orders[17]
    _refuse_audit_rows_of(engine.database, failing.order.id)

    report = await engine.verifier().run_cycle()

    assert report.batch_sizes == (BATCH,)  # one Bakong call, one transaction
    others = [created for created in orders if created is not failing]
    assert {engine.order(c.order.id).status for c in others} == {OrderStatus.COMPLETED}
    assert engine.count(t.audit_log, t.audit_log.c.action == "completed") == BATCH - 1
    changed = t.outbox.c.topic == Topic.ORDER_STATUS_CHANGED.value
    assert engine.count(t.outbox, changed) == BATCH - 1
    assert engine.stock(product.id) == 10 + 1  # exactly the 49 taken
    # The failing one rolled back alone: no evidence, no stock, its QR pending, rescheduled
    # and released, to be asked again.
    assert engine.order(failing.order.id).status is OrderStatus.PENDING
    assert engine.evidence_count(failing.order.id) == 0
    (payment,) = engine.payments(failing.order.id)
    assert payment.status is PaymentStatus.PENDING
    assert payment.lease_owner is None
    assert payment.next_check_ms is not None
    assert payment.next_check_ms > engine.clock.now_ms()
    assert engine.count(t.khqr_payments, t.khqr_payments.c.lease_owner.is_not(None)) == 0

    _allow_audit_rows(engine.database)
    engine.clock.set(payment.next_check_ms)
    (record,) = (await engine.verifier().run_cycle()).records
    assert record.completion is not None
    assert record.completion.completed
    assert engine.stock(product.id) == 10
    assert engine.count(t.audit_log, t.audit_log.c.action == "completed") == BATCH


def test_the_set_based_reschedule_writes_what_one_update_per_qr_writes(
    database: Database, shop: Shop
) -> None:
    product = shop.product(stock=20)
    one_by_one = [shop.order((product, 1)).payment.id for _ in range(6)]
    set_based = [shop.order((product, 1)).payment.id for _ in range(6)]
    now = 1_000_000
    plans: list[tuple[AttemptOutcome, NextCheck | None, str]] = [
        (AttemptOutcome.NOT_FOUND, None, "w1"),  # a ride-along: schedule kept
        (AttemptOutcome.NOT_FOUND, NextCheck(now + 2_000, now + 1_000, 0), "w1"),
        (AttemptOutcome.UNAVAILABLE, NextCheck(now + 8_000, now + 8_000, 3), "w1"),
        (AttemptOutcome.NOT_FOUND, NextCheck(None, None, 0), "w1"),  # the final check
        (AttemptOutcome.NOT_FOUND, NextCheck(None, None, 0), "w2"),  # another's lease now
        (AttemptOutcome.NOT_FOUND, NextCheck(now + 5_000, now + 4_000, 0), "w2"),
    ]
    with database.write() as uow:
        for ids in (one_by_one, set_based):
            for payment_id, (_, _, owner) in zip(ids, plans, strict=True):
                uow.payments.lease([payment_id], owner=owner, until_ms=now + 60_000)
        single = [
            uow.payments.record_check(
                payment_id, checked_ms=now, outcome=outcome, next_check=plan, lease_owner="w1"
            )
            for payment_id, (outcome, plan, _) in zip(one_by_one, plans, strict=True)
        ]
        expired = uow.payments.record_checks(
            [
                (payment_id, outcome, plan)
                for payment_id, (outcome, plan, _) in zip(set_based, plans, strict=True)
            ],
            checked_ms=now,
            lease_owner="w1",
        )
        rows = {
            row.id: row
            for row in uow.connection.execute(
                sa.select(t.khqr_payments).where(t.khqr_payments.c.id.in_(one_by_one + set_based))
            )
        }
    assert single == [True, True, True, True, False, False]
    assert expired == {set_based[3]}
    written = (
        "status",
        "next_check_ms",
        "earliest_check_ms",
        "consecutive_errors",
        "lease_owner",
        "lease_until_ms",
        "check_count",
        "last_checked_ms",
        "last_outcome",
    )
    for a, b in zip(one_by_one, set_based, strict=True):
        assert [getattr(rows[a], c) for c in written] == [getattr(rows[b], c) for c in written]
    assert rows[set_based[3]].status == PaymentStatus.EXPIRED.value
    assert rows[set_based[2]].consecutive_errors == 3
    assert rows[set_based[4]].lease_owner == "w2"  # not w1's: untouched


def test_routine_checks_are_counted_and_the_rest_kept_as_rows(
    database: Database, shop: Shop
) -> None:
    created = shop.order((shop.product(), 1))
    payment_id, order_id = created.payment.id, created.order.id

    def attempt(at_ms: int, source: EvidenceSource, outcome: AttemptOutcome) -> VerificationAttempt:
        return VerificationAttempt(payment_id, order_id, at_ms, source, outcome)

    with database.write() as uow:
        for at_ms in range(1, 6):
            uow.attempts.record_batch(
                [attempt(at_ms, EvidenceSource.VERIFIER, AttemptOutcome.NOT_FOUND)], keep=3
            )
        uow.attempts.record_batch(
            [
                attempt(10, EvidenceSource.VERIFIER, AttemptOutcome.UNAVAILABLE),
                attempt(11, EvidenceSource.VERIFY_INSTANTLY, AttemptOutcome.NOT_FOUND),
            ],
            keep=3,
        )
    with database.read() as uow:
        recent = uow.attempts.recent(payment_id)
        totals = uow.attempts.totals(payment_id)
    # The verifier's routine "not paid yet" only counted; an error and a check someone asked
    # for kept as rows.
    assert [(a.at_ms, a.source, a.outcome) for a in recent] == [
        (11, EvidenceSource.VERIFY_INSTANTLY, AttemptOutcome.NOT_FOUND),
        (10, EvidenceSource.VERIFIER, AttemptOutcome.UNAVAILABLE),
    ]
    assert totals == {AttemptOutcome.NOT_FOUND: 6, AttemptOutcome.UNAVAILABLE: 1}


def test_pending_qrs_are_counted_by_age_band(database: Database, shop: Shop) -> None:
    product = shop.product(stock=20)
    ages_ms = [0, 999, 1_000, 5_000, 9_999, 10_000, 50_000]
    ids = [shop.order((product, 1)).payment.id for _ in ages_ms]
    paid = shop.order((product, 1)).payment.id
    now = 10**9
    with database.write() as uow:
        for payment_id, age_ms in zip([*ids, paid], [*ages_ms, 0], strict=True):
            uow.connection.execute(
                t.khqr_payments.update()
                .where(t.khqr_payments.c.id == payment_id)
                .values(created_ms=now - age_ms)
            )
        uow.payments.mark_paid(paid, now_ms=now)
    with database.read() as uow:
        counts = uow.payments.count_pending_by_age(
            now_ms=now, bands=(("young", 1_000), ("middle", 10_000), ("old", 0))
        )
    assert counts == {"young": 2, "middle": 3, "old": 2}


async def test_two_workers_sweep_one_at_a_time(engine: Engine, shop: Shop) -> None:
    stranded = shop.order((shop.product(), 1))
    with engine.database.write() as uow:
        uow.connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.order_id == stranded.order.id)
            .values(status=PaymentStatus.EXPIRED.value, next_check_ms=None, earliest_check_ms=None)
        )
    engine.clock.set(stranded.order.window_end_ms + 120_000)
    first, second = engine.worker("first"), engine.worker("second")

    swept = await asyncio.gather(first._sweep(force=True), second._sweep(force=True))

    assert sorted(swept) == [False, True]
    assert engine.audit_actions(stranded.order.id) == ["order_created", "expired"]
    sweeper, other = (first, second) if swept[0] else (second, first)
    assert await sweeper._sweep(force=True)  # its lease, renewed
    assert not await other._sweep(force=True)
    # The sweeper stopped: its lease ends two sweep intervals later, and the other takes over.
    engine.clock.advance(seconds=2 * engine.settings.worker_sweep_interval_s)
    assert await other._sweep(force=True)
    assert not await sweeper._sweep(force=True)
