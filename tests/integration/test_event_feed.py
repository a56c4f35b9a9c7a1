"""The outbox feed behind every live page: a reader resuming after its Last-Event-ID gets each
later event once, and never one it already had, whatever the feed had read so far."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from khqrpay.db import Database
from khqrpay.web.feed import EventFeed

if TYPE_CHECKING:
    from conftest import Shop

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_a_resumed_stream_never_repeats_what_came_before_its_last_event_id(
    shop: Shop, database: Database
) -> None:
    product = shop.product()
    for _ in range(6):
        shop.order((product, 1))
    with database.read() as uow:
        ids = [event.id for event in uow.outbox.after(0, limit=100)]
    last_seen = ids[2]
    feed = EventFeed(database)  # has read nothing yet: its next poll hands out every event
    async with feed.subscribe(after_id=last_seen) as events:
        await feed.poll()
        newest = shop.order((product, 1)).order.id
        await feed.poll()
        received = []
        async with asyncio.timeout(5):
            async for event in events:
                received.append(event.id)
                if event.order_id == newest:
                    break
    with database.read() as uow:
        written = [event.id for event in uow.outbox.after(0, limit=100)]
    assert received == [event_id for event_id in written if event_id > last_seen]
