"""The verifier's claim on SQLite and PostgreSQL: the due payments, then the early ones and the
ride-alongs that fill their calls, in the order `plan_batches` ranks them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.schedule import MD5_LIST_LIMIT, Candidate, plan_batches

if TYPE_CHECKING:
    from conftest import Shop

S = 1_000
MIN = 60 * S
RIDE_AFTER = MIN


def schedule(
    database: Database, payment_id: int, *, next_ms: int, earliest_ms: int, last_ms: int | None
) -> None:
    with database.write() as uow:
        uow.connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.id == payment_id)
            .values(next_check_ms=next_ms, earliest_check_ms=earliest_ms, last_checked_ms=last_ms)
        )


def test_the_claim_fills_the_calls_as_plan_batches_ranks_them(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=1_000)
    ids = [shop.order((product, 1)).payment.id for _ in range(64)]
    now = clock.now_ms() + 60 * MIN
    schedules: dict[int, tuple[int, int, int | None]] = {
        # due, most overdue first
        ids[0]: (now, now, now - 2 * S),
        ids[1]: (now - 5 * S, now - 5 * S, now - 7 * S),
        ids[2]: (now - S, now - 9 * S, now - 11 * S),
        # early, the soonest due first
        ids[3]: (now + 20 * MIN, now - S, now - 40 * MIN),
        ids[4]: (now + S, now, now - S),
        # neither early nor checked long enough ago to ride along
        ids[5]: (now + S, now + 1, now - S),
        ids[6]: (now + 30 * MIN, now + 15 * MIN, now - RIDE_AFTER + 1),
    }
    # Ride-alongs, more than the call can carry, the longest unchecked first.
    for rank, payment_id in enumerate(ids[7:]):
        schedules[payment_id] = (now + 30 * MIN, now + 15 * MIN, now - 30 * MIN + rank * S)
    for payment_id, (next_ms, earliest_ms, last_ms) in schedules.items():
        schedule(database, payment_id, next_ms=next_ms, earliest_ms=earliest_ms, last_ms=last_ms)
    leased = ids[8]
    with database.write() as uow:
        uow.payments.lease([leased], owner="worker:other", until_ms=now + 1)

    with database.write() as uow:
        claimed = uow.payments.lock_due(now_ms=now, limit=200, ride_along_after_ms=RIDE_AFTER)

    candidates = [
        Candidate(payment_id, *schedule)
        for payment_id, schedule in schedules.items()
        if payment_id != leased
    ]
    planned = plan_batches(candidates, now_ms=now, ride_along_after_ms=RIDE_AFTER)
    claimed_ids = [payment.id for payment in claimed]
    assert len(claimed_ids) == MD5_LIST_LIMIT  # 3 due, and the one call they need filled
    assert claimed_ids[:5] == [ids[1], ids[2], ids[0], ids[4], ids[3]]
    assert claimed_ids == [candidate.payment_id for batch in planned for candidate in batch]
    assert claimed_ids[5:8] == [ids[7], ids[9], ids[10]]  # the leased one is left out
    assert not {ids[5], ids[6], ids[63]} & set(claimed_ids)


def test_without_a_due_payment_nothing_is_claimed(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product()
    rider, early, due = (shop.order((product, 1)).payment for _ in range(3))
    now = clock.now_ms() + 60 * MIN
    schedule(database, rider.id, next_ms=now + 30 * MIN, earliest_ms=now + MIN, last_ms=now - MIN)
    schedule(database, early.id, next_ms=now + 30 * S, earliest_ms=now - S, last_ms=now - 5 * MIN)
    schedule(database, due.id, next_ms=now + S, earliest_ms=now + S, last_ms=now - S)
    with database.write() as uow:
        assert uow.payments.lock_due(now_ms=now, limit=200, ride_along_after_ms=RIDE_AFTER) == []
    with database.write() as uow:
        claimed = uow.payments.lock_due(now_ms=now + S, limit=200, ride_along_after_ms=RIDE_AFTER)
    assert [payment.id for payment in claimed] == [due.id, early.id, rider.id]
    with database.write() as uow:
        claimed = uow.payments.lock_due(now_ms=now + S, limit=200, ride_along_after_ms=None)
    assert [payment.id for payment in claimed] == [due.id, early.id]


def test_watched_and_fresh_qrs_are_claimed_before_a_more_overdue_backlog(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    """When the limit (the budget) cannot take every due QR, a customer watching and a QR just
    made go first; the backlog follows, the most overdue first."""
    product = shop.product(stock=1_000)
    backlog = [shop.order((product, 1)).payment.id for _ in range(6)]
    clock.advance(seconds=30 * 60)  # the backlog is no longer fresh (15 minutes)
    now = clock.now_ms()
    for rank, payment_id in enumerate(backlog):
        schedule(database, payment_id, next_ms=now - 600 * S + rank, earliest_ms=0, last_ms=None)
    watched = backlog[5]  # the least overdue of the backlog, but its customer is watching
    with database.write() as uow:
        uow.connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.id == watched)
            .values(hot_until_ms=now + MIN)
        )
    fresh = shop.order((product, 1)).payment.id
    schedule(database, fresh, next_ms=now, earliest_ms=now, last_ms=None)

    def claim(limit: int) -> list[int]:
        with database.write() as uow:
            claimed = uow.payments.lock_due(
                now_ms=now,
                limit=limit,
                ride_along_after_ms=None,
                fresh_since_ms=now - 15 * MIN,
                per_call=1,
            )
        return [payment.id for payment in claimed]

    assert claim(2) == [watched, fresh]  # the earliest due of the first tier first
    assert claim(4) == [watched, fresh, backlog[0], backlog[1]]
    assert len(claim(200)) == 7  # per_call 1 (single checks): no place for a ride-along


def test_a_due_sweep_claims_one_call_of_the_longest_unchecked(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    """Nothing due: no call, unless the sweep is due; then one call of the longest-unchecked QRs
    no lease holds. The sweep's question (the oldest check) leaves out leased and never-checked
    QRs too."""
    product = shop.product(stock=1_000)
    ids = [shop.order((product, 1)).payment.id for _ in range(55)]
    now = clock.now_ms() + 60 * MIN
    for rank, payment_id in enumerate(ids[:-1]):
        last_ms = now - 30 * MIN + rank * S
        schedule(database, payment_id, next_ms=now + MIN, earliest_ms=now + S, last_ms=last_ms)
    schedule(database, ids[-1], next_ms=now + MIN, earliest_ms=now + S, last_ms=None)
    with database.write() as uow:
        uow.payments.lease([ids[0]], owner="worker:other", until_ms=now + 1)

    with database.read() as uow:
        assert uow.payments.oldest_pending_check_ms(now_ms=now) == now - 30 * MIN + S
        assert uow.payments.oldest_pending_check_ms(now_ms=now + 1) == now - 30 * MIN
    with database.write() as uow:
        assert uow.payments.lock_due(now_ms=now, limit=200, ride_along_after_ms=RIDE_AFTER) == []
        claimed = uow.payments.lock_due(
            now_ms=now, limit=200, ride_along_after_ms=RIDE_AFTER, sweep=True
        )
    assert [payment.id for payment in claimed] == ids[1:51]
