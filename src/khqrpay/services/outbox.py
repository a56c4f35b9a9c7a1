"""The outbox relay: publish events written with the changes they announce, then mark them.

At least once: an event is marked published in the transaction that read it, after the bus took
it; a crash in between publishes it again (subscribers dedupe on `outbox_id`). The rows stay
locked while they are published (`FOR UPDATE SKIP LOCKED` on PostgreSQL), so several workers
relay different events instead of the same ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.events import Event, EventBus

RELAY_BATCH = 200
PUBLISH_TIMEOUT_S = 10.0


def _relay_batch(
    database: Database, publish: Callable[[list[Event]], None], clock: Clock, limit: int
) -> int:
    with database.write() as uow:
        events = uow.outbox.lock_unpublished(limit)
        if events:
            publish([Event(e.topic, e.order_id, e.payload, outbox_id=e.id) for e in events])
            uow.outbox.mark_published([event.id for event in events], now_ms=clock.now_ms())
    return len(events)


async def relay_outbox(
    database: Database, bus: EventBus, clock: Clock, *, limit: int = RELAY_BATCH
) -> int:
    """Publish up to `limit` unpublished events in order; how many were published. A publish
    that fails leaves the whole batch unpublished, to be relayed again."""
    loop = asyncio.get_running_loop()

    def publish(events: list[Event]) -> None:
        # The database work runs in a thread; the bus lives on this event loop. The whole batch
        # at once: one hop to the loop and one round trip, not one per event.
        asyncio.run_coroutine_threadsafe(bus.publish_all(events), loop).result(PUBLISH_TIMEOUT_S)

    return await asyncio.to_thread(_relay_batch, database, publish, clock, limit)
