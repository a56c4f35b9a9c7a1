"""Orders made and read by API clients. A client sees only the orders it made: any other order
is "not found", exactly like one that does not exist.

An order is made from lines (stock checked here and taken on payment, as in the shop) or from an
amount and the client's reference (the client keeps its own stock). An Idempotency-Key makes a
retried request safe: the same key with the same request gives the same order; with another
request it is refused. The key is claimed in the transaction that makes the order, so two
identical requests at the same moment make one order (see `IdempotencyRepository.claim`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.money import Money
from khqrpay.orders.api_clients import ApiKey, IdempotencyConflict, validate_idempotency_key
from khqrpay.orders.model import LineRequest, Order, OrderError, OrderNotFound, OrderStatus
from khqrpay.services.checkout import (
    CreatedOrder,
    Customer,
    create_amount_order_in,
    create_order_in,
)
from khqrpay.services.orders import OrderDetails, order_details
from khqrpay.settings import Settings

MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What a client asks for: `lines`, or an `amount` with its `reference`; the customer."""

    lines: tuple[LineRequest, ...] = ()
    amount: Money | None = None
    reference: str | None = None
    customer: Customer = field(default_factory=Customer)

    def __post_init__(self) -> None:
        if bool(self.lines) == (self.amount is not None):
            raise OrderError("an order has either lines or an amount, not both")
        if (self.amount is None) != (self.reference is None):
            raise OrderError("an order by amount needs a reference, and only it has one")

    def fingerprint(self) -> str:
        """The request's meaning, whatever its JSON spacing or key order: what an
        Idempotency-Key is bound to."""
        meaning = {
            "lines": [[line.sku, line.quantity] for line in self.lines],
            "amount": None if self.amount is None else str(self.amount),
            "reference": self.reference,
            "customer": [self.customer.name, self.customer.phone],
        }
        canonical = json.dumps(meaning, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    details: OrderDetails
    # False: an earlier request with the same Idempotency-Key made this order.
    created: bool


def place_order(
    database: Database,
    *,
    client: ApiKey,
    request: OrderRequest,
    idempotency_key: str | None,
    settings: Settings,
    clock: Clock,
) -> PlacedOrder:
    """Make the order (or find the one this Idempotency-Key made); `IdempotencyConflict` if the
    key was used with another request."""
    key = None if idempotency_key is None else validate_idempotency_key(idempotency_key)
    with database.write() as uow:
        if key is not None:
            earlier = uow.idempotency.claim(
                client=client.client,
                key=key,
                fingerprint=request.fingerprint(),
                now_ms=clock.now_ms(),
            )
            if earlier is not None:
                if earlier.fingerprint != request.fingerprint() or earlier.order_id is None:
                    raise IdempotencyConflict(
                        "this Idempotency-Key was already used with another request"
                    )
                order_id = earlier.order_id
                created = None
            else:
                created = _create(uow, client, request, settings, clock)
                order_id = created.order.id
                uow.idempotency.attach_order(client=client.client, key=key, order_id=order_id)
        else:
            created = _create(uow, client, request, settings, clock)
            order_id = created.order.id
    return PlacedOrder(order_details(database, order_id), created=created is not None)


def _create(
    uow: UnitOfWork, client: ApiKey, request: OrderRequest, settings: Settings, clock: Clock
) -> CreatedOrder:
    if request.amount is not None and request.reference is not None:
        return create_amount_order_in(
            uow,
            amount=request.amount,
            reference=request.reference,
            customer=request.customer,
            api_client=client.client,
            settings=settings,
            clock=clock,
            actor=client.actor,
        )
    return create_order_in(
        uow,
        lines=request.lines,
        customer=request.customer,
        settings=settings,
        clock=clock,
        actor=client.actor,
        api_client=client.client,
    )


def client_order(database: Database, client: ApiKey, order_id: int) -> OrderDetails:
    """One of the client's orders; `OrderNotFound` for any other (another client's, the shop's,
    none at all: the same answer)."""
    with database.read() as uow:
        try:
            order = uow.orders.get(order_id)
        except OrderNotFound:
            order = None
    if order is None or order.api_client != client.client:
        raise OrderNotFound("no such order")
    return order_details(database, order_id)


def client_orders(
    database: Database,
    client: ApiKey,
    *,
    status: OrderStatus | None = None,
    updated_since_ms: int | None = None,
    after_id: int = 0,
    limit: int = 50,
) -> list[Order]:
    """A page of the client's orders, oldest first, with ids above `after_id`."""
    if not 1 <= limit <= MAX_PAGE:
        raise OrderError(f"a page holds 1 to {MAX_PAGE} orders")
    with database.read() as uow:
        return uow.orders.of_client(
            client.client,
            status=status,
            updated_since_ms=updated_since_ms,
            after_id=after_id,
            limit=limit,
        )
