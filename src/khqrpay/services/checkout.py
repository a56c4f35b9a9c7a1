"""Checkout: an order from a cart, with its first KHQR code; and fresh codes for pending orders."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace

from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.khqr import EncodedKHQR, KHQRInputError, encode
from khqrpay.khqr.fields import MAX_AMOUNT_LENGTH
from khqrpay.money import Money
from khqrpay.orders.events import OrderCreated, QrCreated
from khqrpay.orders.model import (
    KhqrPayment,
    LineRequest,
    NotEnoughStock,
    NotForSale,
    Order,
    OrderError,
    OrderLine,
    OrderStatus,
    UnknownSku,
    normalize_customer_name,
    normalize_phone,
    validate_actor,
    validate_order_id,
    validate_reference,
)
from khqrpay.orders.schedule import SchedulePolicy
from khqrpay.settings import Settings

# Every QR of a pending order is checked until the window ends; this bounds what one customer
# pressing "new code" repeatedly can add to the verifier's work.
MAX_QRS_PER_ORDER = 10
# 24 random bytes: 32 URL-safe characters, unguessable.
TOKEN_BYTES = 24


@dataclass(frozen=True, slots=True)
class CreatedOrder:
    order: Order
    lines: tuple[OrderLine, ...]
    payment: KhqrPayment


def validate_payable(amount: Money, what: str) -> Money:
    """An amount one dynamic KHQR code can ask for: more than 0, and written in tag 54's
    13 characters (which also keeps it far inside the BIGINT columns of minor units)."""
    if amount.amount == 0:
        raise OrderError(f"{what} must be more than 0")
    # The exponent first: a number of thousands of digits is never turned into text.
    if amount.amount.adjusted() >= MAX_AMOUNT_LENGTH or len(amount.khqr_text()) > MAX_AMOUNT_LENGTH:
        raise OrderError(
            f"{what} is more than a KHQR code can ask for: its amount is written in at most "
            f"{MAX_AMOUNT_LENGTH} characters (e.g. 9999999999999 KHR, 9999999999.99 USD)"
        )
    return amount


def bill_number(order_id: int) -> str:
    """The short order reference printed on the customer's bank receipt (KHQR tag 62/01)."""
    return f"ORD-{order_id}"


def _merged(lines: Iterable[LineRequest | tuple[str, int]]) -> list[LineRequest]:
    """One line per SKU (quantities of repeated SKUs added), in first-seen order."""
    quantities: dict[str, int] = {}
    for line in lines:
        request = line if isinstance(line, LineRequest) else LineRequest(*line)
        quantities[request.sku] = quantities.get(request.sku, 0) + request.quantity
    if not quantities:
        raise OrderError("an order needs at least one line")
    return [LineRequest(sku, quantity) for sku, quantity in quantities.items()]


def _priced_lines(uow: UnitOfWork, requests: list[LineRequest]) -> list[OrderLine]:
    products = uow.products.by_skus(request.sku for request in requests)
    unknown = [request.sku for request in requests if request.sku not in products]
    if unknown:
        raise UnknownSku(f"unknown SKU: {', '.join(unknown)}", sku=unknown[0])
    lines = []
    for request in requests:
        product = products[request.sku]
        if not product.active:
            raise NotForSale(f"{product.sku} is not for sale", sku=product.sku)
        # A courtesy check only: stock is taken when the payment is confirmed.
        if request.quantity > product.stock:
            raise NotEnoughStock(f"only {product.stock} of {product.sku} left", sku=product.sku)
        lines.append(
            OrderLine(
                product.id,
                product.sku,
                product.name,
                product.name_km,
                product.price,
                request.quantity,
            )
        )
    currencies = sorted({line.unit_price.currency.value for line in lines})
    if len(currencies) > 1:
        raise OrderError(
            f"an order is paid in one currency; these lines mix {' and '.join(currencies)}"
        )
    return lines


@dataclass(frozen=True, slots=True)
class Customer:
    """What a customer may give at checkout, both optional: their name and phone number."""

    name: str | None = None
    phone: str | None = None

    def normalized(self) -> Customer:
        """Name spaces collapsed, phone in E.164; `OrderError` says what is wrong."""
        phone = normalize_phone(self.phone) if self.phone and self.phone.strip() else None
        return Customer(normalize_customer_name(self.name), phone)


def create_order(
    database: Database,
    *,
    lines: Iterable[LineRequest | tuple[str, int]],
    phone: str | None,
    settings: Settings,
    clock: Clock,
    actor: str = "customer",
    customer_name: str | None = None,
    api_client: str | None = None,
) -> CreatedOrder:
    """A PENDING order with price snapshots and its first dynamic KHQR, scheduled for checks.
    `api_client`: the API client making it (only it sees the order through the API)."""
    validate_actor(actor)
    with database.write() as uow:
        return create_order_in(
            uow,
            lines=lines,
            customer=Customer(customer_name, phone),
            settings=settings,
            clock=clock,
            actor=actor,
            api_client=api_client,
        )


def create_order_in(
    uow: UnitOfWork,
    *,
    lines: Iterable[LineRequest | tuple[str, int]],
    customer: Customer,
    settings: Settings,
    clock: Clock,
    actor: str,
    api_client: str | None = None,
) -> CreatedOrder:
    """`create_order` in the caller's transaction (the API claims an Idempotency-Key in it)."""
    customer = customer.normalized()
    priced = _priced_lines(uow, _merged(lines))
    total = sum((line.total for line in priced[1:]), start=priced[0].total)
    return _place(
        uow,
        total=total,
        lines=priced,
        customer=customer,
        reference=None,
        api_client=api_client,
        settings=settings,
        clock=clock,
        actor=actor,
    )


