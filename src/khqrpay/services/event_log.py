"""Reading the outbox as the log of everything that happened, for live pages and replays.

The outbox rows are written in the transaction of the change they announce, so a reader of the
log never sees an event for a change that did not commit, and misses none that did.
"""

from __future__ import annotations

from khqrpay.db import Database
from khqrpay.orders.model import OutboxEvent

LOG_PAGE = 500


def events_after(
    database: Database, after_id: int, *, order_id: int | None = None, limit: int = LOG_PAGE
) -> list[OutboxEvent]:
    """Events written after `after_id`, oldest first (only one order's when `order_id` is set)."""
    with database.read() as uow:
        return uow.outbox.after(after_id, limit=limit, order_id=order_id)


def last_event_id(database: Database) -> int:
    with database.read() as uow:
        return uow.outbox.last_id()
