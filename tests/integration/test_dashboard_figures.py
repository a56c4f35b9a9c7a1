"""The dashboard's figures from the database: counts, today's takings in Cambodia's day, ages of
pending payments, detection latency, payments per hour, and Bakong's health from the check rounds
and the client."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from khqrpay.bakong.resilience import CircuitState
from khqrpay.clock import FakeClock, datetime_to_ms
from khqrpay.db import Database
from khqrpay.money import Currency, Money
from khqrpay.orders.model import AttemptOutcome, EvidenceSource, OrderStatus
from khqrpay.services.checkout import CreatedOrder
from khqrpay.services.completion import CompletionResult, record_payment
from khqrpay.services.console import CAMBODIA, Dashboard, dashboard, start_of_day_ms
from khqrpay.services.staff import cancel_order

if TYPE_CHECKING:
    from conftest import Engine, Shop

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS


@dataclass
class BakongNow:
    """The client's state as the dashboard reads it."""

    circuit_state: CircuitState = CircuitState.CLOSED
    expires_ms: int | None = None
    fallback_until_ms: int | None = None

    def token_expires_at_ms(self) -> int | None:
        return self.expires_ms

    def list_fallback_until_ms(self) -> int | None:
        return self.fallback_until_ms


def figures(database: Database, clock: FakeClock, bakong: BakongNow | None = None) -> Dashboard:
    return dashboard(database, bakong=bakong or BakongNow(), clock=clock, token_warn_days=7)


def pay(
    shop: Shop,
    created: CreatedOrder,
    *,
    paid_ms: int,
    source: EvidenceSource = EvidenceSource.VERIFIER,
    amount: Decimal | None = None,
) -> CompletionResult:
    with shop.database.write() as uow:
        return record_payment(
            uow,
            order_id=created.order.id,
            evidence=shop.evidence(created.payment, paid_ms=paid_ms, amount=amount),
            source=source,
            actor="worker:test",
            now_ms=shop.clock.now_ms(),
            payment_id=created.payment.id,
        )


def local_ms(text: str) -> int:
    return datetime_to_ms(datetime.fromisoformat(text).replace(tzinfo=CAMBODIA))


def test_takings_count_todays_completed_orders_in_cambodias_day(shop: Shop) -> None:
    clock = shop.clock
    clock.set(local_ms("2026-12-02T23:50:00"))
    dollars, riel = shop.product(price="2.50"), shop.product(price="4000", currency="KHR")
    yesterday = shop.order((dollars, 1))
    pay(shop, yesterday, paid_ms=clock.now_ms())
    clock.set(local_ms("2026-12-03T00:10:00"))  # 17:10 UTC the day before
    for created in (shop.order((dollars, 2)), shop.order((riel, 3))):
        pay(shop, created, paid_ms=clock.now_ms())
    short = shop.order((dollars, 1))
    pay(shop, short, paid_ms=clock.now_ms(), amount=Decimal("1.00"))  # review: not taken

    now = figures(shop.database, clock)

    assert start_of_day_ms(clock.now_ms()) == local_ms("2026-12-03T00:00:00")
    assert now.takings_today == [
        Money.parse("12000", Currency.KHR),
        Money.parse("5.00", Currency.USD),
    ]
    assert now.by_status[OrderStatus.COMPLETED] == 3
    assert now.by_status[OrderStatus.NEEDS_REVIEW] == 1
    assert now.by_status[OrderStatus.PENDING] == 0


def test_pending_payments_are_counted_by_age_band(shop: Shop) -> None:
    tea = shop.product(stock=100)
    now_ms = shop.clock.now_ms() + 30 * DAY_MS
    for age_ms in (10 * DAY_MS, 2 * DAY_MS, 3 * HOUR_MS, 30 * MINUTE_MS, MINUTE_MS):
        shop.clock.set(now_ms - age_ms)
        shop.order((tea, 1))
    shop.clock.set(now_ms)
    cancelled = shop.order((tea, 1))  # its QR is still watched: still pending
    cancel_order(shop.database, cancelled.order.id, actor="cli", reason="gone", clock=shop.clock)

    ages = figures(shop.database, shop.clock).pending_by_age

    assert ages == {"under_15m": 2, "under_1h": 1, "under_1d": 1, "under_1w": 1, "older": 1}


