"""Webhooks on SQLite and PostgreSQL with real receivers on loopback: a delivery per event per
subscribed endpoint written with the change, signed bodies the specification's verifier accepts,
every event once and in order per order across a receiver's outage, dead letters and replays."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from helpers.receivers import Request, WebhookReceiver, serve
from khqrpay.bootstrap import App
from khqrpay.clock import Clock, FakeClock, SystemClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.events import OrderStatusChanged
from khqrpay.orders.model import EvidenceSource, OrderStatus
from khqrpay.orders.notices import DeliveryStatus, WebhookEventType
from khqrpay.services.completion import record_payment
from khqrpay.services.dispatch import Dispatcher
from khqrpay.services.staff import cancel_order
from khqrpay.services.webhooks import (
    WebhookError,
    add_endpoint,
    list_deliveries,
    remove_endpoint,
    replay_delivery,
)
from khqrpay.settings import Settings

if TYPE_CHECKING:
    from conftest import Shop

E = WebhookEventType
ALL = tuple(WebhookEventType)


def _pay(shop: Shop, order_id: int, **changes: Any) -> str:
    """The verifier recording a payment of the order's first QR; the transfer's hash."""
    with shop.database.read() as uow:
        payment = uow.payments.for_order(order_id)[0]
    evidence = shop.evidence(payment, **changes)
    with shop.database.write() as uow:
        record_payment(
            uow,
            order_id=order_id,
            evidence=evidence,
            source=EvidenceSource.VERIFIER,
            actor="worker:test",
            now_ms=shop.clock.now_ms(),
            payment_id=payment.id,
        )
    return evidence.bakong_hash


Dispatchers = Callable[..., AbstractAsyncContextManager[Dispatcher[Any]]]


@pytest.fixture
def webhooks(database: Database, settings: Settings) -> Dispatchers:
    """The worker's webhook dispatcher, built by the composition root, on `clock`."""

    @asynccontextmanager
    async def build(
        clock: Clock, owner: str = "test-worker", **changes: Any
    ) -> AsyncIterator[Dispatcher[Any]]:
        configured = settings.model_copy(
            update={
                "webhook_timeout_s": 2.0,
                "delivery_retry_base_s": 1.0,
                "delivery_retry_max_interval_s": 60.0,
                **changes,
            }
        )
        app = App(settings=configured, database=database, clock=clock)
        async with app.dispatchers(owner=owner) as (dispatcher, *_telegram):
            yield dispatcher
            await dispatcher.close()

    return build


def _endpoint(database: Database, clock: Clock, url: str, *types: WebhookEventType) -> int:
    return add_endpoint(
        database, url=url, event_types=types or ALL, allow_private=True, clock=clock
    ).id


def test_a_delivery_per_subscribed_endpoint_is_written_with_the_change(
    database: Database, shop: Shop, clock: FakeClock
) -> None:
    every = _endpoint(
        database, clock, "http://127.0.0.1:9/every", E.ORDER_CREATED, E.ORDER_COMPLETED
    )
    paid_only = _endpoint(database, clock, "http://127.0.0.1:9/paid", E.ORDER_COMPLETED)
    _endpoint(database, clock, "http://127.0.0.1:9/cancelled", E.ORDER_CANCELLED)
    gone = _endpoint(database, clock, "http://127.0.0.1:9/gone")
    remove_endpoint(database, gone, clock=clock)

    created = shop.order((shop.product(), 1))
    _pay(shop, created.order.id)

    found = list_deliveries(database)
    assert sorted((d.endpoint_id, d.event_type.value) for d in found) == [
        (every, "order.completed"),
        (every, "order.created"),
        (paid_only, "order.completed"),
    ]
    assert all(d.state.status is DeliveryStatus.PENDING for d in found)
    # One message per event: both endpoints get the same webhook-id for the completion.
    ids = {d.event_type: d.message_id for d in found if d.endpoint_id == paid_only}
    assert ids[E.ORDER_COMPLETED] == next(
        d.message_id for d in found if d.endpoint_id == every and d.event_type is E.ORDER_COMPLETED
    )

    # A change that rolls back leaves no delivery behind.
    def change_that_fails() -> None:
        with database.write() as uow:
            uow.outbox.add_event(
                OrderStatusChanged(
                    order_id=created.order.id,
                    at_ms=clock.now_ms(),
                    from_status=OrderStatus.PENDING,
                    to_status=OrderStatus.COMPLETED,
                    reason=None,
                ),
                now_ms=clock.now_ms(),
            )
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert len(list_deliveries(database)) == 3


