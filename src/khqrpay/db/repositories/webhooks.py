"""Webhooks: `webhook_endpoints` and their event types, `webhook_messages`, `webhook_deliveries`
(one per message per endpoint) and `webhook_attempts` (the delivery log)."""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from khqrpay.db import tables as t
from khqrpay.db.repositories.deliveries import DeliveryQueue, delivery_state, new_delivery
from khqrpay.orders.notices import (
    DeliveryStatus,
    SigningSecret,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)

_deliveries = t.webhook_deliveries
_messages = t.webhook_messages
_endpoints = t.webhook_endpoints
_subscriptions = t.webhook_endpoint_events


@dataclass(frozen=True, slots=True)
class OutgoingWebhook:
    """A claimed delivery with what sending it needs: its endpoint and its message (`body` None
    until built, `event_payload` the outbox event it announces)."""

    delivery_id: int
    attempts: int
    started_ms: int
    endpoint: WebhookEndpoint
    message_row_id: int
    message_id: str
    event_type: WebhookEventType
    order_id: int
    event_payload: dict[str, Any]
    body: str | None


def new_message_id() -> str:
    """A `webhook-id`: unique, and the same on every try of the message."""
    return f"msg_{secrets.token_urlsafe(18)}"


class WebhookRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.queue = DeliveryQueue(
            connection, _deliveries, target="endpoint_id", lane=("endpoint_id", "order_id")
        )

    # Endpoints ----------------------------------------------------------------------------------

    def add_endpoint(
        self,
        *,
        url: str,
        secret: SigningSecret,
        event_types: Sequence[WebhookEventType],
        allow_private: bool,
        now_ms: int,
    ) -> WebhookEndpoint:
        endpoint_id = self._connection.execute(
            _endpoints.insert()
            .values(url=url, secret=secret.reveal(), allow_private=allow_private, created_ms=now_ms)
            .returning(_endpoints.c.id)
        ).scalar_one()
        self._connection.execute(
            _subscriptions.insert(),
            [{"endpoint_id": endpoint_id, "event_type": e.value} for e in event_types],
        )
        endpoint = self.endpoint(endpoint_id)
        assert endpoint is not None
        return endpoint

    def endpoint(self, endpoint_id: int) -> WebhookEndpoint | None:
        found = self._endpoints(_endpoints.c.id == endpoint_id)
        return found[0] if found else None

    def endpoints(self, *, include_removed: bool = False) -> list[WebhookEndpoint]:
        """Endpoints by id; removed ones only when asked."""
        return self._endpoints(None if include_removed else _endpoints.c.removed_ms.is_(None))

    def _endpoints(self, where: sa.ColumnElement[bool] | None) -> list[WebhookEndpoint]:
        query = sa.select(_endpoints).order_by(_endpoints.c.id)
        if where is not None:
            query = query.where(where)
        rows = list(self._connection.execute(query))
        types = self._event_types([row.id for row in rows])
        return [_endpoint(row, types[row.id]) for row in rows]

    def _event_types(self, endpoint_ids: list[int]) -> dict[int, tuple[WebhookEventType, ...]]:
        order = {event_type: n for n, event_type in enumerate(WebhookEventType)}
        found: defaultdict[int, list[WebhookEventType]] = defaultdict(list)
        if endpoint_ids:
            for endpoint_id, event_type in self._connection.execute(
                sa.select(_subscriptions.c.endpoint_id, _subscriptions.c.event_type).where(
                    _subscriptions.c.endpoint_id.in_(endpoint_ids)
                )
            ):
                found[endpoint_id].append(WebhookEventType(event_type))
        return {i: tuple(sorted(found[i], key=order.__getitem__)) for i in endpoint_ids}

    def remove_endpoint(self, endpoint_id: int, *, now_ms: int) -> bool:
        """Stop delivering to it: its pending deliveries are dead-lettered and its secret wiped
        (its log stays). False if it was already removed."""
        removed = self._connection.execute(
            _endpoints.update()
            .where(_endpoints.c.id == endpoint_id, _endpoints.c.removed_ms.is_(None))
            .values(removed_ms=now_ms, secret=SigningSecret.PREFIX + "removed")
        ).rowcount
        if removed:
            self.queue.give_up(
                _deliveries.c.endpoint_id == endpoint_id, now_ms=now_ms, error="endpoint removed"
            )
        return removed == 1

    # Messages: written with the change they announce ------------------------------------------

    def fan_out(self, events: Sequence[tuple[int, WebhookEventType, int]], *, now_ms: int) -> int:
        """For each event, `(outbox id, event type, order id)`: a message and one delivery per
        active endpoint subscribed to its type, in the caller's transaction, the endpoints looked
        up once; how many deliveries (none: nothing is written)."""
        if not events:
            return 0
        subscribed: defaultdict[str, list[int]] = defaultdict(list)
        for endpoint_id, event_type in self._connection.execute(
            sa.select(_endpoints.c.id, _subscriptions.c.event_type)
            .join(_subscriptions, _subscriptions.c.endpoint_id == _endpoints.c.id)
            .where(
                _subscriptions.c.event_type.in_(sorted({e.value for _, e, _ in events})),
                _endpoints.c.removed_ms.is_(None),
            )
            .order_by(_endpoints.c.id)
        ):
            subscribed[event_type].append(endpoint_id)
        wanted = [event for event in events if subscribed[event[1].value]]
        if not wanted:
            return 0
        rows = self._connection.execute(
            _messages.insert().returning(_messages.c.outbox_id, _messages.c.id),
            [
                {
                    "public_id": new_message_id(),
                    "outbox_id": outbox_id,
                    "event_type": event_type.value,
                    "order_id": order_id,
                    "created_ms": now_ms,
                }
                for outbox_id, event_type, order_id in wanted
            ],
        )
        message_ids = {row.outbox_id: row.id for row in rows}
        deliveries = [
            {
                "message_id": message_ids[outbox_id],
                "endpoint_id": endpoint_id,
                "order_id": order_id,
                **new_delivery(now_ms),
            }
            for outbox_id, event_type, order_id in wanted
            for endpoint_id in subscribed[event_type.value]
        ]
        self._connection.execute(_deliveries.insert(), deliveries)
        return len(deliveries)

    def set_body(self, message_row_id: int, body: str) -> str:
        """Keep the body built for a message; the one kept (another worker may have built it
        first, and every try must carry the same body)."""
        self._connection.execute(
            _messages.update()
            .where(_messages.c.id == message_row_id, _messages.c.body.is_(None))
            .values(body=body)
        )
        return str(
            self._connection.execute(
                sa.select(_messages.c.body).where(_messages.c.id == message_row_id)
            ).scalar_one()
        )

    # Sending ------------------------------------------------------------------------------------

    def outgoing(self, delivery_ids: Sequence[int]) -> list[OutgoingWebhook]:
        """Claimed deliveries with their endpoint and message, in id order."""
        if not delivery_ids:
            return []
        rows = list(
            self._connection.execute(
                sa.select(
                    _deliveries.c.id,
                    _deliveries.c.endpoint_id,
                    _deliveries.c.attempts,
                    _deliveries.c.started_ms,
                    _messages.c.id.label("message_row_id"),
                    _messages.c.public_id,
                    _messages.c.event_type,
                    _messages.c.order_id,
                    _messages.c.body,
                    t.outbox.c.payload,
                )
                .join(_messages, _messages.c.id == _deliveries.c.message_id)
                .join(t.outbox, t.outbox.c.id == _messages.c.outbox_id)
                .where(_deliveries.c.id.in_(list(delivery_ids)))
                .order_by(_deliveries.c.id)
            )
        )
        endpoints = {
            e.id: e for e in self._endpoints(_endpoints.c.id.in_({r.endpoint_id for r in rows}))
        }
        return [
            OutgoingWebhook(
                delivery_id=row.id,
                attempts=row.attempts,
                started_ms=row.started_ms,
                endpoint=endpoints[row.endpoint_id],
                message_row_id=row.message_row_id,
                message_id=row.public_id,
                event_type=WebhookEventType(row.event_type),
                order_id=row.order_id,
                event_payload=dict(row.payload),
                body=row.body,
            )
            for row in rows
        ]

    def log_attempts(self, attempts: Sequence[tuple[int, WebhookAttempt]]) -> None:
        """Add tries to the delivery log: `(delivery_id, attempt)` each."""
        if attempts:
            self._connection.execute(
                t.webhook_attempts.insert(),
                [
                    {
                        "delivery_id": delivery_id,
                        "at_ms": attempt.at_ms,
                        "duration_ms": attempt.duration_ms,
                        "status_code": attempt.status_code,
                        "error": attempt.error,
                    }
                    for delivery_id, attempt in attempts
                ],
            )

    # Reading the log ----------------------------------------------------------------------------

    def delivery(self, delivery_id: int) -> WebhookDelivery | None:
        found = self.deliveries(delivery_id=delivery_id, limit=1)
        return found[0] if found else None

    def deliveries(
        self,
        *,
        endpoint_id: int | None = None,
        status: DeliveryStatus | None = None,
        delivery_id: int | None = None,
        before_id: int | None = None,
        limit: int,
    ) -> list[WebhookDelivery]:
        """Deliveries, newest first (older than `before_id`: the next page), each with its
        attempt log (oldest try first)."""
        query = sa.select(_deliveries, _messages.c.public_id, _messages.c.event_type).join(
            _messages, _messages.c.id == _deliveries.c.message_id
        )
        if endpoint_id is not None:
            query = query.where(_deliveries.c.endpoint_id == endpoint_id)
        if status is not None:
            query = query.where(_deliveries.c.status == status.value)
        if delivery_id is not None:
            query = query.where(_deliveries.c.id == delivery_id)
        if before_id is not None:
            query = query.where(_deliveries.c.id < before_id)
        rows = list(self._connection.execute(query.order_by(_deliveries.c.id.desc()).limit(limit)))
        log = self._attempt_log([row.id for row in rows])
        return [
            WebhookDelivery(
                id=row.id,
                endpoint_id=row.endpoint_id,
                message_id=row.public_id,
                event_type=WebhookEventType(row.event_type),
                order_id=row.order_id,
                state=delivery_state(row),
                attempt_log=tuple(log[row.id]),
            )
            for row in rows
        ]

    def count_by_status(
        self, statuses: Sequence[DeliveryStatus], *, active_only: bool
    ) -> dict[int, dict[DeliveryStatus, int]]:
        """Each endpoint's deliveries in `statuses`, by status (endpoints with some; with
        `active_only`, not removed ones). Statuses are written into the statement so that the
        partial indexes on pending and dead rows serve it."""
        wanted: list[sa.ColumnElement[str]] = [
            sa.literal_column(f"'{status.value}'") for status in statuses
        ]
        query = (
            sa.select(_deliveries.c.endpoint_id, _deliveries.c.status, sa.func.count())
            .where(_deliveries.c.status.in_(wanted))
            .group_by(_deliveries.c.endpoint_id, _deliveries.c.status)
        )
        if active_only:
            query = query.join(_endpoints, _endpoints.c.id == _deliveries.c.endpoint_id).where(
                _endpoints.c.removed_ms.is_(None)
            )
        counts: defaultdict[int, dict[DeliveryStatus, int]] = defaultdict(dict)
        for endpoint_id, status, count in self._connection.execute(query):
            counts[endpoint_id][DeliveryStatus(status)] = count
        return dict(counts)

    def last_attempts(self) -> dict[int, WebhookAttempt]:
        """Each endpoint's latest try (endpoints tried at least once)."""
        attempts = t.webhook_attempts
        latest = (
            sa.select(sa.func.max(attempts.c.id))
            .join(_deliveries, _deliveries.c.id == attempts.c.delivery_id)
            .group_by(_deliveries.c.endpoint_id)
        )
        rows = self._connection.execute(
            sa.select(_deliveries.c.endpoint_id, attempts)
            .join(_deliveries, _deliveries.c.id == attempts.c.delivery_id)
            .where(attempts.c.id.in_(latest))
        )
        return {row.endpoint_id: _attempt(row) for row in rows}

    def _attempt_log(self, delivery_ids: list[int]) -> defaultdict[int, list[WebhookAttempt]]:
        log: defaultdict[int, list[WebhookAttempt]] = defaultdict(list)
        if delivery_ids:
            attempts = t.webhook_attempts
            for row in self._connection.execute(
                sa.select(attempts)
                .where(attempts.c.delivery_id.in_(delivery_ids))
                .order_by(attempts.c.id)
            ):
                log[row.delivery_id].append(_attempt(row))
        return log


def _attempt(row: sa.Row[Any]) -> WebhookAttempt:
    return WebhookAttempt(
        at_ms=row.at_ms, duration_ms=row.duration_ms, status_code=row.status_code, error=row.error
    )


def _endpoint(row: sa.Row[Any], event_types: tuple[WebhookEventType, ...]) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row.id,
        url=row.url,
        event_types=event_types,
        allow_private=row.allow_private,
        created_ms=row.created_ms,
        removed_ms=row.removed_ms,
        secret=SigningSecret(row.secret),
    )
