"""The verifier's claim on SQLite and PostgreSQL: the due payments and the ride-alongs that fill
their calls, in the order `plan_batches` ranks them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.schedule import MD5_LIST_LIMIT, Candidate, plan_batches

if TYPE_CHECKING:
    from conftest import Shop

S = 1_000
SOON_MS = 2 * S


def schedule(database: Database, payment_id: int, *, next_ms: int, earliest_ms: int) -> None:
    with database.write() as uow:
        uow.connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.id == payment_id)
            .values(next_check_ms=next_ms, earliest_check_ms=earliest_ms)
        )


def test_the_claim_fills_the_calls_with_ride_alongs_ranked_as_plan_batches_ranks_them(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product(stock=1_000)
    ids = [shop.order((product, 1)).payment.id for _ in range(64)]
    now = clock.now_ms() + 3_600 * S
    schedules = {
        # due, most overdue first
        ids[0]: (now, now),
        ids[1]: (now - 5 * S, now - 5 * S),
        ids[2]: (now - S, now - 9 * S),
        # due within SOON_MS, soonest first; one is not a ride-along yet
        ids[3]: (now + 2 * S, now - S),
        ids[4]: (now + S, now),
        ids[5]: (now + S, now + 1),
    }
    # The others wait for a place, some for longer than the calls can carry; two not yet.
    for rank, payment_id in enumerate(ids[6:]):
        schedules[payment_id] = (now + 30 * 60 * S, now - 500 * S + rank * S)
    schedules[ids[62]] = (now + 30 * 60 * S, now + S)
    schedules[ids[63]] = (now + 20 * 60 * S, now + 1)
    for payment_id, (next_ms, earliest_ms) in schedules.items():
        schedule(database, payment_id, next_ms=next_ms, earliest_ms=earliest_ms)
    leased = ids[7]
    with database.write() as uow:
        uow.payments.lease([leased], owner="worker:other", until_ms=now + 1)

    with database.write() as uow:
        claimed = [p.id for p in uow.payments.lock_due(now_ms=now, limit=200, soon_ms=SOON_MS)]

    candidates = [
        Candidate(payment_id, next_ms, earliest_ms)
        for payment_id, (next_ms, earliest_ms) in schedules.items()
        if payment_id != leased
    ]
    planned = plan_batches(candidates, now_ms=now, soon_ms=SOON_MS)
    assert len(claimed) == MD5_LIST_LIMIT  # 3 due, and the one call they need filled
    assert claimed[:5] == [ids[1], ids[2], ids[0], ids[4], ids[3]]
    assert claimed == [candidate.payment_id for batch in planned for candidate in batch]
    assert claimed[5:8] == [ids[6], ids[8], ids[9]]  # waiting longest first, the leased one left
    assert not {ids[5], ids[62], ids[63]} & set(claimed)


def test_ride_alongs_alone_are_never_claimed_but_fill_a_call_made_anyway(
    shop: Shop, database: Database, clock: FakeClock
) -> None:
    product = shop.product()
    rider, due = (shop.order((product, 1)).payment for _ in range(2))
    now = clock.now_ms() + 3_600 * S
    schedule(database, rider.id, next_ms=now + 60 * S, earliest_ms=now - 60 * S)
    schedule(database, due.id, next_ms=now + S, earliest_ms=now + S)
    with database.write() as uow:
        assert uow.payments.lock_due(now_ms=now, limit=200, soon_ms=SOON_MS) == []
    with database.write() as uow:
        claimed = uow.payments.lock_due(now_ms=now + S, limit=200, soon_ms=SOON_MS)
    assert [payment.id for payment in claimed] == [due.id, rider.id]