async def test_a_delivered_body_is_signed_and_carries_the_order_and_its_payment(
    database: Database, shop: Shop, webhooks: Dispatchers
) -> None:
    receiver = WebhookReceiver()
    with serve(receiver) as url:
        endpoint = add_endpoint(
            database,
            url=f"{url}/hooks",
            event_types=[E.ORDER_COMPLETED],
            allow_private=True,
            clock=shop.clock,
        )
        created = shop.order((shop.product(price="3.00"), 1))
        transfer = _pay(shop, created.order.id)
        # Signatures carry the sending time, which the verifier compares with its own clock.
        async with webhooks(SystemClock()) as dispatcher:
            await dispatcher.run_once()

    (got,) = receiver.requests
    body = Webhook(endpoint.secret.reveal()).verify(got.body, got.headers)
    assert body["type"] == "order.completed"
    assert body["timestamp"] == "2026-11-26T00:00:00.000Z"
    assert body["data"]["event"]["from"] == "PENDING"
    assert body["data"]["event"]["to"] == "COMPLETED"
    order = body["data"]["order"]
    assert (order["id"], order["status"], order["total"], order["currency"]) == (
        created.order.id,
        "COMPLETED",
        "3.00",
        "USD",
    )
    assert "token" not in order  # the customer's key to their order page stays theirs
    assert [line["quantity"] for line in order["lines"]] == [1]
    payment = body["data"]["payment"]
    assert (payment["bakong_hash"], payment["amount"], payment["from_account"]) == (
        transfer,
        "3.00",
        "customer@aba",
    )
    (delivery,) = list_deliveries(database)
    assert delivery.message_id == got.headers["webhook-id"]
    assert (delivery.state.status, delivery.state.attempts, delivery.last_status_code) == (
        DeliveryStatus.DELIVERED,
        1,
        200,
    )
    (attempt,) = delivery.attempt_log
    assert (attempt.status_code, attempt.error) == (200, None)


async def _passes(dispatcher: Dispatcher[Any], clock: FakeClock, count: int) -> None:
    """`count` passes of the dispatcher, the clock a minute on after each (every retry due)."""
    for _ in range(count):
        await dispatcher.run_once()
        clock.advance(seconds=60)


def _types_by_order(requests: list[Request]) -> dict[int, list[str]]:
    taken: defaultdict[int, list[str]] = defaultdict(list)
    for request in requests:
        body = request.json()
        taken[body["data"]["order"]["id"]].append(body["type"])
    return dict(taken)


async def test_a_receiver_down_for_a_while_then_up_gets_every_event_once_in_order_per_order(
    database: Database, shop: Shop, clock: FakeClock, webhooks: Dispatchers
) -> None:
    receiver = WebhookReceiver(status=503)
    with serve(receiver) as url:
        _endpoint(database, clock, f"{url}/hooks")
        product = shop.product(stock=10)
        paid, cancelled, waiting = (shop.order((product, 1)).order.id for _ in range(3))
        _pay(shop, paid)
        cancel_order(database, cancelled, actor="staff:dara", reason="left", clock=clock)
        async with webhooks(clock) as dispatcher:
            await _passes(dispatcher, clock, 3)  # down: every try answered 503
            assert receiver.taken() == []
            # Only the first message of each order was tried: the later ones wait for it.
            assert {r.json()["type"] for r in receiver.requests} == {"order.created"}
            receiver.status = 200
            await _passes(dispatcher, clock, 4)

    taken = receiver.taken()
    assert Counter(r.headers["webhook-id"] for r in taken).most_common(1)[0][1] == 1
    assert _types_by_order(taken) == {
        paid: ["order.created", "order.completed"],
        cancelled: ["order.created", "order.cancelled"],
        waiting: ["order.created"],
    }
    # Nothing about an order arrived, even refused, before its earlier message was taken.
    first_taken: dict[int, float] = {}
    for request in taken:
        first_taken.setdefault(request.json()["data"]["order"]["id"], request.at)
    for request in receiver.requests:
        if request.json()["type"] != "order.created":
            assert request.at > first_taken[request.json()["data"]["order"]["id"]]
    deliveries = list_deliveries(database)
    assert {d.state.status for d in deliveries} == {DeliveryStatus.DELIVERED}
    created_logs = [
        [a.status_code for a in d.attempt_log]
        for d in deliveries
        if d.event_type is E.ORDER_CREATED
    ]
    assert created_logs == [[503, 503, 503, 200]] * 3


