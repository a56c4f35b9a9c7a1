"""Webhooks: endpoints an owner registers, and the delivery of the events they subscribe to.

Public use cases (each owns its transaction): `add_endpoint`, `list_endpoints`,
`endpoint_summaries`, `remove_endpoint`, `list_deliveries`, `replay_delivery`. Deliveries are
written with the change they announce (`uow.outbox.add_event`); the worker sends them through
`WebhookChannel`.

A message's body, built once when it is first sent and the same on every try:

    {"type": "order.completed", "timestamp": "<the event's time>",
     "data": {"event": {<what changed: from, to, reason, short_hash, ...>},
              "order": <the order (OrderView) as it is when the message is built, without the
                        customer's token>,
              "payment": <the Bakong payment behind the change (RecordedEvidenceView) or null>}}
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from khqrpay.clock import Clock, ms_to_datetime
from khqrpay.db import Database, UnitOfWork
from khqrpay.db.repositories.deliveries import DeliveryQueue
from khqrpay.db.repositories.webhooks import OutgoingWebhook
from khqrpay.orders.model import validate_actor
from khqrpay.orders.notices import (
    DeliveryStatus,
    SigningSecret,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEventType,
)
from khqrpay.outbound.addresses import AddressRefused, parse_webhook_url, refuse_local_name
from khqrpay.outbound.port import SendOutcome, WebhookRequest, WebhookSender
from khqrpay.services.dispatch import Finished, QueueChannel
from khqrpay.services.orders import read_order_details
from khqrpay.services.schemas import OrderView, RecordedEvidenceView, iso_ms

SECRET_BYTES = 24
MAX_LISTED = 1000
# The event payload's keys the body carries as `data.event` (the rest are the order and time).
_ENVELOPE_KEYS = ("order_id", "at_ms")


class WebhookError(ValueError):
    """A webhook request refused (bad URL, unknown endpoint or delivery); nothing was changed."""


class PrivateAddressError(WebhookError):
    """A URL naming this machine or a private network, without the owner allowing it."""

    def __init__(self, message: str, *, host: str) -> None:
        super().__init__(message)
        self.host = host


def new_secret() -> SigningSecret:
    """A Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return SigningSecret(
        SigningSecret.PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()
    )


def add_endpoint(
    database: Database,
    *,
    url: str,
    event_types: Sequence[WebhookEventType],
    allow_private: bool,
    clock: Clock,
    actor: str = "cli",
) -> WebhookEndpoint:
    """Register an endpoint for `event_types`, with a new signing secret (on the endpoint
    returned: show it to the owner once). Refuses a URL that is not http(s), carries
    credentials, or names an address that is surely not public, unless `allow_private`."""
    validate_actor(actor)
    try:
        parsed = parse_webhook_url(url)
    except AddressRefused as exc:
        raise WebhookError(str(exc)) from None
    try:
        refuse_local_name(parsed, allow_private=allow_private)
    except AddressRefused as exc:
        raise PrivateAddressError(str(exc), host=parsed.host) from None
    chosen = tuple(dict.fromkeys(event_types))
    if not chosen:
        raise WebhookError("an endpoint subscribes to at least one event type")
    now_ms = clock.now_ms()
    with database.write() as uow:
        endpoint = uow.webhooks.add_endpoint(
            url=parsed.url,
            secret=new_secret(),
            event_types=chosen,
            allow_private=allow_private,
            now_ms=now_ms,
        )
        uow.audit.append(
            order_id=None,
            at_ms=now_ms,
            actor=actor,
            action="webhook_endpoint_added",
            details={
                "endpoint_id": endpoint.id,
                "url": endpoint.url,
                "event_types": [e.value for e in chosen],
                "allow_private": allow_private,
            },
        )
    return endpoint


def list_endpoints(database: Database, *, include_removed: bool = False) -> list[WebhookEndpoint]:
    with database.read() as uow:
        return uow.webhooks.endpoints(include_removed=include_removed)


