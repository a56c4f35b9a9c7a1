"""Pay-later customers: drawn delays, time acceleration, and the checks made at pay time."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from khqrpay.clock import FakeClock
from khqrpay.khqr import KHQRInput, encode
from khqrpay.money import Currency
from khqrpay.simulator.customers import CustomerScheduler, CustomerState
from khqrpay.simulator.paylater import HOUR_S, PayLaterDistribution
from khqrpay.simulator.payments import Payer, PaymentRefused
from khqrpay.simulator.profiles import SHAPES, SimulatorProfile
from khqrpay.simulator.protocol import ItemStatus
from khqrpay.simulator.state import SimulatorState

HOUR_MS = 3_600_000


def order_qr(clock: FakeClock, bill: str, *, expires_in_ms: int = 40 * 24 * HOUR_MS) -> str:
    data = KHQRInput(
        bakong_account_id="shop@devb",
        merchant_name="Sok Coffee",
        currency=Currency.USD,
        amount=Decimal("3.00"),
        bill_number=bill,
        expires_ms=clock.now_ms() + expires_in_ms,
    )
    return encode(data, now_ms=clock.now_ms()).qr


class World:
    def __init__(
        self, acceleration: float, distribution: PayLaterDistribution | None = None
    ) -> None:
        self.clock = FakeClock()
        self.state = SimulatorState()
        self.scheduler = CustomerScheduler(
            Payer(self.state, self.clock, random.Random(1), SHAPES[SimulatorProfile.SIT]),
            self.clock,
            rng=random.Random(2),
            acceleration=acceleration,
            distribution=distribution,
        )

    async def settled(self, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while any(c.state is CustomerState.WAITING for c in self.scheduler.customers()):
            assert time.monotonic() < deadline, "customers did not pay in time"
            await asyncio.sleep(0.01)


async def running(world: World) -> AsyncIterator[World]:
    task = asyncio.create_task(world.scheduler.run())
    yield world
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
async def fast_world() -> AsyncIterator[World]:
    # A month in 0.026 s.
    async for world in running(World(acceleration=1e8)):
        yield world


async def test_customers_who_draw_a_delay_pay_and_the_others_never_do(fast_world: World) -> None:
    world = fast_world
    for n in range(100):
        world.scheduler.schedule(order_qr(world.clock, f"order-{n}"))
    await world.settled()
    customers = world.scheduler.customers()
    never = [c for c in customers if c.delay_s is None]
    payers = [c for c in customers if c.delay_s is not None]
    assert never, "seeded draws give some never-paying customers"
    assert {c.state for c in never} == {CustomerState.NEVER}
    assert {c.state for c in payers} == {CustomerState.PAID}
    paid_hashes = {t.hash for t in world.state.transactions()}
    assert paid_hashes == {c.transaction_hash for c in payers}
    for customer in never:
        assert world.state.find_by_md5(customer.md5, world.clock.now_ms()).status is (
            ItemStatus.NOT_FOUND
        )
    await asyncio.sleep(0.1)  # well past a month of simulated time
    assert len(world.state.transactions()) == len(payers)


async def test_a_delay_of_d_seconds_takes_d_over_acceleration_real_seconds() -> None:
    # Everyone pays between 30 and 60 simulated minutes; at 14,400x that is 0.125 to 0.25 s.
    distribution = PayLaterDistribution(points=((HOUR_S, 1.0),), earliest_s=HOUR_S / 2)
    async for world in running(World(acceleration=4 * HOUR_S, distribution=distribution)):
        started = time.monotonic()
        customer = world.scheduler.schedule(order_qr(world.clock, "timed"))
        assert customer.delay_s is not None
        assert HOUR_S / 2 <= customer.delay_s <= HOUR_S
        await asyncio.sleep(0.05)
        assert world.scheduler.customers()[0].state is CustomerState.WAITING
        await world.settled()
        elapsed = time.monotonic() - started
        assert elapsed >= customer.delay_s / (4 * HOUR_S)
        assert world.scheduler.customers()[0].state is CustomerState.PAID


async def test_a_customer_coming_back_after_the_qr_expired_is_refused() -> None:
    everyone_pays = PayLaterDistribution(points=((HOUR_S, 1.0),))
    async for world in running(World(acceleration=1e8, distribution=everyone_pays)):
        world.scheduler.schedule(order_qr(world.clock, "late", expires_in_ms=HOUR_MS))
        # The scheduler cannot run before this coroutine awaits, so the QR expires first.
        world.clock.advance(ms=HOUR_MS + 1)
        await world.settled()
        (customer,) = world.scheduler.customers()
        assert customer.state is CustomerState.REFUSED
        assert customer.refusal is not None
        assert "expired" in customer.refusal
        assert world.state.transactions() == []


def test_a_qr_that_cannot_be_paid_is_refused_when_scheduled() -> None:
    world = World(acceleration=1.0)
    with pytest.raises(PaymentRefused):
        world.scheduler.schedule("00020101021229")
    static = encode(
        KHQRInput(bakong_account_id="shop@devb", merchant_name="Sok"), now_ms=world.clock.now_ms()
    ).qr
    with pytest.raises(PaymentRefused, match="static"):
        world.scheduler.schedule(static)
    customer = world.scheduler.schedule(static, amount=Decimal(500), currency=Currency.KHR)
    assert customer.order.amount == Decimal(500)
    assert world.scheduler.customers() == [customer]


def test_acceleration_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        World(acceleration=0)
