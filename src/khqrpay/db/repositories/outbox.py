"""Events written with the changes they announce: `outbox`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from khqrpay.db import tables as t
from khqrpay.orders.events import DomainEvent
from khqrpay.orders.model import OutboxEvent


class OutboxRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add_event(self, event: DomainEvent, *, now_ms: int) -> None:
        """Write `event` (its topic, order and payload) to be relayed after commit."""
        self._connection.execute(
            t.outbox.insert().values(
                created_ms=now_ms,
                topic=event.TOPIC,
                order_id=event.order_id,
                payload=dict(event.to_payload()),
            )
        )

    def unpublished(self, limit: int) -> list[OutboxEvent]:
        """The oldest events not yet relayed, in the order they were written."""
        return self._oldest_unpublished(limit, lock=False)

    def lock_unpublished(self, limit: int) -> list[OutboxEvent]:
        """Like `unpublished`, locked until the transaction ends; on PostgreSQL rows another
        relay has locked are skipped (`FOR UPDATE SKIP LOCKED`), so relays share out the events."""
        return self._oldest_unpublished(limit, lock=True)

    def _oldest_unpublished(self, limit: int, *, lock: bool) -> list[OutboxEvent]:
        query = (
            sa.select(t.outbox)
            .where(t.outbox.c.published_ms.is_(None))
            .order_by(t.outbox.c.id)
            .limit(limit)
        )
        if lock:
            query = query.with_for_update(skip_locked=True)
        return [_event(row) for row in self._connection.execute(query)]

    def mark_published(self, event_ids: Sequence[int], *, now_ms: int) -> None:
        self._connection.execute(
            t.outbox.update()
            .where(t.outbox.c.id.in_(list(event_ids)), t.outbox.c.published_ms.is_(None))
            .values(published_ms=now_ms, attempts=t.outbox.c.attempts + 1)
        )

    def after(self, after_id: int, *, limit: int, order_id: int | None = None) -> list[OutboxEvent]:
        """Events written after `after_id` (published or not), in id order; only one order's
        when `order_id` is given."""
        query = sa.select(t.outbox).where(t.outbox.c.id > after_id)
        if order_id is not None:
            query = query.where(t.outbox.c.order_id == order_id)
        return [
            _event(row)
            for row in self._connection.execute(query.order_by(t.outbox.c.id).limit(limit))
        ]

    def last_id(self) -> int:
        """The newest event's id (0 when there is none)."""
        return int(self._connection.execute(sa.select(sa.func.max(t.outbox.c.id))).scalar() or 0)


def _event(row: sa.Row[Any]) -> OutboxEvent:
    return OutboxEvent(
        id=row.id,
        created_ms=row.created_ms,
        topic=row.topic,
        order_id=row.order_id,
        payload=row.payload,
        published_ms=row.published_ms,
        attempts=row.attempts,
    )
