"""The two event buses: in-process (any thread, any loop) and PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import secrets
import threading
from typing import TYPE_CHECKING

import psycopg
import pytest

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.events import (
    Event,
    EventError,
    InProcessEventBus,
    PostgresEventBus,
    create_event_bus,
    libpq_conninfo,
)
from khqrpay.services.outbox import relay_outbox

if TYPE_CHECKING:
    from conftest import PaidOrders, Shop, StartWorker


def test_event_round_trips_through_json_and_is_immutable() -> None:
    event = Event("order.status_changed", 7, {"status": "COMPLETED"}, outbox_id=3)
    assert Event.from_json(event.to_json()) == event
    with pytest.raises(TypeError):
        event.payload["status"] = "PENDING"  # type: ignore[index]


@pytest.mark.parametrize(
    "text", ["not json", "[]", '{"topic": "", "order_id": 1}', '{"topic": "t", "order_id": "1"}']
)
def test_malformed_events_are_refused(text: str) -> None:
    with pytest.raises(EventError):
        Event.from_json(text)


async def test_in_process_bus_delivers_to_every_subscriber_in_order() -> None:
    bus = InProcessEventBus()
    async with bus.subscribe() as first, bus.subscribe() as second:
        await bus.publish(Event("order.status_changed", 1))
        await bus.publish(Event("order.status_changed", 2))
        for events in (first, second):
            got = [await asyncio.wait_for(anext(events), 1) for _ in range(2)]
            assert [e.order_id for e in got] == [1, 2]
    assert bus.subscriber_count == 0


async def test_in_process_bus_reaches_a_subscriber_on_another_threads_loop() -> None:
    bus = InProcessEventBus()
    subscribed = threading.Event()
    received: list[Event] = []

    async def listen() -> None:
        async with bus.subscribe() as events:
            subscribed.set()
            received.append(await asyncio.wait_for(anext(events), 5))

    thread = threading.Thread(target=asyncio.run, args=(listen(),))
    thread.start()
    assert await asyncio.to_thread(subscribed.wait, 5)
    await bus.publish(Event("order.status_changed", 42, {"status": "EXPIRED"}))
    await asyncio.to_thread(thread.join, 5)
    assert [(e.order_id, e.payload["status"]) for e in received] == [(42, "EXPIRED")]


async def test_in_process_bus_drops_hints_for_a_full_subscriber_without_blocking() -> None:
    bus = InProcessEventBus(queue_size=2)
    async with bus.subscribe() as events:
        for order_id in range(5):
            await bus.publish(Event("order.status_changed", order_id))
        await asyncio.sleep(0)  # let call_soon_threadsafe deliveries run
        got = [await asyncio.wait_for(anext(events), 1) for _ in range(2)]
        assert [e.order_id for e in got] == [0, 1]


async def test_closed_in_process_bus_refuses_work() -> None:
    bus = InProcessEventBus()
    await bus.aclose()
    with pytest.raises(EventError):
        await bus.publish(Event("order.status_changed", 1))


def test_create_event_bus_picks_the_bus_for_the_database() -> None:
    assert isinstance(create_event_bus("sqlite:///x.sqlite3"), InProcessEventBus)
    bus = create_event_bus("postgresql+psycopg://app:s3cret@db.example:5432/shop")
    assert isinstance(bus, PostgresEventBus)
    assert "s3cret" not in repr(bus)
    assert libpq_conninfo("postgresql+psycopg://app:s3cret@db:5432/shop") == (
        "postgresql://app:s3cret@db:5432/shop"
    )


@pytest.fixture
def channel() -> str:
    return f"khqrpay_test_{secrets.token_hex(4)}"


async def test_postgres_bus_carries_events_between_connections(
    postgres_server_url: str, channel: str
) -> None:
    publisher = PostgresEventBus(postgres_server_url, channel)
    listener = PostgresEventBus(postgres_server_url, channel)
    try:
        async with listener.subscribe() as events:
            # A stranger's NOTIFY on the same channel is skipped, not fatal.
            conninfo = libpq_conninfo(postgres_server_url)
            async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as other:
                await other.execute("SELECT pg_notify(%s, 'garbage')", (channel,))
            await publisher.publish(Event("order.status_changed", 9, {"status": "COMPLETED"}, 1))
            event = await asyncio.wait_for(anext(events), 5)
            # A batch (the relay's) goes in one statement, and arrives in order.
            batch = [Event("order.status_changed", n, {"n": n}, n) for n in range(2, 302)]
            await publisher.publish_all(batch)
            got = [await asyncio.wait_for(anext(events), 5) for _ in batch]
        assert (event.order_id, event.payload["status"], event.outbox_id) == (9, "COMPLETED", 1)
        assert got == batch
    finally:
        await publisher.aclose()
        await listener.aclose()


async def test_postgres_bus_refuses_payloads_notify_cannot_carry(
    postgres_server_url: str, channel: str
) -> None:
    bus = PostgresEventBus(postgres_server_url, channel)
    try:
        with pytest.raises(EventError, match="payload"):
            await bus.publish(Event("order.status_changed", 1, {"blob": "x" * 9000}))
    finally:
        await bus.aclose()
    with pytest.raises(EventError):
        PostgresEventBus(postgres_server_url, "bad channel; DROP TABLE orders")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_order_completed_in_a_worker_process_reaches_a_listener(
    database_url: str, paid_orders: PaidOrders, start_worker: StartWorker
) -> None:
    _product_id, (created,) = paid_orders(1)
    bus = PostgresEventBus(database_url)
    try:
        async with bus.subscribe() as events:
            worker = start_worker("--once")
            assert await asyncio.to_thread(worker.wait, 30) == 0, worker.output()
            received: list[Event] = []
            while not any(e.topic == "order.status_changed" for e in received):
                received.append(await asyncio.wait_for(anext(events), 5))
    finally:
        await bus.aclose()
    change = next(e for e in received if e.topic == "order.status_changed")
    assert change.order_id == created.order.id
    assert (change.payload["from"], change.payload["to"]) == ("PENDING", "COMPLETED")
    assert {e.topic for e in received} == {"order.created", "order.status_changed"}


async def test_the_relay_publishes_each_outbox_event_at_least_once(
    database: Database, shop: Shop, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    broken = InProcessEventBus()
    await broken.aclose()
    with pytest.raises(EventError):
        await relay_outbox(database, broken, clock)
    with database.read() as uow:
        assert [e.topic for e in uow.outbox.unpublished(10)] == ["order.created"]

    bus = InProcessEventBus()
    async with bus.subscribe() as events:
        assert await relay_outbox(database, bus, clock) == 1
        event = await asyncio.wait_for(anext(events), 1)
        assert await relay_outbox(database, bus, clock) == 0
    assert (event.topic, event.order_id) == ("order.created", created.order.id)
    with database.read() as uow:
        assert uow.outbox.unpublished(10) == []
