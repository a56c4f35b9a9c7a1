"""A Bakong md5-list answer that leaves some md5s out, at the final check, on SQLite and
PostgreSQL: a QR left out is a bad answer (asked again later), never "not paid", so a paid QR
is not expired, and its order is not expired while that QR is still pending."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from khqrpay.bakong import BakongClient, BakongError, CheckResult
from khqrpay.clock import SystemClock
from khqrpay.db import tables as t
from khqrpay.orders.model import AttemptOutcome, OrderStatus, PaymentStatus
from khqrpay.services.checkout import new_qr_for_order
from khqrpay.services.verification import Verifier

if TYPE_CHECKING:
    from conftest import Engine, Shop


class AnswersLeavingOut(BakongClient):
    """Bakong answering md5-list calls without the md5s in `left_out`."""

    left_out: frozenset[str] = frozenset()

    async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]:
        answers = await super().check_md5_list(md5s)
        return {md5: answer for md5, answer in answers.items() if md5 not in self.left_out}


async def test_a_paid_qr_left_out_of_the_answer_at_its_final_check_is_not_expired_nor_its_order(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=3)
    created = shop.order((product, 1))
    engine.clock.advance(seconds=1)
    newer = new_qr_for_order(
        engine.database, order_id=created.order.id, settings=engine.settings, clock=engine.clock
    )
    await engine.pay(newer.qr)  # the customer paid the newer QR; the first one is never paid
    engine.clock.set(
        created.order.window_end_ms + round(engine.settings.schedule_final_grace_s * 1000)
    )

    async with AnswersLeavingOut(settings=engine.settings, clock=SystemClock()) as partial:
        partial.left_out = frozenset({newer.md5})
        verifier = Verifier(
            database=engine.database,
            client=partial,
            settings=engine.settings,
            clock=engine.clock,
            worker_id="partial",
        )
        records = {r.target.payment_id: r for r in (await verifier.run_cycle()).records}

    # The first QR had its final check; the newer one's answer is missing: a bad answer.
    assert records[created.payment.id].outcome is AttemptOutcome.NOT_FOUND
    assert records[created.payment.id].payment_expired
    assert records[newer.id].outcome is AttemptOutcome.BAD_RESPONSE
    assert not records[newer.id].payment_expired
    assert not any(record.order_expired for record in records.values())
    statuses = {p.id: p.status for p in engine.payments(created.order.id)}
    assert statuses == {created.payment.id: PaymentStatus.EXPIRED, newer.id: PaymentStatus.PENDING}
    assert engine.order(created.order.id).status is OrderStatus.PENDING

    # Asked again after the back-off, with Bakong's whole answer: the payment completes the order.
    engine.clock.advance(seconds=engine.settings.schedule_error_backoff_max_s)
    await engine.verifier().run_cycle()
    assert engine.order(created.order.id).status is OrderStatus.COMPLETED
    assert engine.stock(product.id) == 2
    assert engine.count(t.payment_evidence, t.payment_evidence.c.order_id == created.order.id) == 1