def test_detection_latency_and_payments_per_hour_come_from_recorded_evidence(shop: Shop) -> None:
    clock = shop.clock
    tea = shop.product(stock=100)
    for delay_s in range(1, 11):  # found 1 s to 10 s after payment
        created = shop.order((tea, 1))
        clock.advance(seconds=delay_s)
        pay(shop, created, paid_ms=clock.now_ms() - delay_s * 1000)
        clock.advance(ms=HOUR_MS)
    by_staff = shop.order((tea, 1))
    pay(shop, by_staff, paid_ms=clock.now_ms() - HOUR_MS, source=EvidenceSource.VERIFY_INSTANTLY)

    now = figures(shop.database, clock)

    assert (now.latency_p50_ms, now.latency_p95_ms, now.latency_count) == (5000, 10_000, 10)
    assert len(now.payments_per_hour) == 24
    assert sum(hour.count for hour in now.payments_per_hour) == 11
    assert now.payments_per_hour[-1].start_ms == clock.now_ms() - clock.now_ms() % HOUR_MS
    clock.advance(ms=DAY_MS)
    assert figures(shop.database, clock).latency_count == 0


def rounds(database: Database, clock: FakeClock, *outcomes: dict[AttemptOutcome, int]) -> None:
    for counted in outcomes:
        with database.write() as uow:
            uow.attempts.record_round(
                at_ms=clock.now_ms(),
                source=EvidenceSource.VERIFIER,
                calls=1,
                outcomes=Counter(counted),
                keep_ms=2 * DAY_MS,
            )
        clock.advance(seconds=10)


def test_bakong_health_counts_the_last_hours_calls_and_errors(
    database: Database, clock: FakeClock
) -> None:
    rounds(database, clock, {AttemptOutcome.NOT_FOUND: 40, AttemptOutcome.PAID: 2})
    clock.advance(ms=2 * HOUR_MS)  # older than the hour: not counted, still the last answer
    answered_ms = clock.now_ms()
    rounds(
        database,
        clock,
        {AttemptOutcome.NOT_FOUND: 30},
        {AttemptOutcome.UNAVAILABLE: 30},
        {AttemptOutcome.NOT_FOUND: 20, AttemptOutcome.BAD_RESPONSE: 0},
    )

    health = figures(database, clock).bakong

    assert (health.calls, health.checks, health.errors) == (3, 80, 30)
    assert health.qrs_per_call == 80 / 3
    assert health.error_rate == 30 / 80
    assert health.last_answer_ms == answered_ms + 20_000
    assert not health.token_refused
    assert not health.firewall_blocked


def test_a_refused_token_is_news_until_bakong_answers_again(
    database: Database, clock: FakeClock
) -> None:
    rounds(database, clock, {AttemptOutcome.NOT_FOUND: 5}, {AttemptOutcome.UNAUTHORIZED: 5})
    assert figures(database, clock).bakong.token_refused
    rounds(database, clock, {AttemptOutcome.NOT_FOUND: 5})
    assert not figures(database, clock).bakong.token_refused


def test_the_clients_state_and_the_tokens_expiry_reach_the_dashboard(
    database: Database, clock: FakeClock
) -> None:
    now = clock.now_ms()
    client = BakongNow(CircuitState.OPEN, expires_ms=now + 6 * DAY_MS, fallback_until_ms=now + 1)
    health = figures(database, clock, client).bakong
    assert health.circuit is CircuitState.OPEN
    assert health.list_refused_until_ms == now + 1
    assert health.token_expires_soon
    assert not figures(
        database, clock, BakongNow(expires_ms=now + 8 * DAY_MS)
    ).bakong.token_expires_soon
    assert health.last_answer_ms is None
    assert health.error_rate is None
    nothing = Money.from_minor(0, Currency.KHR), Money.from_minor(0, Currency.USD)
    assert figures(database, clock).takings_today == list(nothing)  # both, even at zero


async def test_each_check_round_is_recorded_with_its_bakong_calls(
    engine: Engine, shop: Shop
) -> None:
    """What the dashboard counts comes from the engine: a worker cycle's md5-list call and its
    QRs, and a Verify Instantly; a Verify Instantly with nothing left to check makes no call."""
    tea = shop.product(stock=10)
    orders = [shop.order((tea, 1)) for _ in range(3)]
    engine.clock.advance(seconds=20)
    await engine.pay(orders[0].payment.qr)

    await engine.worker().run(asyncio.Event(), once=True)
    await engine.actions().verify_instantly(orders[1].order.id, actor="staff:sam")
    await engine.actions().verify_instantly(orders[0].order.id, actor="staff:sam")  # paid: none

    with engine.database.read() as uow:
        recorded = uow.attempts.rounds_since(0)
    assert [(r.source, r.calls, r.checks, r.errors) for r in recorded] == [
        (EvidenceSource.VERIFIER, 1, 3, 0),
        (EvidenceSource.VERIFY_INSTANTLY, 1, 1, 0),
    ]
    assert recorded[0].outcomes == {AttemptOutcome.PAID: 1, AttemptOutcome.NOT_FOUND: 2}
