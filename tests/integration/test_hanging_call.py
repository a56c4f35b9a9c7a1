"""A verifier cycle asks Bakong in several md5-list calls at once. Each call's answers are applied
as soon as that call returns: one call hanging (until the client's timeout, 15 s) does not hold
the payment another call of the same cycle found."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from khqrpay.bakong import BakongClient, BakongError, CheckResult
from khqrpay.clock import SystemClock
from khqrpay.orders.model import OrderStatus
from khqrpay.orders.schedule import MD5_LIST_LIMIT
from khqrpay.services.verification import Verifier

if TYPE_CHECKING:
    from conftest import Engine, Shop


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
        verifier = Verifier(
            database=engine.database,
            client=bakong,
            settings=engine.settings,
            clock=engine.clock,
            worker_id="hanging",
        )
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
