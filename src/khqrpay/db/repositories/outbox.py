"""Events written with the changes they announce: `outbox`, and in the same transaction what
each event sends out: a webhook delivery per subscribed endpoint, a Telegram alert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from khqrpay.db import tables as t
from khqrpay.db.repositories.telegram import TelegramRepository
from khqrpay.db.repositories.webhooks import WebhookRepository
from khqrpay.orders.events import DomainEvent
from khqrpay.orders.model import OutboxEvent
from khqrpay.orders.notices import alert_for, webhook_event_type


class OutboxRepository:
    def __init__(
        self, connection: Connection, webhooks: WebhookRepository, telegram: TelegramRepository
    ) -> None:
        self._connection = connection
        self._webhooks = webhooks
        self._telegram = telegram

    def add_event(self, event: DomainEvent, *, now_ms: int) -> int:
        """Write `event` (its topic, order and payload) to be relayed after commit, with what it
        sends out: a webhook delivery to each active endpoint subscribed to its public type, a
        Telegram alert. Every change announces itself here, so none can skip either. Its id."""
        (outbox_id,) = self.add_events([event], now_ms=now_ms)
        return outbox_id

    def add_events(self, events: Sequence[DomainEvent], *, now_ms: int) -> list[int]:
        """`add_event` for several events, in the order given, in a few statements (one for the
        events, one endpoint lookup, one for the alerts); their ids."""
        if not events:
            return []
        outbox_ids: list[int] = list(
            self._connection.execute(
                t.outbox.insert().returning(t.outbox.c.id, sort_by_parameter_order=True),
                [
                    {
                        "created_ms": now_ms,
                        "topic": event.TOPIC,
                        "order_id": event.order_id,
                        "payload": dict(event.to_payload()),
                    }
                    for event in events
                ],
            ).scalars()
        )
        announced = [
            (outbox_id, event_type, event.order_id)
            for outbox_id, event in zip(outbox_ids, events, strict=True)
            if (event_type := webhook_event_type(event)) is not None and event.order_id is not None
        ]
        self._webhooks.fan_out(announced, now_ms=now_ms)
        alerts = [
            (alert, outbox_id, event.order_id)
            for outbox_id, event in zip(outbox_ids, events, strict=True)
            if (alert := alert_for(event)) is not None
        ]
        self._telegram.add_alerts(alerts, now_ms=now_ms)
        return outbox_ids

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
