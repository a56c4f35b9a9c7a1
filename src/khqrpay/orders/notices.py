"""What the engine tells the world, and when it tries again. Pure: no I/O, no clock, no settings.

Two kinds of outbound news come out of the typed events (`khqrpay.orders.events`):
- webhooks: the public event types an endpoint subscribes to (`WebhookEventType`), one per event
  a shop's other software wants to hear of (`webhook_event_type`);
- Telegram alerts for the shop's people (`alert_for`): a payment, an order that needs review, a
  refund flag, Bakong refusing the token, the token about to expire.

Both are delivered the same way (`DeliveryStatus`, `RetrySchedule`): a row per message and
recipient, retried with exponential backoff and jitter until a deadline, then dead-lettered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from khqrpay.orders.events import (
    BakongTokenExpiring,
    BakongUnauthorized,
    DomainEvent,
    OrderCreated,
    OrderStatusChanged,
    RefundFlagged,
)
from khqrpay.orders.model import OrderStatus

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS


class WebhookEventType(enum.StrEnum):
    """The event types a webhook endpoint may subscribe to: a public contract."""

    ORDER_CREATED = "order.created"
    ORDER_COMPLETED = "order.completed"
    ORDER_NEEDS_REVIEW = "order.needs_review"
    ORDER_EXPIRED = "order.expired"
    ORDER_CANCELLED = "order.cancelled"
    ORDER_REFUND_FLAGGED = "order.refund_flagged"


_STATUS_EVENT_TYPES = {
    OrderStatus.COMPLETED: WebhookEventType.ORDER_COMPLETED,
    OrderStatus.NEEDS_REVIEW: WebhookEventType.ORDER_NEEDS_REVIEW,
    OrderStatus.EXPIRED: WebhookEventType.ORDER_EXPIRED,
    OrderStatus.CANCELLED: WebhookEventType.ORDER_CANCELLED,
}


def webhook_event_type(event: DomainEvent) -> WebhookEventType | None:
    """The public event type `event` is announced as, or None when webhooks do not carry it
    (a new QR, evidence attached, a flag cleared, a refund, Bakong news)."""
    match event:
        case OrderCreated():
            return WebhookEventType.ORDER_CREATED
        case OrderStatusChanged():
            return _STATUS_EVENT_TYPES.get(event.to_status)
        case RefundFlagged():
            return WebhookEventType.ORDER_REFUND_FLAGGED
        case _:
            return None


def parse_event_types(text: str) -> tuple[WebhookEventType, ...]:
    """`order.completed,order.expired` as event types, in the order given, each once; a
    `ValueError` naming the unknown one and the known ones."""
    chosen: list[WebhookEventType] = []
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        try:
            event_type = WebhookEventType(name)
        except ValueError:
            known = ", ".join(member.value for member in WebhookEventType)
            raise ValueError(f"unknown event type {name!r}: use {known}") from None
        if event_type not in chosen:
            chosen.append(event_type)
    if not chosen:
        raise ValueError("name at least one event type")
    return tuple(chosen)


class AlertKind(enum.StrEnum):
    """What a Telegram alert tells the shop."""

    PAYMENT = "payment"
    NEEDS_REVIEW = "needs_review"
    REFUND_FLAG = "refund_flag"
    BAKONG_UNAUTHORIZED = "bakong_unauthorized"
    TOKEN_EXPIRING = "token_expiring"  # noqa: S105 - an alert kind, not a secret


# Bakong refusing the token is announced at every refused probe (every few minutes): people hear
# of it at most once in this window.
UNAUTHORIZED_ALERT_EVERY_MS = 6 * _HOUR_MS


class TokenStage(enum.StrEnum):
    """How near the token's expiry is; each stage is announced once per token."""

    SOON = "soon"
    LAST_DAY = "last_day"
    EXPIRED = "expired"


