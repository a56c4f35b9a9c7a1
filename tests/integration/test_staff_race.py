"""Cancel and a payment arriving at the same moment, on SQLite and PostgreSQL: exactly one wins,
stock is exact, the loser is recorded. The payment is the real verifier (Bakong simulator over
HTTP, then the completion function), released with the cancel by a barrier at the moment Bakong
has answered, just before the verifier applies the answer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from khqrpay.bakong import BakongClient, BakongError, CheckResult
from khqrpay.clock import SystemClock
from khqrpay.orders.model import Action, EvidenceSource, OrderStatus, TransitionRefused
from khqrpay.services.checking import CheckRecord, CheckTarget, PaymentChecker
from khqrpay.services.staff import cancel_order

if TYPE_CHECKING:
    from conftest import Engine, Shop

ROUNDS = 20
# Two rounds hold one side back so that the other surely commits first: both endings are met
# whatever the machine's timing. The other rounds release both sides at once.
HOLD_S = 0.3
PAYMENT_HELD, CANCEL_HELD = 0, 1
TIMEOUT_S = 60


class _ReleasedTogether(BakongClient):
    """The real client; after Bakong answers it waits at the barrier with the cancel."""

    def __init__(self, barrier: threading.Barrier, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._barrier = barrier
        self.round = 0

    async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]:
        answers = await super().check_md5_list(md5s)
        await asyncio.to_thread(self._barrier.wait, TIMEOUT_S)
        if self.round == PAYMENT_HELD:
            await asyncio.sleep(HOLD_S)
        self.round += 1
        return answers


async def test_cancel_and_payment_at_once_one_wins_stock_exact_loser_recorded(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(price="1.00", stock=ROUNDS)
    orders = [shop.order((product, 1)) for _ in range(ROUNDS)]
    for created in orders:
        await engine.pay(created.payment.qr)
    engine.clock.advance(seconds=30)
    barrier = threading.Barrier(2)
    cancels: dict[int, str] = {}
    records: dict[int, CheckRecord] = {}
    errors: list[BaseException] = []

    def cancel_each() -> None:
        for number, created in enumerate(orders):
            barrier.wait(TIMEOUT_S)
            if number == CANCEL_HELD:
                time.sleep(HOLD_S)
            try:
                cancel_order(
                    engine.database,
                    created.order.id,
                    actor="staff:dara",
                    reason="customer changed their mind",
                    clock=engine.clock,
                )
                cancels[created.order.id] = "cancelled"
            except TransitionRefused:
                cancels[created.order.id] = "refused"

    async def verify_each() -> None:
        async with _ReleasedTogether(
            barrier, settings=engine.settings, clock=SystemClock()
        ) as client:
            checker = PaymentChecker.configured(
                engine.database, client, engine.settings, engine.clock
            )
            for created in orders:
                run = await checker.check_and_apply(
                    [CheckTarget.of(created.payment)],
                    source=EvidenceSource.VERIFIER,
                    actor="worker:race",
                )
                [record] = run.records
                records[created.order.id] = record

    def guarded(run: Any) -> threading.Thread:
        def target() -> None:
            try:
                run()
            except BaseException as exc:  # reported by the test below
                errors.append(exc)
                barrier.abort()

        return threading.Thread(target=target)

    threads = [guarded(cancel_each), guarded(lambda: asyncio.run(verify_each()))]
    for thread in threads:
        thread.start()
    for thread in threads:
        await asyncio.to_thread(thread.join, TIMEOUT_S)
    assert not any(thread.is_alive() for thread in threads), "stuck (deadlock?)"
    assert errors == []

    endings = {"cancelled": 0, "refused": 0}
    for created in orders:
        order_id = created.order.id
        order = engine.order(order_id)
        completion = records[order_id].completion
        assert completion is not None
        actions = engine.audit_actions(order_id)
        assert engine.evidence_count(order_id) == 1  # the money is recorded either way
        endings[cancels[order_id]] += 1
        if cancels[order_id] == "refused":
            # The payment won: completed once; the cancel was refused and wrote nothing.
            assert completion.action is Action.COMPLETE
            assert (order.status, order.refund_flag) == (OrderStatus.COMPLETED, False)
            assert actions == ["order_created", "completed"]
        else:
            # The cancel won: the payment found a cancelled order and went to review, flagged.
            assert completion.action is Action.NEEDS_REVIEW
            assert (order.status, order.refund_flag, order.review_reason) == (
                OrderStatus.NEEDS_REVIEW,
                True,
                "paid a cancelled order",
            )
            assert actions == ["order_created", "cancelled", "needs_review"]
    assert endings["cancelled"] >= 1
    assert endings["refused"] >= 1
    assert engine.stock(product.id) == ROUNDS - endings["refused"]
