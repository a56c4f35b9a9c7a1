"""The events the engine announces, one frozen dataclass each, and their JSON payloads. Pure.

A service writes an event to the outbox in the transaction of the change it announces
(`uow.outbox.add_event(event, now_ms=...)`, which stores `to_payload()`); the relay publishes it
and consumers read it back typed with `parse_event(topic, payload)`. Payload keys are a contract
with every consumer (and with rows already written): add keys, never rename or remove one.
"""

from __future__ import annotations

import enum
import types
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, get_type_hints

from khqrpay.orders.model import OrderStatus


class Topic(enum.StrEnum):
    """Every outbox topic."""

    ORDER_CREATED = "order.created"
    ORDER_QR_CREATED = "order.qr_created"
    ORDER_STATUS_CHANGED = "order.status_changed"
    ORDER_REFUND_FLAGGED = "order.refund_flagged"
    ORDER_REFUND_FLAG_CLEARED = "order.refund_flag_cleared"
    ORDER_EVIDENCE_ATTACHED = "order.evidence_attached"
    # A transfer found for one order's QR is recorded for another order (see Action.CONFLICT);
    # used when the conflict neither changes the order's status nor flags a refund.
    ORDER_PAYMENT_CONFLICT = "order.payment_conflict"
    # Bakong refused the token: payment checks are paused until someone renews it.
    BAKONG_UNAUTHORIZED = "bakong.unauthorized"
    # The token's expiry (its JWT `exp`) is near or past: renew it before checks stop.
    BAKONG_TOKEN_EXPIRING = "bakong.token_expiring"  # noqa: S105 - an event name, not a secret


class EventPayloadError(ValueError):
    """A payload that is not the event its topic names (unknown topic, missing or bad key)."""


def _key(spec: Field[Any]) -> str:
    """The payload key of a field: its name, unless the key is a Python keyword (`from`)."""
    return str(spec.metadata.get("key", spec.name))


class _Payload:
    """What every event shares: its topic and its payload, both ways."""

    __slots__ = ()
    TOPIC: ClassVar[Topic]

    def to_payload(self) -> dict[str, object]:
        """The JSON object stored in the outbox and carried by the bus."""
        return {
            _key(spec): _plain(getattr(self, spec.name))
            for spec in fields(self)  # type: ignore[arg-type]
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, object]) -> Any:
        """The event a payload describes; `EventPayloadError` names what is missing or wrong.
        Keys this version does not know are ignored (a newer writer may add some)."""
        hints = get_type_hints(cls)
        values: dict[str, object] = {}
        for spec in fields(cls):  # type: ignore[arg-type]
            key = _key(spec)
            if key not in payload:
                if spec.default is MISSING:
                    raise EventPayloadError(f"a {cls.TOPIC} event needs {key!r}")
                continue
            values[spec.name] = _read(hints[spec.name], payload[key], f"{cls.TOPIC} {key!r}")
        return cls(**values)


def _plain(value: object) -> object:
    return value.value if isinstance(value, enum.Enum) else value


def _read(hint: Any, value: object, where: str) -> object:
    """`value` as the field's type: int (never bool), str, OrderStatus, or one of them | None."""
    if isinstance(hint, types.UnionType):
        if value is None and type(None) in hint.__args__:
            return None
        (hint,) = (arg for arg in hint.__args__ if arg is not type(None))
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    if hint is OrderStatus and isinstance(value, str) and value in OrderStatus.__members__:
        return OrderStatus(value)
    raise EventPayloadError(f"{where} must be {getattr(hint, '__name__', hint)}, not {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class _AboutOrder(_Payload):
    order_id: int
    at_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _PaymentNews(_AboutOrder):
    """A change a payment may have caused: `short_hash` names that Bakong payment, if one did."""

    reason: str | None
    short_hash: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class _MaybeDisputed(_PaymentNews):
    """Set on every CONFLICT (both orders of the disputed transfer), None otherwise."""

    paid_order_id: int | None = None
    recorded_order_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCreated(_AboutOrder):
    TOPIC: ClassVar[Topic] = Topic.ORDER_CREATED
    status: OrderStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class QrCreated(_AboutOrder):
    """A pending order got a fresh KHQR code."""

    TOPIC: ClassVar[Topic] = Topic.ORDER_QR_CREATED
    payment_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusChanged(_MaybeDisputed):
    TOPIC: ClassVar[Topic] = Topic.ORDER_STATUS_CHANGED
    from_status: OrderStatus = field(metadata={"key": "from"})
    to_status: OrderStatus = field(metadata={"key": "to"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundFlagged(_MaybeDisputed):
    """Money arrived for an order already paid or refunded (or a conflict on one): refund it."""

    TOPIC: ClassVar[Topic] = Topic.ORDER_REFUND_FLAGGED


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentConflict(_MaybeDisputed):
    """A CONFLICT that neither changed the order's status nor flagged a refund (its writer always
    sets both order ids)."""

    TOPIC: ClassVar[Topic] = Topic.ORDER_PAYMENT_CONFLICT


@dataclass(frozen=True, slots=True, kw_only=True)
class EvidenceAttached(_PaymentNews):
    """Bakong's record of the payment staff marked paid without a hash, attached to the order."""

    TOPIC: ClassVar[Topic] = Topic.ORDER_EVIDENCE_ATTACHED


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundFlagCleared(_AboutOrder):
    """Staff settled an order's refund flag (`reference`: the refund's, or None when accepting the
    payment settled it)."""

    TOPIC: ClassVar[Topic] = Topic.ORDER_REFUND_FLAG_CLEARED
    reason: str | None
    reference: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _AboutBakong(_Payload):
    """News about the shop's Bakong access, seen by `worker`; about no order."""

    at_ms: int
    worker: str

    @property
    def order_id(self) -> None:
        """About no order."""
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class BakongUnauthorized(_AboutBakong):
    """Bakong refused the token; `worker` is the worker that was refused."""

    TOPIC: ClassVar[Topic] = Topic.BAKONG_UNAUTHORIZED
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BakongTokenExpiring(_AboutBakong):
    """The token expires at `expires_at_ms` (its JWT `exp`), within the warning days or already
    past: once Bakong refuses it, no payment is found."""

    TOPIC: ClassVar[Topic] = Topic.BAKONG_TOKEN_EXPIRING
    expires_at_ms: int


OrderEvent = (
    OrderCreated
    | QrCreated
    | OrderStatusChanged
    | RefundFlagged
    | RefundFlagCleared
    | EvidenceAttached
    | PaymentConflict
)
DomainEvent = OrderEvent | BakongUnauthorized | BakongTokenExpiring

EVENT_TYPES: Mapping[Topic, type[DomainEvent]] = {
    event_type.TOPIC: event_type
    for event_type in (
        OrderCreated,
        QrCreated,
        OrderStatusChanged,
        RefundFlagged,
        RefundFlagCleared,
        EvidenceAttached,
        PaymentConflict,
        BakongUnauthorized,
        BakongTokenExpiring,
    )
}


def parse_event(topic: str, payload: Mapping[str, object]) -> DomainEvent:
    """The typed event of an outbox row or a bus message; `EventPayloadError` if it is none."""
    try:
        event_type = EVENT_TYPES[Topic(topic)]
    except ValueError:
        raise EventPayloadError(f"unknown event topic {topic!r}") from None
    event: DomainEvent = event_type.from_payload(payload)
    return event