async def test_a_delivery_is_dead_lettered_after_its_window_and_replayed_with_the_same_id(
    database: Database, shop: Shop, clock: FakeClock, webhooks: Dispatchers
) -> None:
    receiver = WebhookReceiver(status=500)
    with serve(receiver) as url:
        _endpoint(database, clock, f"{url}/hooks", E.ORDER_CREATED)
        shop.order((shop.product(), 1))
        async with webhooks(clock, delivery_retry_window_s=150.0) as dispatcher:
            await _passes(dispatcher, clock, 5)
            (dead,) = list_deliveries(database, status=DeliveryStatus.DEAD)
            assert (dead.state.attempts, dead.last_status_code, dead.state.last_error) == (
                4,  # at 0, 60 and 120 s, and a last one at the window's end (150 s)
                500,
                "answered HTTP 500",
            )
            tries = len(receiver.requests)
            await _passes(dispatcher, clock, 2)
            assert len(receiver.requests) == tries  # dead: never tried again by itself

            receiver.status = 200
            replayed = replay_delivery(database, dead.id, clock=clock)
            assert replayed.state.status is DeliveryStatus.PENDING
            await _passes(dispatcher, clock, 1)
    (delivered,) = list_deliveries(database)
    assert (delivered.state.status, delivered.state.attempts) == (DeliveryStatus.DELIVERED, 5)
    assert {r.headers["webhook-id"] for r in receiver.requests} == {dead.message_id}
    with database.read() as uow:
        actions = [
            row.action
            for row in uow.connection.execute(
                sa.select(t.audit_log.c.action).where(t.audit_log.c.order_id.is_(None))
            )
        ]
    assert actions[-1] == "webhook_delivery_replayed"


async def test_removing_an_endpoint_gives_up_its_pending_deliveries(
    database: Database, shop: Shop, clock: FakeClock
) -> None:
    endpoint = _endpoint(database, clock, "http://127.0.0.1:9/in", E.ORDER_CREATED)
    shop.order((shop.product(), 1))
    removed = remove_endpoint(database, endpoint, clock=clock)
    assert not removed.active
    (delivery,) = list_deliveries(database, endpoint_id=endpoint)
    assert (delivery.state.status, delivery.state.last_error) == (
        DeliveryStatus.DEAD,
        "endpoint removed",
    )
    with pytest.raises(WebhookError, match="was removed"):
        replay_delivery(database, delivery.id, clock=clock)
    with pytest.raises(WebhookError, match="already removed"):
        remove_endpoint(database, endpoint, clock=clock)
    shop.order((shop.product(), 1))
    assert len(list_deliveries(database)) == 1  # a removed endpoint hears of nothing new


async def test_two_workers_send_each_delivery_once(
    database: Database, shop: Shop, clock: FakeClock, webhooks: Dispatchers
) -> None:
    receivers = [WebhookReceiver(delay_s=0.05), WebhookReceiver(delay_s=0.05)]
    with serve(receivers[0]) as first_url, serve(receivers[1]) as second_url:
        for url in (first_url, second_url):
            _endpoint(database, clock, f"{url}/hooks", E.ORDER_CREATED)
        product = shop.product(stock=50)
        for _ in range(12):
            shop.order((product, 1))
        async with (
            webhooks(clock, owner="worker-a") as first,
            webhooks(clock, owner="worker-b") as second,
        ):
            for _ in range(6):
                await asyncio.gather(first.run_once(), second.run_once())
    for receiver in receivers:
        ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert (len(ids), set(ids.values())) == (12, {1})  # each message once to each endpoint
    assert {d.state.status for d in list_deliveries(database)} == {DeliveryStatus.DELIVERED}


def test_deliveries_are_listed_newest_first_and_filtered(
    database: Database, shop: Shop, clock: FakeClock
) -> None:
    first = _endpoint(database, clock, "http://127.0.0.1:9/a", E.ORDER_CREATED)
    second = _endpoint(database, clock, "http://127.0.0.1:9/b", E.ORDER_CREATED)
    product = shop.product(stock=10)
    orders = [shop.order((product, 1)).order.id for _ in range(3)]
    listed = list_deliveries(database, endpoint_id=second, limit=2)
    assert [d.order_id for d in listed] == orders[:0:-1]
    assert {d.endpoint_id for d in listed} == {second}
    assert len(list_deliveries(database, endpoint_id=first)) == 3
    assert list_deliveries(database, status=DeliveryStatus.DELIVERED) == []
    with pytest.raises(WebhookError, match="no webhook endpoint 99"):
        list_deliveries(database, endpoint_id=99)
    with pytest.raises(WebhookError, match="1 to 1000"):
        list_deliveries(database, limit=0)