def create_amount_order_in(
    uow: UnitOfWork,
    *,
    amount: Money,
    reference: str,
    customer: Customer,
    api_client: str,
    settings: Settings,
    clock: Clock,
    actor: str,
) -> CreatedOrder:
    """An order for an amount with the caller's reference and no lines: the caller keeps its own
    stock, so completing it takes none. Its KHQR, schedule and completion are a cart order's."""
    return _place(
        uow,
        total=amount,
        lines=[],
        customer=customer.normalized(),
        reference=validate_reference(reference),
        api_client=api_client,
        settings=settings,
        clock=clock,
        actor=actor,
    )


def _place(
    uow: UnitOfWork,
    *,
    total: Money,
    lines: list[OrderLine],
    customer: Customer,
    reference: str | None,
    api_client: str | None,
    settings: Settings,
    clock: Clock,
    actor: str,
) -> CreatedOrder:
    if total.minor == 0:
        raise OrderError("an order paid by KHQR must cost something")
    validate_payable(total, "the order's total")  # before a row is written
    policy = settings.schedule_policy()
    now_ms = clock.now_ms()
    order = uow.orders.add(
        public_token=secrets.token_urlsafe(TOKEN_BYTES),
        total=total,
        customer_phone=customer.phone,
        customer_name=customer.name,
        reference=reference,
        api_client=api_client,
        lines=lines,
        now_ms=now_ms,
        window_end_ms=policy.window_end_ms(now_ms),
    )
    payment = _issue_qr(uow, order, settings, policy, created_ms=now_ms)
    details: dict[str, object] = {
        "total": str(total),
        "lines": len(lines),
        "payment_id": payment.id,
    }
    if reference is not None:
        details["reference"] = reference
    uow.audit.append(
        order_id=order.id,
        at_ms=now_ms,
        actor=actor,
        action="order_created",
        to_status=OrderStatus.PENDING,
        details=details,
    )
    uow.outbox.add_event(
        OrderCreated(order_id=order.id, status=order.status, at_ms=now_ms), now_ms=now_ms
    )
    return CreatedOrder(order, tuple(lines), payment)


def new_qr_for_order(
    database: Database,
    *,
    order_id: int,
    settings: Settings,
    clock: Clock,
    actor: str = "customer",
) -> KhqrPayment:
    """A fresh code for a pending order (new md5); its older codes keep being checked."""
    validate_actor(actor)
    validate_order_id(order_id)
    with database.write() as uow:
        return _new_qr_for_order(
            uow, order_id=order_id, settings=settings, clock=clock, actor=actor
        )


def _new_qr_for_order(
    uow: UnitOfWork, *, order_id: int, settings: Settings, clock: Clock, actor: str
) -> KhqrPayment:
    order = uow.orders.lock(order_id)
    if order.status is not OrderStatus.PENDING:
        raise OrderError(f"order {order_id} is {order.status}: it takes no new payment code")
    now_ms = clock.now_ms()
    if now_ms >= order.window_end_ms:
        raise OrderError(f"order {order_id}'s payment window has ended")
    existing = uow.payments.for_order(order_id)
    if len(existing) >= MAX_QRS_PER_ORDER:
        raise OrderError(f"order {order_id} already has {MAX_QRS_PER_ORDER} payment codes")
    # The creation time is inside the QR: one millisecond later than the newest keeps md5s unique.
    created_ms = max([now_ms, *(payment.created_ms + 1 for payment in existing)])
    policy = settings.schedule_policy()
    payment = _issue_qr(uow, order, settings, policy, created_ms=created_ms)
    uow.audit.append(
        order_id=order.id,
        at_ms=now_ms,
        actor=actor,
        action="qr_created",
        details={"payment_id": payment.id, "md5": payment.md5},
    )
    uow.outbox.add_event(
        QrCreated(order_id=order.id, payment_id=payment.id, at_ms=now_ms), now_ms=now_ms
    )
    return payment


def _issue_qr(
    uow: UnitOfWork, order: Order, settings: Settings, policy: SchedulePolicy, *, created_ms: int
) -> KhqrPayment:
    try:
        encoded = _encoded(order, settings, created_ms=created_ms)
    except KHQRInputError as exc:
        # A total too long for tag 54 (e.g. a huge amount): refused like any other bad order.
        raise OrderError(f"the total {order.total} cannot be paid by KHQR: {exc}") from exc
    # Never after the order's final check, whenever in the window the code was made.
    first_check_ms = min(
        policy.first_check_ms(created_ms), policy.final_check_ms(order.window_end_ms)
    )
    return uow.payments.add(
        order_id=order.id,
        qr=encoded.qr,
        md5=encoded.md5,
        amount=order.total,
        to_account=settings.merchant_account,
        created_ms=created_ms,
        expires_ms=order.window_end_ms,
        next_check_ms=first_check_ms,
        # The first check is never early: nobody pays in the first seconds.
        earliest_check_ms=first_check_ms,
    )


def _encoded(order: Order, settings: Settings, *, created_ms: int) -> EncodedKHQR:
    return encode(
        replace(
            settings.merchant_qr(),
            currency=order.currency,
            amount=order.total.amount,
            bill_number=bill_number(order.id),
            # Tag 99: the code expires when the order's payment window ends.
            expires_ms=order.window_end_ms,
        ),
        now_ms=created_ms,
    )