@dataclass(frozen=True, slots=True)
class EndpointSummary:
    """An endpoint with how its deliveries stand: waiting to be sent, given up, the last try."""

    endpoint: WebhookEndpoint
    pending: int
    dead: int
    last_attempt: WebhookAttempt | None


def endpoint_summaries(database: Database) -> list[EndpointSummary]:
    """The endpoints in use, each with its pending and dead deliveries and its latest try."""
    unfinished = (DeliveryStatus.PENDING, DeliveryStatus.DEAD)
    with database.read() as uow:
        endpoints = uow.webhooks.endpoints()
        counts = uow.webhooks.count_by_status(unfinished, active_only=True)
        last = uow.webhooks.last_attempts()
    return [
        EndpointSummary(
            endpoint=endpoint,
            pending=counts.get(endpoint.id, {}).get(DeliveryStatus.PENDING, 0),
            dead=counts.get(endpoint.id, {}).get(DeliveryStatus.DEAD, 0),
            last_attempt=last.get(endpoint.id),
        )
        for endpoint in endpoints
    ]


def dead_deliveries(uow: UnitOfWork) -> int:
    """Deliveries given up to endpoints still in use (replayable once their receiver works)."""
    counts = uow.webhooks.count_by_status((DeliveryStatus.DEAD,), active_only=True)
    return sum(by_status[DeliveryStatus.DEAD] for by_status in counts.values())


def remove_endpoint(
    database: Database, endpoint_id: int, *, clock: Clock, actor: str = "cli"
) -> WebhookEndpoint:
    """Stop delivering to the endpoint: its pending deliveries are dead-lettered, its secret
    forgotten; its delivery log stays."""
    validate_actor(actor)
    now_ms = clock.now_ms()
    with database.write() as uow:
        endpoint = _endpoint(uow, endpoint_id)
        if not uow.webhooks.remove_endpoint(endpoint_id, now_ms=now_ms):
            raise WebhookError(f"webhook endpoint {endpoint_id} was already removed")
        uow.audit.append(
            order_id=None,
            at_ms=now_ms,
            actor=actor,
            action="webhook_endpoint_removed",
            details={"endpoint_id": endpoint_id, "url": endpoint.url},
        )
        removed = uow.webhooks.endpoint(endpoint_id)
    assert removed is not None
    return removed


def _endpoint(uow: UnitOfWork, endpoint_id: int) -> WebhookEndpoint:
    endpoint = uow.webhooks.endpoint(endpoint_id)
    if endpoint is None:
        raise WebhookError(f"no webhook endpoint {endpoint_id}")
    return endpoint


