"""The Bakong request budget shared through the database (SQLite and PostgreSQL): processes
racing for the last calls, two verifiers on one budget, and single-check mode (Bakong refusing the
md5 list) stretching the schedule without dropping or expiring a QR before its final check."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import httpx

from khqrpay.bakong import BakongClient
from khqrpay.clock import FakeClock, SystemClock
from khqrpay.db import Database
from khqrpay.orders.budget import PACE_MS, WINDOW_MS, CallBudget, CallPriority
from khqrpay.orders.model import PaymentStatus
from khqrpay.services.budget import SharedCallBudget, budget_status
from khqrpay.services.verification import Verifier

if TYPE_CHECKING:
    from conftest import Engine, Shop


def test_processes_racing_for_the_budget_get_exactly_what_it_holds(
    database: Database, database_url: str, clock: FakeClock
) -> None:
    budget = CallBudget(calls_per_min=30, staff_reserved=4)  # the verifiers': 26, 5 in 10 s
    # Each "process" on a connection pool of its own.
    databases = [Database.from_url(database_url) for _ in range(3)]

    def race() -> int:
        granted: list[int] = []
        start = threading.Barrier(len(databases))

        def process(own: Database) -> None:
            shared = SharedCallBudget(own, budget, clock)
            start.wait()
            granted.extend(shared.take(1, priority=CallPriority.VERIFIER) for _ in range(4))

        threads = [threading.Thread(target=process, args=(own,)) for own in databases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(granted)

    try:
        paced = [race()]
        for _ in range(5):  # 12 asked each time; 11 s on, the pace allows 5 more
            clock.advance(seconds=11)
            paced.append(race())
        assert paced == [5, 5, 5, 5, 5, 1]  # all but the staff's reserve in the minute
        shared = SharedCallBudget(databases[0], budget, clock)
        assert shared.take(1, priority=CallPriority.CUSTOMER) == 0
        assert shared.take(10, priority=CallPriority.STAFF) == 4  # a staff click still goes
        assert budget_status(databases[0], budget, now_ms=clock.now_ms()).use.used == 30
        clock.advance(seconds=61)  # a minute after the last slot: the budget is whole again
        assert budget_status(databases[0], budget, now_ms=clock.now_ms()).use.used == 0
        assert shared.take(40, priority=CallPriority.STAFF) == 30  # staff: never paced
    finally:
        for own in databases:
            own.dispose()


class CountingTransport(httpx.AsyncBaseTransport):
    """The HTTP requests a client really sent, by endpoint, with when (the test's clock)."""

    def __init__(self, clock: FakeClock) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._clock = clock
        self.sent: list[tuple[int, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((self._clock.now_ms(), request.url.path.rsplit("/", 1)[-1]))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def checks(self) -> int:
        return sum(path.startswith("check_transaction") for _, path in self.sent)

    def most_within(self, window_ms: int = WINDOW_MS) -> int:
        moments = [at for at, path in self.sent if path.startswith("check_transaction")]
        return max((sum(m <= at < m + window_ms for at in moments) for m in moments), default=0)


@asynccontextmanager
async def budgeted_verifier(
    engine: Engine, budget: CallBudget, transport: CountingTransport, worker_id: str
) -> AsyncIterator[Verifier]:
    """A verifier whose client takes from the budget every process shares (as bootstrap
    wires it); its rate limiter and breaker on the real clock, like the engine fixture's."""
    shared = SharedCallBudget(engine.database, budget, engine.clock)
    async with BakongClient(
        settings=engine.settings, clock=SystemClock(), transport=transport, gate=shared
    ) as client:
        yield Verifier(
            database=engine.database,
            client=client,
            settings=engine.settings,
            clock=engine.clock,
            worker_id=worker_id,
            budget=shared,
        )


async def test_two_verifiers_in_single_check_mode_stay_within_one_budget(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=1_000)
    orders = [shop.order((product, 1)) for _ in range(30)]
    await engine.faults(md5_list_blocked=True)
    engine.clock.advance(seconds=60)  # every QR due, and behind schedule
    budget = CallBudget(calls_per_min=24, staff_reserved=4)  # the verifiers': 20, 4 in 10 s
    sent = CountingTransport(engine.clock)
    async with (
        budgeted_verifier(engine, budget, sent, "worker-a") as first,
        budgeted_verifier(engine, budget, sent, "worker-b") as second,
    ):
        for _ in range(3):
            await asyncio.gather(first.run_cycle(), second.run_cycle())
        # The pace in all, the md5-list call that found the list refused included.
        assert sent.checks() == 4
        assert Counter(path for _, path in sent.sent)["check_transaction_by_md5_list"] == 1
        status = budget_status(engine.database, budget, now_ms=engine.clock.now_ms())
        assert status.use.single_checks
        assert status.behind_orders == 30 - 3
        assert "md5 list refused by Bakong: checking one QR per call" in status.describe()

        # Time goes on, the checks go on within the budget: none is dropped.
        for _ in range(30):
            engine.clock.advance(seconds=11)
            await asyncio.gather(first.run_cycle(), second.run_cycle())
    assert sent.most_within(WINDOW_MS) <= 20
    assert sent.most_within(PACE_MS) <= 4
    with engine.database.read() as uow:
        payments = [uow.payments.for_order(created.order.id)[0] for created in orders]
    assert all(payment.last_checked_ms is not None for payment in payments)
    assert all(payment.lease_owner is None for payment in payments)


async def test_single_check_mode_stretches_the_schedule_and_never_expires_a_qr_unchecked(
    engine: Engine, shop: Shop
) -> None:
    """Twelve QRs, a window of 2 minutes, 6 calls a minute for the verifier (one every 10 s):
    far less than the schedule asks. Checks come late but every QR gets its final check before
    it expires, and a payment made in the window is found."""
    engine.settings = engine.settings.model_copy(
        update={"payment_window_s": 120.0, "schedule_final_grace_s": 10.0}
    )
    product = shop.product(stock=1_000)
    shop.settings = engine.settings
    orders = [shop.order((product, 1)) for _ in range(12)]
    await engine.faults(md5_list_blocked=True)
    budget = CallBudget(calls_per_min=6, staff_reserved=0)
    sent = CountingTransport(engine.clock)
    paid = orders[5]
    async with budgeted_verifier(engine, budget, sent, "worker-a") as verifier:
        for second in range(600):
            if second == 100:
                await engine.pay(paid.payment.qr)
            await verifier.run_cycle()
            engine.clock.advance(seconds=1)
    assert sent.most_within(WINDOW_MS) <= 6
    window_end_ms = orders[0].payment.expires_ms
    with engine.database.read() as uow:
        payments = [uow.payments.for_order(created.order.id)[0] for created in orders]
    statuses = Counter(payment.status for payment in payments)
    assert statuses == {PaymentStatus.EXPIRED: 11, PaymentStatus.PAID: 1}
    final_ms = window_end_ms + 10_000
    for payment in payments:
        assert payment.last_checked_ms is not None
        if payment.status is PaymentStatus.EXPIRED:
            assert payment.last_checked_ms >= final_ms  # expired only after its final check
    # The budget, not the schedule, set the pace: expiries waited past the final check time.
    assert max(p.last_checked_ms or 0 for p in payments) > final_ms + 30_000
