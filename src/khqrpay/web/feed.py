"""Every event of the outbox, in order, to the pages open in this web process.

A web process must hear every change whichever process made it (a worker on another machine, or
another process on the same SQLite file), so the feed reads the outbox itself: it tails the table
by id. The event bus (in-process on SQLite, LISTEN/NOTIFY on PostgreSQL) only rings the bell so
the feed reads at once instead of at its next poll.

Ids are handed out before commit, so on PostgreSQL an event may become visible after a higher
one: a missing id is waited for (`gap_grace_s`) before it is given up as rolled back. Each page
gets events after the id it last saw (SSE's Last-Event-ID), replayed from the table, so nothing is
lost across a dropped connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from khqrpay.db import Database
from khqrpay.events import EventBus
from khqrpay.logging import get_logger
from khqrpay.orders.model import OutboxEvent
from khqrpay.services.event_log import events_after, last_event_id

SUBSCRIBER_QUEUE_SIZE = 256

_log = get_logger(__name__)


@dataclass(eq=False)
class _Subscriber:
    order_id: int | None
    queue: asyncio.Queue[OutboxEvent | None] = field(
        default_factory=lambda: asyncio.Queue(SUBSCRIBER_QUEUE_SIZE)
    )

    def offer(self, event: OutboxEvent) -> None:
        if self.order_id is not None and event.order_id != self.order_id:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            # A page that stopped reading: end its stream; it reconnects and replays from its id.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait(None)


class EventFeed:
    """Tails the outbox and fans events out to subscribers (each page's stream)."""

    def __init__(
        self,
        database: Database,
        *,
        poll_interval_s: float = 0.25,
        gap_grace_s: float = 5.0,
    ) -> None:
        self._database = database
        self._poll_interval_s = poll_interval_s
        self._gap_grace_s = gap_grace_s
        self._subscribers: set[_Subscriber] = set()
        self._wake = asyncio.Event()
        self._floor = 0  # every id up to here is delivered or given up
        self._delivered_above: set[int] = set()
        self._gap_since: float | None = None

    async def run(self, stop: asyncio.Event, bell: EventBus | None = None) -> None:
        """Tail the outbox until `stop` is set. `bell`: a bus whose events mean "read now"."""
        self._floor = await asyncio.to_thread(last_event_id, self._database)
        ringing = asyncio.create_task(self._listen(bell)) if bell is not None else None
        try:
            while not stop.is_set():
                try:
                    await self.poll()
                except Exception:
                    _log.exception("reading the outbox failed; trying again")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
        finally:
            if ringing is not None:
                ringing.cancel()
                await asyncio.gather(ringing, return_exceptions=True)

    async def _listen(self, bell: EventBus) -> None:
        while True:
            try:
                async with bell.subscribe() as events:
                    async for _ in events:
                        self._wake.set()
            except Exception:
                _log.warning("event bus unavailable; the feed polls until it is back")
                await asyncio.sleep(self._poll_interval_s * 4)

    async def poll(self) -> None:
        """Read what is new and hand it to the subscribers."""
        events = await asyncio.to_thread(events_after, self._database, self._floor)
        for event in events:
            if event.id in self._delivered_above:
                continue
            self._delivered_above.add(event.id)
            for subscriber in list(self._subscribers):
                subscriber.offer(event)
        self._advance_floor()

    def _advance_floor(self) -> None:
        while self._delivered_above:
            if self._floor + 1 in self._delivered_above:
                self._delivered_above.discard(self._floor + 1)
                self._floor += 1
                self._gap_since = None
                continue
            now = time.monotonic()
            if self._gap_since is None:
                self._gap_since = now
            if now - self._gap_since < self._gap_grace_s:
                return
            self._floor += 1  # waited long enough: that transaction rolled back
            self._gap_since = None

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *, after_id: int | None = None, order_id: int | None = None
    ) -> AsyncIterator[AsyncIterator[OutboxEvent]]:
        """Events from now on (or after `after_id`, replayed from the outbox first), only
        `order_id`'s when given. The stream ends if the reader falls too far behind."""
        subscriber = _Subscriber(order_id)
        self._subscribers.add(subscriber)
        try:
            replay: list[OutboxEvent] = []
            if after_id is not None:
                replay = await asyncio.to_thread(
                    events_after, self._database, after_id, order_id=order_id
                )
            yield _stream(replay, subscriber.queue, after_id or 0)
        finally:
            self._subscribers.discard(subscriber)


async def _stream(
    replay: list[OutboxEvent], queue: asyncio.Queue[OutboxEvent | None], after_id: int
) -> AsyncIterator[OutboxEvent]:
    replayed = {event.id for event in replay}
    for event in replay:
        yield event
    while (live := await queue.get()) is not None:
        # The feed may hand out an event the reader already had (written before its
        # Last-Event-ID, read by the feed only now): never twice.
        if live.id > after_id and live.id not in replayed:
            yield live