def list_deliveries(
    database: Database,
    *,
    endpoint_id: int | None = None,
    status: DeliveryStatus | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[WebhookDelivery]:
    """Deliveries, newest first, each with its log of tries; `before` a delivery id: the ones
    older than it (the next page)."""
    if not 1 <= limit <= MAX_LISTED:
        raise WebhookError(f"list 1 to {MAX_LISTED} deliveries")
    with database.read() as uow:
        if endpoint_id is not None:
            _endpoint(uow, endpoint_id)
        return uow.webhooks.deliveries(
            endpoint_id=endpoint_id, status=status, before_id=before, limit=limit
        )


def replay_delivery(
    database: Database, delivery_id: int, *, clock: Clock, actor: str = "cli"
) -> WebhookDelivery:
    """Send a delivery again from now, with the same `webhook-id` and body and a new retry
    window (a dead one, once its receiver is fixed; a delivered one the receiver lost). Later
    messages about the same order wait for it, as they would have."""
    validate_actor(actor)
    now_ms = clock.now_ms()
    with database.write() as uow:
        delivery = uow.webhooks.delivery(delivery_id)
        if delivery is None:
            raise WebhookError(f"no webhook delivery {delivery_id}")
        if not _endpoint(uow, delivery.endpoint_id).active:
            raise WebhookError(f"webhook endpoint {delivery.endpoint_id} was removed")
        uow.webhooks.queue.restart(delivery_id, now_ms=now_ms)
        uow.audit.append(
            order_id=None,
            at_ms=now_ms,
            actor=actor,
            action="webhook_delivery_replayed",
            details={"delivery_id": delivery_id, "previous_status": delivery.state.status.value},
        )
        replayed = uow.webhooks.delivery(delivery_id)
    assert replayed is not None
    return replayed


def webhook_body(uow: UnitOfWork, outgoing: OutgoingWebhook) -> str:
    """The JSON text of a message (see the module's docstring)."""
    details = read_order_details(uow, outgoing.order_id)
    event = outgoing.event_payload
    short_hash = event.get("short_hash")
    payment = next(
        (
            RecordedEvidenceView.recorded(recorded).json_dict()
            for recorded in details.evidence
            if short_hash is not None and recorded.evidence.short_hash == short_hash
        ),
        None,
    )
    order = OrderView.details(details).json_dict()
    # The customer's key to their order page: it stays with the customer.
    del order["token"]
    body = {
        "type": outgoing.event_type.value,
        "timestamp": iso_ms(ms_to_datetime(int(event["at_ms"]))),
        "data": {
            "event": {key: value for key, value in event.items() if key not in _ENVELOPE_KEYS},
            "order": order,
            "payment": payment,
        },
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class WebhookJob:
    outgoing: OutgoingWebhook

    @property
    def id(self) -> int:
        return self.outgoing.delivery_id

    @property
    def target(self) -> int:
        return self.outgoing.endpoint.id


@dataclass(kw_only=True)
class WebhookChannel(QueueChannel[WebhookJob]):
    """Webhook deliveries for the dispatcher: claimed per endpoint, signed and sent, logged."""

    sender: WebhookSender
    per_target: int
    name: str = "webhooks"
    pause_all_on_retry_after: bool = False

    def queue(self, uow: UnitOfWork) -> DeliveryQueue:
        return uow.webhooks.queue

    def prepare(self, now_ms: int) -> None:
        """Deliveries are written with their events: nothing to prepare."""

    def load(self, uow: UnitOfWork, row_ids: Sequence[int]) -> list[WebhookJob]:
        return [WebhookJob(outgoing) for outgoing in uow.webhooks.outgoing(row_ids)]

    def ready(self, jobs: list[WebhookJob]) -> list[WebhookJob]:
        """Build the bodies of messages sent for the first time (off the claim's transaction,
        which on SQLite holds the write lock) and keep them: every try sends the same."""
        unbuilt = {j.outgoing.message_row_id: j.outgoing for j in jobs if j.outgoing.body is None}
        if not unbuilt:
            return jobs
        with self.database.read() as uow:
            built = {row_id: webhook_body(uow, o) for row_id, o in unbuilt.items()}
        with self.database.write() as uow:
            kept = {row_id: uow.webhooks.set_body(row_id, body) for row_id, body in built.items()}
        return [
            job
            if job.outgoing.body is not None
            else WebhookJob(replace(job.outgoing, body=kept[job.outgoing.message_row_id]))
            for job in jobs
        ]

    async def send(self, job: WebhookJob) -> SendOutcome:
        outgoing = job.outgoing
        assert outgoing.body is not None
        return await self.sender.send(
            WebhookRequest(
                endpoint_id=outgoing.endpoint.id,
                url=outgoing.endpoint.url,
                secret=outgoing.endpoint.secret,
                allow_private=outgoing.endpoint.allow_private,
                message_id=outgoing.message_id,
                body=outgoing.body,
            )
        )

    def log(self, uow: UnitOfWork, finished: Sequence[Finished[WebhookJob]]) -> None:
        uow.webhooks.log_attempts(
            [
                (
                    done.job.id,
                    WebhookAttempt(
                        at_ms=done.at_ms,
                        duration_ms=done.outcome.duration_ms,
                        status_code=done.outcome.status_code,
                        error=done.outcome.error,
                    ),
                )
                for done in finished
            ]
        )

    def attempts_so_far(self, job: WebhookJob) -> tuple[int, int]:
        return job.outgoing.attempts, job.outgoing.started_ms
