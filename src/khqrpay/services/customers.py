"""What customers do in the shop: see what is for sale, price a cart, reach their orders (only by
the order's unguessable token), say they have paid, and open their banking app on a code.

A customer never reaches an order by its number. Looking orders up by phone needs the token of one
of them as well, and then shows the phone's other orders with minimal facts only (no items, no
link, no code): a phone number is no secret, and a link may have been forwarded to a friend who
pays, so neither alone opens someone's orders (ADR 0005, docs/adr/).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from khqrpay.bakong.errors import BakongError
from khqrpay.bakong.port import BakongPort
from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.logging import get_logger
from khqrpay.money import Currency, Money
from khqrpay.orders.model import (
    MAX_QUANTITY,
    Order,
    OrderError,
    OrderLine,
    OrderNotFound,
    OrderStatus,
    PaymentStatus,
    Product,
    normalize_phone,
)
from khqrpay.orders.schedule import SchedulePolicy
from khqrpay.services.checkout import CreatedOrder, Customer, create_order_in
from khqrpay.services.manual import ManualActions, VerifyResult, watch_order
from khqrpay.services.orders import OrderDetails, order_details
from khqrpay.settings import Settings

# How many other orders of a phone a look-up shows (minimal facts), newest first.
PHONE_LOOKUP_LIMIT = 20

_log = get_logger(__name__)


def products_for_sale(database: Database) -> list[Product]:
    """The catalogue: every product on sale (sold-out ones too, shown as such), by name."""
    with database.read() as uow:
        products = [product for product in uow.products.list_all() if product.active]
    return sorted(products, key=lambda product: (product.name.casefold(), product.sku))


@dataclass(frozen=True, slots=True)
class CartLine:
    product: Product
    quantity: int

    @property
    def total(self) -> Money:
        return self.product.price * self.quantity

    @property
    def available(self) -> bool:
        """Whether the line can be ordered as it is now (on sale, enough in stock)."""
        return self.product.active and 0 < self.quantity <= self.product.stock


@dataclass(frozen=True, slots=True)
class Cart:
    """A customer's cart priced now; lines of one currency are paid together."""

    lines: tuple[CartLine, ...]
    # SKUs in the cart that no longer exist: dropped from it.
    gone: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def currencies(self) -> list[Currency]:
        """The currencies of the cart, dollars first (one KHQR pays one currency)."""
        present = {line.product.price.currency for line in self.lines}
        return [currency for currency in (Currency.USD, Currency.KHR) if currency in present]

    def lines_in(self, currency: Currency) -> list[CartLine]:
        return [line for line in self.lines if line.product.price.currency is currency]

    def total(self, currency: Currency) -> Money:
        return sum(
            (line.total for line in self.lines_in(currency)), start=Money.from_minor(0, currency)
        )

    def payable(self, currency: Currency) -> bool:
        lines = self.lines_in(currency)
        return bool(lines) and all(line.available for line in lines)


def price_cart(database: Database, quantities: Mapping[str, int]) -> Cart:
    """The cart's lines with today's products (quantities clamped to 1..MAX_QUANTITY)."""
    skus = list(quantities)
    with database.read() as uow:
        products = uow.products.by_skus(skus) if skus else {}
    lines = tuple(
        CartLine(products[sku], max(1, min(MAX_QUANTITY, quantity)))
        for sku, quantity in quantities.items()
        if sku in products
    )
    return Cart(lines, tuple(sku for sku in skus if sku not in products))


def check_out(
    database: Database,
    *,
    quantities: Mapping[str, int],
    currency: Currency,
    customer: Customer,
    settings: Settings,
    clock: Clock,
) -> CreatedOrder:
    """An order for the cart's lines in `currency`, in one transaction (the engine's checks
    apply: on sale, in stock now, a Cambodian phone)."""
    with database.write() as uow:
        products = uow.products.by_skus(list(quantities)) if quantities else {}
        lines = [
            (sku, quantity)
            for sku, quantity in quantities.items()
            if sku in products and products[sku].price.currency is currency
        ]
        if not lines:
            raise OrderError("there is nothing to pay in that currency in the cart")
        return create_order_in(
            uow, lines=lines, customer=customer, settings=settings, clock=clock, actor="customer"
        )


def customer_order(database: Database, token: str) -> OrderDetails:
    """Everything a customer's page shows about their order, by its token."""
    with database.read() as uow:
        order_id = uow.orders.by_token(token).id
    return order_details(database, order_id)


