"""Telegram alerts: `telegram_alerts` (one per event people should hear of, written with the
change) and `telegram_messages` (one per alert per chat, written by the worker)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from khqrpay.db import tables as t
from khqrpay.db.repositories.deliveries import DeliveryQueue, delivery_state, new_delivery
from khqrpay.orders.notices import Alert, AlertKind, DeliveryState

_alerts = t.telegram_alerts
_messages = t.telegram_messages


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """An alert whose messages are not written yet, with the event it announces."""

    id: int
    kind: AlertKind
    order_id: int | None
    created_ms: int
    event_payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TelegramMessage:
    id: int
    alert_id: int
    chat_id: str
    language: str
    text: str
    state: DeliveryState


@dataclass(frozen=True, slots=True)
class SentAlert:
    """A message to a chat with the alert it tells of."""

    message: TelegramMessage
    kind: AlertKind
    order_id: int | None


class TelegramRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.queue = DeliveryQueue(connection, _messages, target="chat_id", lane=("chat_id",))

    def add_alerts(self, alerts: Sequence[tuple[Alert, int, int | None]], *, now_ms: int) -> None:
        """Write alerts, each `(alert, outbox id, order id)`, in the caller's transaction, in one
        statement; one whose dedupe key was written before is left out."""
        if not alerts:
            return
        values = [
            {
                "outbox_id": outbox_id,
                "kind": alert.kind.value,
                "order_id": order_id,
                "dedupe_key": alert.dedupe_key,
                "created_ms": now_ms,
            }
            for alert, outbox_id, order_id in alerts
        ]
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        # Rows as parameters, not in the statement: it is compiled once and cached.
        self._connection.execute(dialect.insert(_alerts).on_conflict_do_nothing(), values)

    def has_alert(self, dedupe_key: str) -> bool:
        return (
            self._connection.execute(
                sa.select(_alerts.c.id).where(_alerts.c.dedupe_key == dedupe_key)
            ).first()
            is not None
        )

    def has_unexpanded(self) -> bool:
        query = sa.select(_alerts.c.id).where(_alerts.c.expanded_ms.is_(None)).limit(1)
        return self._connection.execute(query).first() is not None

    def unexpanded(self, limit: int) -> list[PendingAlert]:
        """The oldest alerts with no messages written yet, locked (PostgreSQL: skipping those
        another worker holds)."""
        query = (
            sa.select(_alerts, t.outbox.c.payload)
            .join(t.outbox, t.outbox.c.id == _alerts.c.outbox_id)
            .where(_alerts.c.expanded_ms.is_(None))
            .order_by(_alerts.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=_alerts)
        )
        return [
            PendingAlert(
                id=row.id,
                kind=AlertKind(row.kind),
                order_id=row.order_id,
                created_ms=row.created_ms,
                event_payload=dict(row.payload),
            )
            for row in self._connection.execute(query)
        ]

    def expand(
        self, alert_id: int, messages: Sequence[tuple[str, str, str]], *, now_ms: int
    ) -> None:
        """Write the alert's messages, `(chat_id, language, text)` each, and mark it expanded
        (with no messages: an alert nobody is to be told of)."""
        if messages:
            self._connection.execute(
                _messages.insert(),
                [
                    {
                        "alert_id": alert_id,
                        "chat_id": chat_id,
                        "language": language,
                        "text": text,
                        **new_delivery(now_ms),
                    }
                    for chat_id, language, text in messages
                ],
            )
        self._connection.execute(
            _alerts.update().where(_alerts.c.id == alert_id).values(expanded_ms=now_ms)
        )

    def messages(self, message_ids: Sequence[int]) -> list[TelegramMessage]:
        """Messages by id, in id order."""
        if not message_ids:
            return []
        return [
            _message(row)
            for row in self._connection.execute(
                sa.select(_messages)
                .where(_messages.c.id.in_(list(message_ids)))
                .order_by(_messages.c.id)
            )
        ]

    def recent(self, limit: int) -> list[SentAlert]:
        """The latest messages, newest first, with their alerts."""
        query = (
            sa.select(_messages, _alerts.c.kind, _alerts.c.order_id)
            .join(_alerts, _alerts.c.id == _messages.c.alert_id)
            .order_by(_messages.c.id.desc())
            .limit(limit)
        )
        return [
            SentAlert(_message(row), AlertKind(row.kind), row.order_id)
            for row in self._connection.execute(query)
        ]


def _message(row: sa.Row[Any]) -> TelegramMessage:
    return TelegramMessage(
        id=row.id,
        alert_id=row.alert_id,
        chat_id=row.chat_id,
        language=row.language,
        text=row.text,
        state=delivery_state(row),
    )
