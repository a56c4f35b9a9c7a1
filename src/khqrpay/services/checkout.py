"""Checkout: an order from a cart, with its first KHQR code; and fresh codes for pending orders."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from khqrpay.clock import Clock
from khqrpay.db import UnitOfWork
from khqrpay.khqr import KHQRInput, encode
from khqrpay.khqr.fields import MAX_AMOUNT_LENGTH
from khqrpay.money import Money
from khqrpay.orders.model import (
    KhqrPayment,
    LineRequest,
    Order,
    OrderError,
    OrderLine,
    OrderStatus,
    Topic,
    normalize_phone,
    validate_actor,
    validate_order_id,
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
        raise OrderError(f"unknown SKU: {', '.join(unknown)}")
    lines = []
    for request in requests:
        product = products[request.sku]
        if not product.active:
            raise OrderError(f"{product.sku} is not for sale")
        # A courtesy check only: stock is taken when the payment is confirmed.
        if request.quantity > product.stock:
            raise OrderError(f"only {product.stock} of {product.sku} left")
        lines.append(
            OrderLine(product.id, product.sku, product.name, product.price, request.quantity)
        )
    currencies = sorted({line.unit_price.currency.value for line in lines})
    if len(currencies) > 1:
        raise OrderError(
            f"an order is paid in one currency; these lines mix {' and '.join(currencies)}"
        )
    return lines


def create_order(
    uow: UnitOfWork,
    *,
    lines: Iterable[LineRequest | tuple[str, int]],
    phone: str | None,
    settings: Settings,
    clock: Clock,
    actor: str = "customer",
) -> CreatedOrder:
    """A PENDING order with price snapshots and its first dynamic KHQR, scheduled for checks."""
    validate_actor(actor)
    customer_phone = normalize_phone(phone) if phone and phone.strip() else None
    priced = _priced_lines(uow, _merged(lines))
    total = sum((line.total for line in priced[1:]), start=priced[0].total)
    if total.minor == 0:
        raise OrderError("an order paid by KHQR must cost something")
    validate_payable(total, "the order's total")  # before a row is written
    policy = SchedulePolicy.from_settings(settings)
    now_ms = clock.now_ms()
    order = uow.orders.add(
        public_token=secrets.token_urlsafe(TOKEN_BYTES),
        total=total,
        customer_phone=customer_phone,
        lines=priced,
        now_ms=now_ms,
        window_end_ms=policy.window_end_ms(now_ms),
    )
    payment = _issue_qr(uow, order, settings, policy, created_ms=now_ms)
    uow.audit.append(
        order_id=order.id,
        at_ms=now_ms,
        actor=actor,
        action="order_created",
        to_status=OrderStatus.PENDING,
        details={"total": str(total), "lines": len(priced), "payment_id": payment.id},
    )
    uow.outbox.add(
        topic=Topic.ORDER_CREATED,
        order_id=order.id,
        payload={"order_id": order.id, "status": order.status.value, "at_ms": now_ms},
        now_ms=now_ms,
    )
    return CreatedOrder(order, tuple(priced), payment)


def new_qr_for_order(
    uow: UnitOfWork, *, order_id: int, settings: Settings, clock: Clock, actor: str = "customer"
) -> KhqrPayment:
    """A fresh code for a pending order (new md5); its older codes keep being checked."""
    validate_actor(actor)
    validate_order_id(order_id)
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
    policy = SchedulePolicy.from_settings(settings)
    payment = _issue_qr(uow, order, settings, policy, created_ms=created_ms)
    uow.audit.append(
        order_id=order.id,
        at_ms=now_ms,
        actor=actor,
        action="qr_created",
        details={"payment_id": payment.id, "md5": payment.md5},
    )
    uow.outbox.add(
        topic=Topic.ORDER_QR_CREATED,
        order_id=order.id,
        payload={"order_id": order.id, "payment_id": payment.id, "at_ms": now_ms},
        now_ms=now_ms,
    )
    return payment


def _issue_qr(
    uow: UnitOfWork, order: Order, settings: Settings, policy: SchedulePolicy, *, created_ms: int
) -> KhqrPayment:
    encoded = encode(
        KHQRInput(
            bakong_account_id=settings.merchant_account,
            merchant_name=settings.merchant_name,
            merchant_city=settings.merchant_city,
            currency=order.currency,
            amount=order.total.amount,
            merchant_id=settings.merchant_id,
            acquiring_bank=settings.acquiring_bank,
            bill_number=bill_number(order.id),
            # Tag 99: the code expires when the order's payment window ends.
            expires_ms=order.window_end_ms,
        ),
        now_ms=created_ms,
    )
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
