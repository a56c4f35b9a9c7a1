"""Faults from the simulator: no order changes state because of an error, and every payment is
still detected once Bakong answers again (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from khqrpay.bakong import BakongClient
from khqrpay.clock import SystemClock
from khqrpay.db import tables as t
from khqrpay.orders.events import Topic
from khqrpay.orders.model import AttemptOutcome, OrderStatus
from khqrpay.services.checkout import CreatedOrder
from khqrpay.services.verification import Verifier

if TYPE_CHECKING:
    from conftest import Engine, Shop

FAULTS: dict[str, tuple[dict[str, Any], AttemptOutcome]] = {
    "500": ({"server_error": 1.0}, AttemptOutcome.UNAVAILABLE),
    "503": ({"service_unavailable": 1.0}, AttemptOutcome.UNAVAILABLE),
    "504": ({"gateway_timeout": 1.0}, AttemptOutcome.UNAVAILABLE),
    "timeout": ({"timeout": 1.0, "hang_s": 3.0}, AttemptOutcome.UNAVAILABLE),
    "429": ({"rate_limited": 1.0, "retry_after_s": 30}, AttemptOutcome.RATE_LIMITED),
    "403": ({"blocked": 1.0}, AttemptOutcome.BLOCKED),
    "garbage": ({"not_json": 1.0}, AttemptOutcome.BAD_RESPONSE),
    "expired token": ({"tokens_expired": True}, AttemptOutcome.UNAUTHORIZED),
}
# Past every back-off and pause the tests configure (the longest: 60 s after a refused token).
STEP_S = 61


def _statuses(engine: Engine, orders: list[CreatedOrder]) -> list[OrderStatus]:
    return [engine.order(created.order.id).status for created in orders]


async def _cycles_until_settled(
    engine: Engine, verifier: Verifier, orders: list[CreatedOrder], *, limit: int
) -> int:
    for cycle in range(1, limit + 1):
        await verifier.run_cycle()
        statuses = _statuses(engine, orders)
        assert set(statuses) <= {OrderStatus.PENDING, OrderStatus.COMPLETED}
        if OrderStatus.PENDING not in statuses:
            return cycle
        engine.clock.advance(seconds=STEP_S)
    raise AssertionError(f"still pending after {limit} cycles: {statuses}")


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_an_error_never_changes_an_order_and_payments_are_found_after(
    engine: Engine, shop: Shop, fault: str
) -> None:
    faults, outcome = FAULTS[fault]
    product = shop.product(stock=10)
    paid = [shop.order((product, 1)) for _ in range(3)]
    unpaid = shop.order((product, 1))
    for created in paid:
        await engine.pay(created.payment.qr)
    engine.clock.advance(seconds=10)
    await engine.faults(**faults)
    verifier = engine.verifier()

    await verifier.run_cycle()
    # Even checks at and after the end of the window: an error never expires an order.
    engine.clock.set(unpaid.order.window_end_ms + 3_600_000)
    await verifier.run_cycle()

    everyone = [*paid, unpaid]
    assert _statuses(engine, everyone) == [OrderStatus.PENDING] * 4
    assert engine.count(t.payment_evidence) == 0
    assert engine.stock(product.id) == 10
    with engine.database.read() as uow:
        outcomes = {a.outcome for c in everyone for a in uow.attempts.recent(c.payment.id)}
        errors = [
            p.consecutive_errors for c in everyone for p in uow.payments.for_order(c.order.id)
        ]
    assert outcomes == {outcome}
    if outcome is AttemptOutcome.UNAUTHORIZED:
        # A token problem is loud: an alert event, and no more calls until the pause ends.
        alerts = engine.count(t.outbox, t.outbox.c.topic == Topic.BAKONG_UNAUTHORIZED)
        assert alerts == 2
        assert errors == [0] * 4
    else:
        assert errors == [2] * 4

    await engine.faults()  # Bakong answers again
    engine.clock.advance(seconds=STEP_S)
    await verifier.run_cycle()
    assert _statuses(engine, everyone) == [OrderStatus.COMPLETED] * 3 + [OrderStatus.EXPIRED]
    assert engine.stock(product.id) == 7
    for created in paid:
        assert engine.evidence_count(created.order.id) == 1
        assert engine.audit_actions(created.order.id).count("completed") == 1


async def test_thirty_percent_errors_delay_detection_but_lose_nothing(
    engine: Engine, shop: Shop
) -> None:
    product = shop.product(stock=100)
    paid = [shop.order((product, 1)) for _ in range(30)]
    unpaid = [shop.order((product, 1)) for _ in range(3)]
    for created in paid:
        await engine.pay(created.payment.qr)
    engine.clock.advance(seconds=10)
    await engine.faults(
        server_error=0.1,
        service_unavailable=0.05,
        gateway_timeout=0.05,
        rate_limited=0.05,
        not_json=0.05,
        retry_after_s=1,
    )
    # Small batches, so that each md5-list call can fail on its own, and no client retries, so
    # that the verifier meets every fault.
    settings = engine.settings.model_copy(update={"worker_batch_size": 2, "bakong_max_retries": 0})
    async with BakongClient(settings=settings, clock=SystemClock()) as client:
        verifier = Verifier(
            database=engine.database,
            client=client,
            settings=settings,
            clock=engine.clock,
            worker_id="faulty",
        )
        await _cycles_until_settled(engine, verifier, paid, limit=200)

    assert _statuses(engine, unpaid) == [OrderStatus.PENDING] * 3
    assert engine.stock(product.id) == 70
    completed = t.audit_log.c.action == "completed"
    assert engine.count(t.audit_log, completed) == 30
    assert engine.count(t.payment_evidence) == 30
    with engine.database.read() as uow:
        totals = uow.connection.execute(
            sa.select(t.verification_attempt_totals.c.outcome).distinct()
        ).scalars()
        seen = set(totals)
    assert AttemptOutcome.PAID.value in seen
    assert seen - {AttemptOutcome.PAID.value, AttemptOutcome.NOT_FOUND.value}  # errors happened