def token_stage(*, expires_at_ms: int, now_ms: int) -> TokenStage:
    """How near a token expiring at `expires_at_ms` is to its end (the caller decides from which
    distance it warns)."""
    left_ms = expires_at_ms - now_ms
    if left_ms <= 0:
        return TokenStage.EXPIRED
    if left_ms <= _DAY_MS:
        return TokenStage.LAST_DAY
    return TokenStage.SOON


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert to send; alerts with the same `dedupe_key` (when set) are sent once."""

    kind: AlertKind
    dedupe_key: str | None = None


def alert_for(event: DomainEvent) -> Alert | None:
    """The alert `event` raises, or None when people need not hear of it at once."""
    match event:
        case OrderStatusChanged(to_status=OrderStatus.COMPLETED):
            return Alert(AlertKind.PAYMENT)
        case OrderStatusChanged(to_status=OrderStatus.NEEDS_REVIEW):
            return Alert(AlertKind.NEEDS_REVIEW)
        case RefundFlagged():
            return Alert(AlertKind.REFUND_FLAG)
        case BakongUnauthorized():
            window = event.at_ms // UNAUTHORIZED_ALERT_EVERY_MS
            return Alert(AlertKind.BAKONG_UNAUTHORIZED, f"bakong_unauthorized:{window}")
        case BakongTokenExpiring():
            # One alert per token (its expiry) and stage.
            stage = token_stage(expires_at_ms=event.expires_at_ms, now_ms=event.at_ms)
            return Alert(AlertKind.TOKEN_EXPIRING, f"token_expiring:{event.expires_at_ms}:{stage}")
        case _:
            return None


class DeliveryStatus(enum.StrEnum):
    """PENDING: to be tried (again); DELIVERED: the recipient took it; DEAD: given up (the retry
    window ended, the recipient refused it for good, or its endpoint was removed)."""

    PENDING = "PENDING"
    DELIVERED = "DELIVERED"
    DEAD = "DEAD"


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    """Exponential backoff with jitter: after the n-th failure wait about `first_ms * 2^(n-1)`,
    at most `max_interval_ms`, until `window_ms` after the first try; then give up."""

    first_ms: int
    max_interval_ms: int
    window_ms: int

    def __post_init__(self) -> None:
        if not 0 < self.first_ms <= self.max_interval_ms:
            raise ValueError("the first retry interval must be positive and at most the longest")
        if self.window_ms <= 0:
            raise ValueError("the retry window must be positive")

    def interval_ms(self, failures: int, jitter: float) -> int:
        """The wait after `failures` failures (≥ 1); `jitter` in [0, 1) spreads it over the upper
        half of the step ("equal jitter"), so retries of many messages never come back at once
        yet never sooner than half the step."""
        if failures < 1:
            raise ValueError("a retry follows at least one failure")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        step = min(self.max_interval_ms, self.first_ms << min(failures - 1, 62))
        return step // 2 + round(step / 2 * jitter)

    def deadline_ms(self, started_ms: int) -> int:
        return started_ms + self.window_ms

    def next_attempt_ms(
        self,
        *,
        failures: int,
        now_ms: int,
        started_ms: int,
        jitter: float,
        not_before_ms: int | None = None,
    ) -> int | None:
        """When to try again after `failures` failures, or None: the window that began at
        `started_ms` has ended, dead-letter it. `not_before_ms`: the recipient asked us to wait
        (Retry-After); the last try is at the deadline at the latest."""
        deadline = self.deadline_ms(started_ms)
        if now_ms >= deadline:
            return None
        wait = now_ms + self.interval_ms(failures, jitter)
        if not_before_ms is not None:
            wait = max(wait, not_before_ms)
        return min(wait, deadline)


class SigningSecret:
    """A webhook endpoint's Standard Webhooks secret (`whsec_` + base64): kept to sign, never
    shown by `repr`/`str`; `reveal()` gives it to the signer and, once, to the owner."""

    __slots__ = ("_value",)
    PREFIX = "whsec_"

    def __init__(self, value: str) -> None:
        if not value.startswith(self.PREFIX) or len(value) <= len(self.PREFIX):
            raise ValueError("a signing secret is whsec_ followed by base64")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SigningSecret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "SigningSecret('whsec_**********')"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    id: int
    url: str
    event_types: tuple[WebhookEventType, ...]
    # Delivery to loopback, private, link-local... addresses, allowed by the owner explicitly.
    allow_private: bool
    created_ms: int
    removed_ms: int | None
    secret: SigningSecret

    @property
    def active(self) -> bool:
        return self.removed_ms is None


@dataclass(frozen=True, slots=True)
class DeliveryState:
    """Where one message to one recipient stands (a webhook delivery, a Telegram message)."""

    status: DeliveryStatus
    attempts: int
    created_ms: int
    # When the current round of tries began (creation, or the last replay): its deadline follows.
    started_ms: int
    next_attempt_ms: int
    last_attempt_ms: int | None
    last_error: str | None
    # When it was delivered or given up.
    done_ms: int | None


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    """One HTTP try: the answer's status code (None: no answer) and how long it took."""

    at_ms: int
    duration_ms: int
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One event's message to one endpoint; `message_id` is its `webhook-id`."""

    id: int
    endpoint_id: int
    message_id: str
    event_type: WebhookEventType
    order_id: int
    state: DeliveryState
    attempt_log: tuple[WebhookAttempt, ...] = ()

    @property
    def last_status_code(self) -> int | None:
        """The last try's answer (None: none yet, or no answer)."""
        return self.attempt_log[-1].status_code if self.attempt_log else None
