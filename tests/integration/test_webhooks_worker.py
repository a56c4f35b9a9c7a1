"""The worker's loop against slow outside parties: a webhook receiver that takes 10 s to answer
does not delay payment detection (measured, against the same worker with no webhooks), nor another
endpoint's deliveries; a Bakong call hanging until the client's timeout does not hold back the
payments that become due meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import httpx
import pytest

from helpers.engine import engine_settings
from helpers.receivers import WebhookReceiver, serve
from khqrpay.bakong import BakongClient
from khqrpay.bootstrap import App
from khqrpay.clock import SystemClock
from khqrpay.db import Database
from khqrpay.events import InProcessEventBus
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest, OrderStatus
from khqrpay.orders.notices import WebhookEventType
from khqrpay.services.checkout import create_order
from khqrpay.services.products import add_product
from khqrpay.services.webhooks import add_endpoint
from khqrpay.settings import Settings
from khqrpay.simulator.server import RunningSimulator
from khqrpay.worker import Worker

if TYPE_CHECKING:
    from conftest import Engine, Shop

ORDERS_PER_PHASE = 3


class LiveShop:
    """A worker running on the real clock against the simulator, and a way to time how long a
    payment takes to be found."""

    def __init__(self, app: App, simulator: RunningSimulator) -> None:
        self.app = app
        self.http = httpx.AsyncClient(base_url=simulator.url, timeout=5)
        self.sku = add_product(
            app.database,
            sku="TEA-1",
            name="Tea",
            price=Money.parse("1.25", Currency.USD),
            stock=100,
            now_ms=app.clock.now_ms(),
        ).sku

    def order(self) -> tuple[int, str]:
        created = create_order(
            self.app.database,
            lines=[LineRequest(self.sku, 1)],
            phone=None,
            settings=self.app.settings,
            clock=self.app.clock,
        )
        return created.order.id, created.payment.qr

    def status(self, order_id: int) -> OrderStatus:
        with self.app.database.read() as uow:
            return uow.orders.get(order_id).status

    async def detection_s(self, orders: list[tuple[int, str]]) -> list[float]:
        """Pay each order now; the seconds until each is COMPLETED."""
        paid_at = {}
        for order_id, qr in orders:
            response = await self.http.post("/_sim/pay", json={"qr": qr})
            assert response.status_code == 201, response.text
            paid_at[order_id] = time.monotonic()
        found: dict[int, float] = {}
        deadline = time.monotonic() + 15
        while len(found) < len(orders) and time.monotonic() < deadline:
            for order_id, _qr in orders:
                if order_id not in found:
                    status = await asyncio.to_thread(self.status, order_id)
                    if status is OrderStatus.COMPLETED:
                        found[order_id] = time.monotonic() - paid_at[order_id]
            await asyncio.sleep(0.01)
        assert len(found) == len(orders), "payments not detected within 15 s"
        return list(found.values())


@pytest.fixture
async def live_shop(
    database: Database, settings: Settings, live_simulator: RunningSimulator
) -> AsyncIterator[tuple[LiveShop, Worker]]:
    configured = engine_settings(
        settings,
        live_simulator,
        bakong_timeout_s=5.0,
        schedule_initial_delay_s=0.0,
        schedule_fast_interval_s=0.2,
        worker_poll_interval_s=0.05,
        worker_shutdown_grace_s=0.2,
        webhook_timeout_s=15.0,
    )
    app = App(settings=configured, database=database, clock=SystemClock())
    async with BakongClient(settings=configured, clock=SystemClock()) as client:
        shop = LiveShop(app, live_simulator)
        worker = Worker(
            app=app, bakong=app.services_on(client), bus=InProcessEventBus(), worker_id="w1"
        )
        yield shop, worker
        await shop.http.aclose()


async def _until(condition: object, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def test_a_10_second_receiver_does_not_delay_payment_detection_nor_other_endpoints(
    live_shop: tuple[LiveShop, Worker],
) -> None:
    shop, worker = live_shop
    slow, fast = WebhookReceiver(delay_s=10), WebhookReceiver()
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        with serve(slow) as slow_url, serve(fast) as fast_url:
            # Baseline: the same worker, no endpoint at all.
            baseline = await shop.detection_s([shop.order() for _ in range(ORDERS_PER_PHASE)])

            for url in (slow_url, fast_url):
                add_endpoint(
                    shop.app.database,
                    url=f"{url}/hooks",
                    event_types=tuple(WebhookEventType),
                    allow_private=True,
                    clock=shop.app.clock,
                )
            orders = [shop.order() for _ in range(ORDERS_PER_PHASE)]
            # The slow receiver holds every delivery it is sent (10 s each)...
            await _until(lambda: slow.in_flight == ORDERS_PER_PHASE)
            # ... while the payments are found.
            with_slow = await shop.detection_s(orders)
            assert slow.in_flight == ORDERS_PER_PHASE
            assert slow.requests == []  # none answered yet: all still in flight
            # The other endpoint got every message meanwhile.
            await _until(lambda: len(fast.taken()) == 2 * ORDERS_PER_PHASE)
            assert slow.requests == []
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)

    measured = f"detection without webhooks {baseline}, with a 10 s receiver {with_slow}"
    assert max(with_slow) < 2.0, measured
    assert max(with_slow) < max(baseline) + 1.0, measured
    ids = {order_id for order_id, _qr in orders}
    assert {r.json()["data"]["order"]["id"] for r in fast.taken()} == ids


async def test_a_hanging_bakong_call_does_not_hold_back_a_payment_found_meanwhile(
    live_shop: tuple[LiveShop, Worker],
) -> None:
    shop, worker = live_shop
    waiting = shop.order()
    # The next Bakong request hangs for longer than the client's timeout (5 s).
    await _set_faults(shop, timeout=1.0, hang_s=8.0)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await _until(lambda: _timeouts_met(shop) >= 1)
        await _set_faults(shop)
        started = time.monotonic()
        # Paid while the first call still hangs: found by the cycles after it.
        found = await shop.detection_s([shop.order()])
        assert time.monotonic() - started < 4.0, "the hanging call held the worker back"
        assert max(found) < 2.5, found
        assert shop.status(waiting[0]) is OrderStatus.PENDING  # its call is still hanging
    finally:
        stop.set()
        await asyncio.wait_for(running, 15)


async def _set_faults(shop: LiveShop, **faults: float) -> None:
    response = await shop.http.post("/_sim/faults", json={"seed": 3, **faults})
    assert response.status_code == 200, response.text


def _timeouts_met(shop: LiveShop) -> int:
    answer = httpx.get(shop.http.base_url.join("/_sim/requests")).json()
    return int(answer["faults"].get("timeout", 0))


async def test_the_worker_once_sends_the_webhooks_of_the_payments_it_found(
    engine: Engine, shop: Shop
) -> None:
    receiver = WebhookReceiver()
    with serve(receiver) as url:
        add_endpoint(
            engine.database,
            url=f"{url}/hooks",
            event_types=[WebhookEventType.ORDER_COMPLETED],
            allow_private=True,
            clock=engine.clock,
        )
        created = shop.order((shop.product(), 1))
        engine.clock.advance(seconds=20)
        await engine.pay(created.payment.qr)
        await engine.worker().run(asyncio.Event(), once=True)
    (got,) = receiver.taken()
    assert got.json()["type"] == "order.completed"
    assert got.json()["data"]["order"]["id"] == created.order.id