@dataclass(frozen=True, slots=True)
class CustomerOrder:
    """An order in a customer's list, with what was in it."""

    order: Order
    lines: tuple[OrderLine, ...]


def orders_with_tokens(database: Database, tokens: Sequence[str]) -> list[CustomerOrder]:
    """The orders this browser has (tokens kept in its signed session), newest first."""
    if not tokens:
        return []
    with database.read() as uow:
        orders = uow.orders.by_tokens(tokens)
        lines = uow.orders.lines_of([order.id for order in orders])
    return [CustomerOrder(order, tuple(lines.get(order.id, ()))) for order in orders]


@dataclass(frozen=True, slots=True)
class PhoneLookup:
    """A look-up by phone and one order's token: that order (in full, by its token) and the
    phone's other orders, with minimal facts only."""

    order: Order
    others: tuple[Order, ...]


def find_orders(database: Database, *, phone: str, token: str) -> PhoneLookup:
    """`OrderNotFound` unless `token` is an order placed with `phone` (one answer for both
    mistakes, so the look-up tells nothing about either alone)."""
    try:
        wanted = normalize_phone(phone)
    except OrderError:
        raise OrderNotFound("no order matches that phone number and link") from None
    with database.read() as uow:
        try:
            order = uow.orders.by_token(token)
        except OrderNotFound:
            order = None
        if order is None or order.customer_phone != wanted:
            raise OrderNotFound("no order matches that phone number and link")
        others = [
            other
            for other in uow.orders.with_phone(wanted, limit=PHONE_LOOKUP_LIMIT + 1)
            if other.id != order.id
        ]
    return PhoneLookup(order, tuple(others[:PHONE_LOOKUP_LIMIT]))


def order_again(
    database: Database, token: str, *, settings: Settings, clock: Clock
) -> CreatedOrder:
    """A new order (and code) with the items of an order that can no longer be paid (its code
    expired, or the shop cancelled it). Today's prices and stock apply."""
    with database.write() as uow:
        order = uow.orders.by_token(token)
        if order.status not in (OrderStatus.EXPIRED, OrderStatus.CANCELLED):
            raise OrderError("only an expired or cancelled order can be ordered again")
        lines = [(line.sku, line.quantity) for line in uow.orders.lines(order.id)]
        if not lines:
            raise OrderError("this order was made by the shop's own system: ask the shop")
        return create_order_in(
            uow,
            lines=lines,
            customer=Customer(order.customer_name, order.customer_phone),
            settings=settings,
            clock=clock,
            actor="customer",
        )


def watch(database: Database, order_id: int, *, policy: SchedulePolicy, clock: Clock) -> int:
    """A customer has the order open: check its codes often for a while (while it is pending:
    a paid order's other codes keep their own, slower, schedule). Codes still hot for more than
    half the hot window are left as they are, with no write: a page reloaded or a till polling
    every second costs a read, not a write transaction each time."""
    now_ms = clock.now_ms()
    with database.read() as uow:
        if uow.orders.get(order_id).status is not OrderStatus.PENDING:
            return 0
        fresh_enough = now_ms + policy.hot_window_ms // 2
        cooling = [
            payment
            for payment in uow.payments.for_order(order_id)
            if payment.status is PaymentStatus.PENDING
            and (payment.hot_until_ms is None or payment.hot_until_ms < fresh_enough)
        ]
    return watch_order(database, order_id, policy=policy, clock=clock) if cooling else 0


async def customer_has_paid(
    database: Database,
    staff: ManualActions,
    order: Order,
    *,
    policy: SchedulePolicy,
    clock: Clock,
) -> VerifyResult | None:
    """ "I have paid": the order becomes hot and its codes are checked with Bakong now (the one
    check → apply path, audited as the customer). None when the order is no longer pending."""
    if order.status is not OrderStatus.PENDING:
        return None
    await asyncio.to_thread(watch, database, order.id, policy=policy, clock=clock)
    return await staff.verify_instantly(order.id, actor="customer")


async def banking_app_link(bakong: BakongPort, qr: str, *, within_s: float) -> str | None:
    """Bakong's link that opens the customer's banking app on this code, or None when Bakong
    cannot make one now (the page works without it: the code can be scanned or downloaded)."""
    try:
        return await asyncio.wait_for(bakong.generate_deeplink(qr), within_s)
    except (BakongError, TimeoutError) as exc:
        _log.warning("no banking-app link from Bakong", error=type(exc).__name__)
        return None
