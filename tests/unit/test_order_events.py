"""Typed events: each one's payload keeps the keys consumers already read, and reads back equal."""

from __future__ import annotations

import pytest

from khqrpay.events import Event, EventError
from khqrpay.orders.events import (
    EVENT_TYPES,
    BakongTokenExpiring,
    BakongUnauthorized,
    DomainEvent,
    EventPayloadError,
    EvidenceAttached,
    OrderCreated,
    OrderStatusChanged,
    PaymentConflict,
    QrCreated,
    RefundFlagCleared,
    RefundFlagged,
    Topic,
    parse_event,
)
from khqrpay.orders.model import OrderStatus

AT = 1_800_000_000_000
# One of each event, with the payload keys written before events were typed (and those added).
EXAMPLES: list[tuple[DomainEvent, set[str]]] = [
    (
        OrderCreated(order_id=1, status=OrderStatus.PENDING, at_ms=AT),
        {"order_id", "status", "at_ms"},
    ),
    (QrCreated(order_id=1, payment_id=2, at_ms=AT), {"order_id", "payment_id", "at_ms"}),
    (
        OrderStatusChanged(
            order_id=1,
            at_ms=AT,
            from_status=OrderStatus.PENDING,
            to_status=OrderStatus.COMPLETED,
            reason=None,
            short_hash="3f2a9c1b",
        ),
        {"order_id", "at_ms", "from", "to", "reason", "short_hash"}
        | {"paid_order_id", "recorded_order_id"},
    ),
    (
        RefundFlagged(order_id=1, at_ms=AT, reason="paid twice", short_hash="0badf00d"),
        {"order_id", "at_ms", "reason", "short_hash", "paid_order_id", "recorded_order_id"},
    ),
    (
        RefundFlagCleared(order_id=1, at_ms=AT, reason="refunded", reference="FT123"),
        {"order_id", "at_ms", "reason", "reference"},
    ),
    (
        EvidenceAttached(order_id=1, at_ms=AT, reason=None, short_hash="0badf00d"),
        {"order_id", "at_ms", "reason", "short_hash"},
    ),
    (
        PaymentConflict(
            order_id=1,
            at_ms=AT,
            reason="recorded for order 2",
            short_hash="0badf00d",
            paid_order_id=1,
            recorded_order_id=2,
        ),
        {"order_id", "at_ms", "reason", "short_hash", "paid_order_id", "recorded_order_id"},
    ),
    (BakongUnauthorized(at_ms=AT, error="401", worker="host:1:ab"), {"at_ms", "error", "worker"}),
    (
        BakongTokenExpiring(at_ms=AT, expires_at_ms=AT + 86_400_000, worker="host:1:ab"),
        {"at_ms", "expires_at_ms", "worker"},
    ),
]


def test_every_topic_has_exactly_one_event_type() -> None:
    assert set(EVENT_TYPES) == set(Topic)
    assert {type(event) for event, _ in EXAMPLES} == set(EVENT_TYPES.values())


@pytest.mark.parametrize(("event", "keys"), EXAMPLES, ids=lambda e: type(e).__name__)
def test_an_event_survives_its_payload_with_the_keys_consumers_read(
    event: DomainEvent, keys: set[str]
) -> None:
    payload = event.to_payload()
    assert set(payload) == keys
    assert parse_event(event.TOPIC, payload) == event
    # Through the bus's JSON too, as a subscriber in another process reads it.
    carried = Event(event.TOPIC, event.order_id, payload, outbox_id=9)
    assert Event.from_json(carried.to_json()).typed() == event


def test_a_status_change_keeps_its_from_and_to_keys() -> None:
    payload = OrderStatusChanged(
        order_id=7,
        at_ms=AT,
        from_status=OrderStatus.PENDING,
        to_status=OrderStatus.EXPIRED,
        reason="no payment",
    ).to_payload()
    assert (payload["from"], payload["to"]) == ("PENDING", "EXPIRED")


def test_a_payload_written_before_the_added_keys_still_reads() -> None:
    """Rows already in the outbox lack the keys added since (short_hash on an expiry)."""
    old = {"order_id": 7, "at_ms": AT, "from": "PENDING", "to": "EXPIRED", "reason": "none"}
    event = parse_event("order.status_changed", old)
    assert isinstance(event, OrderStatusChanged)
    assert (event.to_status, event.short_hash, event.paid_order_id) == (
        OrderStatus.EXPIRED,
        None,
        None,
    )
    # A key a newer writer added is ignored, not an error.
    assert parse_event("order.created", {"order_id": 1, "status": "PENDING", "at_ms": 1, "x": 0})


@pytest.mark.parametrize(
    ("topic", "payload", "message"),
    [
        ("order.shipped", {}, "unknown event topic 'order.shipped'"),
        ("order.created", {"order_id": 1, "at_ms": 1}, "needs 'status'"),
        ("order.created", {"order_id": "1", "status": "PENDING", "at_ms": 1}, "'order_id' must"),
        ("order.created", {"order_id": True, "status": "PENDING", "at_ms": 1}, "'order_id' must"),
        ("order.created", {"order_id": 1, "status": "LOST", "at_ms": 1}, "'status' must"),
        ("bakong.unauthorized", {"at_ms": 1, "error": None, "worker": "w"}, "'error' must"),
    ],
)
def test_a_payload_that_is_not_its_event_is_refused_with_what_is_wrong(
    topic: str, payload: dict[str, object], message: str
) -> None:
    with pytest.raises(EventPayloadError, match=message):
        parse_event(topic, payload)
    with pytest.raises(EventError, match=message):
        Event(topic, None, payload).typed()
