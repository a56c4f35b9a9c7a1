"""A verifier cycle asks Bakong in several md5-list calls at once. Each call's answers are applied
as soon as that call returns: one call hanging (until the client's timeout, 15 s) does not hold
the payment another call of the same cycle found; calls that return while another call's answers
are being applied are applied together after it. A hanging call somebody waits on (a QR a
customer watches, a staff Verify Instantly or Check Payment Status) is asked again after
`bakong_hedge_after_s`, and the first answer wins."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import httpx

from helpers.engine import new_staff_actions, new_verifier
from khqrpay.bakong import BakongClient, BakongError, CheckResult
from khqrpay.clock import SystemClock
from khqrpay.orders.model import AttemptOutcome, EvidenceSource, OrderStatus
from khqrpay.orders.schedule import MD5_LIST_LIMIT
from khqrpay.services.budget import SharedCallBudget
from khqrpay.services.customers import watch

if TYPE_CHECKING:
    from conftest import Engine, Shop
    from khqrpay.services.checkout import CreatedOrder
    from khqrpay.services.manual import ManualActions
    from khqrpay.settings import Settings

HEDGE_AFTER_S = 0.3


class HangingUnless(BakongClient):
    """Bakong answering at once the calls that carry `answered`, and hanging the others until
    `release` is set."""

    answered = ""
    release: asyncio.Event

    async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]:
        md5s = list(md5s)
        if self.answered not in md5s:
            await self.release.wait()
        return await super().check_md5_list(md5s)


async def test_a_hanging_call_does_not_hold_what_the_other_calls_of_its_cycle_found(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=100)
    orders = [shop.order((product, 1)) for _ in range(MD5_LIST_LIMIT + 1)]
    paid = orders[0]
    await engine.pay(paid.payment.qr)
    engine.clock.advance(seconds=engine.settings.schedule_initial_delay_s)

    async with HangingUnless(settings=engine.settings, clock=SystemClock()) as bakong:
        bakong.answered, bakong.release = paid.payment.md5, asyncio.Event()
        verifier = new_verifier(engine.database, bakong, engine.settings, engine.clock, "hanging")
        cycle = asyncio.create_task(verifier.run_cycle())
        async with asyncio.timeout(10):
            while engine.order(paid.order.id).status is not OrderStatus.COMPLETED:
                await asyncio.sleep(0.05)
        assert not cycle.done()  # the other call still hangs

        bakong.release.set()
        report = await cycle

    assert report.batch_sizes == (MD5_LIST_LIMIT, 1) or report.batch_sizes == (1, MD5_LIST_LIMIT)
    assert len(report.records) == MD5_LIST_LIMIT + 1
    assert not report.abandoned
    assert [o.status for o in map(engine.order, (o.order.id for o in orders[1:]))] == [
        OrderStatus.PENDING
    ] * MD5_LIST_LIMIT
    assert engine.stock(product.id) == 99


class DatabaseHeld:
    """Another transaction holding what completing an order locks (the product's row; on
    SQLite the write lock), in a thread, until `let_go`."""

    def __init__(self, engine: Engine, order_id: int) -> None:
        self._engine, self._order_id = engine, order_id
        self._held, self._let_go = threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        with self._engine.database.write() as uow:
            uow.products.lock_for_orders([self._order_id])
            self._held.set()
            self._let_go.wait(timeout=10)

    async def take(self) -> None:
        self._thread.start()
        await asyncio.to_thread(self._held.wait, 10)

    async def let_go(self) -> None:
        self._let_go.set()
        await asyncio.to_thread(self._thread.join, 10)


async def test_calls_returning_while_an_apply_runs_are_applied_together_after_it(
    engine: Engine, shop: Shop
) -> None:
    """The call carrying the paid QR returns first and its apply waits on the database; the two
    other calls return meanwhile and are applied after it in one transaction: two rounds, of one
    call and of two, and every QR checked once."""
    product = shop.product(stock=100)
    orders = [shop.order((product, 1)) for _ in range(2 * MD5_LIST_LIMIT + 1)]
    paid = orders[0]
    await engine.pay(paid.payment.qr)
    engine.clock.advance(seconds=engine.settings.schedule_initial_delay_s)
    held = DatabaseHeld(engine, paid.order.id)

    class FirstAnswerHeld(HangingUnless):
        returned = 0

        async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]:
            md5s = list(md5s)
            if self.answered in md5s:
                await held.take()  # before the answers go to be applied
            answers = await super().check_md5_list(md5s)
            self.returned += 1
            return answers

    async with FirstAnswerHeld(settings=engine.settings, clock=SystemClock()) as bakong:
        bakong.answered, bakong.release = paid.payment.md5, asyncio.Event()
        verifier = new_verifier(engine.database, bakong, engine.settings, engine.clock, "joined")
        cycle = asyncio.create_task(verifier.run_cycle())
        async with asyncio.timeout(10):
            while bakong.returned < 1:
                await asyncio.sleep(0.01)
            bakong.release.set()
            while bakong.returned < 3:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # the two answers reach the applier, behind the first apply
        assert not cycle.done()
        await held.let_go()
        report = await cycle

    assert sorted(report.batch_sizes) == [1, MD5_LIST_LIMIT, MD5_LIST_LIMIT]
    assert len(report.records) == 2 * MD5_LIST_LIMIT + 1
    with engine.database.read() as uow:
        rounds = uow.attempts.rounds_since(0)
    assert [(r.source, r.calls) for r in rounds] == [
        (EvidenceSource.VERIFIER, 1),
        (EvidenceSource.VERIFIER, 2),
    ]
    assert sum(r.checks for r in rounds) == 2 * MD5_LIST_LIMIT + 1
    assert engine.order(paid.order.id).status is OrderStatus.COMPLETED
    assert engine.stock(product.id) == 99


class FirstRequestHangs(httpx.AsyncBaseTransport):
    """The network to Bakong: the first request hangs (past the test's end), the others go
    through. Below the client, so the hanging call has taken its call from the budget."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._requests = 0
        self._never = asyncio.Event()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._requests += 1
        if self._requests == 1:
            await self._never.wait()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def hedging_settings(engine: Engine) -> Settings:
    return engine.settings.model_copy(
        update={
            "bakong_hedge_after_s": HEDGE_AFTER_S,
            "bakong_max_calls_per_min": 2,
            "bakong_timeout_s": 30.0,
        }
    )


@contextlib.asynccontextmanager
async def staff_behind_a_hanging_call(engine: Engine) -> AsyncIterator[ManualActions]:
    """Staff actions on a client whose first request hangs (`FirstRequestHangs`); each action
    must answer within five hedge delays."""
    settings = hedging_settings(engine)
    async with BakongClient(
        settings=settings, clock=SystemClock(), transport=FirstRequestHangs()
    ) as bakong:
        async with asyncio.timeout(5 * HEDGE_AFTER_S):
            yield new_staff_actions(engine.database, bakong, settings, engine.clock)


async def test_verify_instantly_behind_a_hanging_call_is_asked_again(
    engine: Engine, shop: Shop
) -> None:
    """Staff wait for Verify Instantly: Bakong not answering after the hedge delay is asked
    again, and the order completes in about that delay, not the client's timeout."""
    product = shop.product(stock=5)
    paid = shop.order((product, 1))
    await engine.pay(paid.payment.qr)
    async with staff_behind_a_hanging_call(engine) as staff:
        result = await staff.verify_instantly(paid.order.id, actor="staff:sam")
    assert result.status is OrderStatus.COMPLETED
    assert [record.outcome for record in result.checks] == [AttemptOutcome.PAID]
    assert engine.evidence_count(paid.order.id) == 1
    assert engine.stock(product.id) == 4


async def test_check_payment_status_behind_a_hanging_call_is_asked_again(
    engine: Engine, shop: Shop
) -> None:
    paid = shop.order((shop.product(stock=5), 1))
    await engine.pay(paid.payment.qr)
    async with staff_behind_a_hanging_call(engine) as staff:
        report = await staff.check_status(paid.order.id)
    assert [qr.outcome for qr in report.qrs] == [AttemptOutcome.PAID]
    assert engine.order(paid.order.id).status is OrderStatus.PENDING  # reported, not recorded


async def hedged_cycle(engine: Engine, paid: CreatedOrder, *, budget: bool = False) -> object:
    """One verifier cycle whose first request hangs (`FirstRequestHangs`), with a short hedge
    delay; its report, or None if the cycle still waited after five hedge delays (a hedge
    answers within one)."""
    settings = hedging_settings(engine)
    shared = SharedCallBudget(engine.database, settings.call_budget(), engine.clock)
    gate = shared if budget else None
    async with BakongClient(
        settings=settings, clock=SystemClock(), transport=FirstRequestHangs(), gate=gate
    ) as bakong:
        verifier = new_verifier(engine.database, bakong, settings, engine.clock, "hedging", gate)
        cycle = asyncio.create_task(verifier.run_cycle())
        done, _ = await asyncio.wait({cycle}, timeout=5 * HEDGE_AFTER_S)
        if not done:
            cycle.cancel()
            await asyncio.gather(cycle, return_exceptions=True)
            return None
        return cycle.result()


async def test_a_watched_qr_in_a_hanging_call_is_asked_again_and_found(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=5)
    paid = shop.order((product, 1))
    await engine.pay(paid.payment.qr)
    watch(
        engine.database, paid.order.id, policy=engine.settings.schedule_policy(), clock=engine.clock
    )
    engine.clock.advance(seconds=engine.settings.schedule_initial_delay_s)

    report = await hedged_cycle(engine, paid)

    assert report is not None, "the hanging call held the watched payment"
    assert report.hedged == 1  # type: ignore[attr-defined]
    assert engine.order(paid.order.id).status is OrderStatus.COMPLETED
    assert engine.evidence_count(paid.order.id) == 1
    assert engine.stock(product.id) == 4


async def test_a_call_nobody_watches_is_not_asked_twice(engine: Engine, shop: Shop) -> None:
    paid = shop.order((shop.product(stock=5), 1))
    await engine.pay(paid.payment.qr)
    engine.clock.advance(seconds=engine.settings.schedule_initial_delay_s)

    assert await hedged_cycle(engine, paid) is None  # still waiting on the one call
    assert engine.order(paid.order.id).status is OrderStatus.PENDING


async def test_a_second_call_the_budget_refuses_does_not_win(engine: Engine, shop: Shop) -> None:
    paid = shop.order((shop.product(stock=5), 1))
    await engine.pay(paid.payment.qr)
    watch(
        engine.database, paid.order.id, policy=engine.settings.schedule_policy(), clock=engine.clock
    )
    engine.clock.advance(seconds=engine.settings.schedule_initial_delay_s)

    # 2 calls a minute, 1 kept for staff: the cycle's own call is the verifier's last. The hedge
    # is refused: the cycle keeps waiting on the first call, and hands nothing back.
    assert await hedged_cycle(engine, paid, budget=True) is None
    assert engine.order(paid.order.id).status is OrderStatus.PENDING
