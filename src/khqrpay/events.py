"""Order change events, published after commit so web processes can push them to browsers.

One small Protocol, two buses: an in-process bus (SQLite deployments run the worker and the web
in one process) and a PostgreSQL LISTEN/NOTIFY bus that reaches every process sharing the
database. Events are hints ("order 7 is now COMPLETED"), delivered at least once by the outbox
relay: a subscriber re-reads the order and ignores an `outbox_id` it has already seen. An event
carries its topic and JSON payload as written; `Event.typed()` reads it as the engine's typed
event (`khqrpay.orders.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from khqrpay.orders.events import DomainEvent, EventPayloadError, parse_event

DEFAULT_CHANNEL = "khqrpay_events"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_NOTIFY_PAYLOAD_BYTES = 7999
SUBSCRIBER_QUEUE_SIZE = 1000


class EventError(ValueError):
    """An event that cannot be carried (bad shape, too large) or a bus that is closed."""


def _frozen(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(payload))


@dataclass(frozen=True, slots=True)
class Event:
    """One announced change: `topic` (e.g. `order.status_changed`), its order and a JSON payload."""

    topic: str
    order_id: int | None
    payload: Mapping[str, Any] = field(default_factory=dict)
    outbox_id: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise EventError("an event needs a non-empty topic")
        if self.order_id is not None and (
            not isinstance(self.order_id, int) or isinstance(self.order_id, bool)
        ):
            raise EventError("order_id must be an integer or None")
        object.__setattr__(self, "payload", _frozen(self.payload))

    def to_json(self) -> str:
        return json.dumps(
            {
                "topic": self.topic,
                "order_id": self.order_id,
                "payload": dict(self.payload),
                "outbox_id": self.outbox_id,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    def typed(self) -> DomainEvent:
        """The engine's event this one carries (`khqrpay.orders.events`); `EventError` if its
        topic is unknown or its payload is not that event's."""
        try:
            return parse_event(self.topic, self.payload)
        except EventPayloadError as exc:
            raise EventError(str(exc)) from exc

    @classmethod
    def from_json(cls, text: str) -> Event:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EventError(f"event is not JSON: {exc.msg}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("payload", {}), dict):
            raise EventError("event must be a JSON object with an object payload")
        return cls(
            topic=data.get("topic", ""),
            order_id=data.get("order_id"),
            payload=data.get("payload", {}),
            outbox_id=data.get("outbox_id"),
        )


class EventBus(Protocol):
    """Publish events; `async with bus.subscribe() as events: async for event in events: ...`."""

    async def publish(self, event: Event) -> None: ...

    async def publish_all(self, events: Sequence[Event]) -> None:
        """Publish these events, in order (at once: one round trip on PostgreSQL)."""

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[Event]]: ...

    async def aclose(self) -> None: ...


@dataclass(eq=False)
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event]
    dropped: int = 0

    def offer(self, event: Event) -> None:
        # Runs on the subscriber's own loop: a slow browser loses hints, never blocks the worker.
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1


class InProcessEventBus:
    """Delivers to subscribers in this process, from any thread or event loop."""

    def __init__(self, queue_size: int = SUBSCRIBER_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._subscribers: set[_Subscriber] = set()
        self._lock = threading.Lock()
        self._closed = False

    async def publish(self, event: Event) -> None:
        await self.publish_all([event])

    async def publish_all(self, events: Sequence[Event]) -> None:
        with self._lock:
            if self._closed:
                raise EventError("the event bus is closed")
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                for event in events:
                    subscriber.loop.call_soon_threadsafe(subscriber.offer, event)
            except RuntimeError:  # its loop has closed: the subscriber is gone
                with self._lock:
                    self._subscribers.discard(subscriber)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        subscriber = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(self._queue_size))
        with self._lock:
            if self._closed:
                raise EventError("the event bus is closed")
            self._subscribers.add(subscriber)
        try:
            yield _drain(subscriber.queue)
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            self._subscribers.clear()


async def _drain(queue: asyncio.Queue[Event]) -> AsyncIterator[Event]:
    while True:
        yield await queue.get()


def libpq_conninfo(database_url: str) -> str:
    """A SQLAlchemy URL (`postgresql+psycopg://...`) as a libpq connection string."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        raise EventError(f"not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresEventBus:
    """LISTEN/NOTIFY on one channel; every process connected to the database receives events."""

    def __init__(self, database_url: str, channel: str = DEFAULT_CHANNEL) -> None:
        if not channel.isidentifier():
            raise EventError(f"channel {channel!r} must be a plain identifier")
        self._conninfo = libpq_conninfo(database_url)
        self._channel = channel
        self._publisher: psycopg.AsyncConnection[Any] | None = None
        self._publish_lock = asyncio.Lock()
        self._closed = False

    def __repr__(self) -> str:
        # The conninfo may hold a password: never show it.
        return f"PostgresEventBus(channel={self._channel!r})"

    async def publish(self, event: Event) -> None:
        await self.publish_all([event])

    async def publish_all(self, events: Sequence[Event]) -> None:
        if self._closed:
            raise EventError("the event bus is closed")
        payloads = [event.to_json() for event in events]
        if any(len(payload.encode()) > MAX_NOTIFY_PAYLOAD_BYTES for payload in payloads):
            raise EventError(f"event payload over {MAX_NOTIFY_PAYLOAD_BYTES} bytes")
        async with self._publish_lock:
            try:
                await self._notify(payloads)
            except psycopg.OperationalError:
                # A dropped connection (server restart, idle timeout): reconnect once.
                await self._close_publisher()
                await self._notify(payloads)

    async def _notify(self, payloads: list[str]) -> None:
        if self._publisher is None or self._publisher.closed:
            self._publisher = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        # One statement, one transaction: listeners get the events in array order at its commit.
        await self._publisher.execute(
            "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
            (self._channel, payloads),
        )

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        if self._closed:
            raise EventError("the event bus is closed")
        connection = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        try:
            await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            yield _notifications(connection)
        finally:
            await connection.close()

    async def _close_publisher(self) -> None:
        if self._publisher is not None:
            await self._publisher.close()
            self._publisher = None

    async def aclose(self) -> None:
        self._closed = True
        async with self._publish_lock:
            await self._close_publisher()


async def _notifications(connection: psycopg.AsyncConnection[Any]) -> AsyncIterator[Event]:
    async for notify in connection.notifies():
        try:
            yield Event.from_json(notify.payload)
        except EventError:
            continue  # not ours (someone else NOTIFYing on the channel): skip, do not die


def create_event_bus(database_url: str) -> EventBus:
    """The bus that fits the database: LISTEN/NOTIFY on PostgreSQL, in-process otherwise.

    The composition root creates it once and hands the same instance to the outbox relay and to
    the web layer, which matters for the in-process bus.
    """
    if make_url(database_url).get_backend_name() == "postgresql":
        return PostgresEventBus(database_url)
    return InProcessEventBus()
