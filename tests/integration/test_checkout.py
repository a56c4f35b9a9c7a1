"""Checkout on SQLite and PostgreSQL: orders, price snapshots, the KHQR code and its schedule."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.khqr import verify
from khqrpay.money import Currency, Money
from khqrpay.orders.events import Topic
from khqrpay.orders.model import (
    LineRequest,
    OrderError,
    OrderNotFound,
    OrderStatus,
    PaymentStatus,
)
from khqrpay.services.checkout import (
    MAX_QRS_PER_ORDER,
    bill_number,
    create_order,
    new_qr_for_order,
    validate_payable,
)
from khqrpay.services.orders import list_orders, order_by_token, order_details
from khqrpay.settings import Settings

if TYPE_CHECKING:
    from conftest import Shop


def test_an_order_gets_snapshots_a_verifiable_qr_and_a_schedule(
    shop: Shop, database: Database, settings: Settings, clock: FakeClock
) -> None:
    tea = shop.product(price="1.50", stock=5)
    cake = shop.product(price="2.25", stock=1)
    created = shop.order((tea, 2), (cake, 1), (tea, 1), phone="012 345 678")
    order, payment = created.order, created.payment

    assert order.status is OrderStatus.PENDING
    assert order.total == Money(Decimal("6.75"), Currency.USD)
    assert order.customer_phone == "+85512345678"
    assert order.window_end_ms == clock.now_ms() + round(settings.payment_window_s * 1000)
    assert len(order.public_token) == 32
    # Repeated SKUs are merged into one line.
    assert [(line.sku, line.quantity) for line in created.lines] == [(tea.sku, 3), (cake.sku, 1)]

    decoded = verify(payment.qr, now_ms=clock.now_ms())
    assert decoded.md5 == payment.md5
    assert decoded.money == order.total
    assert decoded.bakong_account_id == settings.merchant_account
    assert decoded.merchant_name == "Test Shop"
    assert decoded.bill_number == bill_number(order.id)
    assert decoded.creation_ms == clock.now_ms()
    assert decoded.expiration_ms == order.window_end_ms == payment.expires_ms
    assert payment.status is PaymentStatus.PENDING
    policy = settings.schedule_policy()
    assert payment.next_check_ms == policy.first_check_ms(clock.now_ms())
    assert payment.earliest_check_ms == payment.next_check_ms

    # A later price change does not touch the order: its lines are snapshots.
    with database.write() as uow:
        uow.connection.execute(sa.text("UPDATE products SET price_minor = 999, name = 'new'"))
    with database.read() as uow:
        details = order_details(database, order.id)
        assert details.lines == created.lines
        assert details.payments == (payment,)
        assert [entry.action for entry in details.audit] == ["order_created"]
        assert order_by_token(database, order.public_token) == order
        assert list_orders(database, OrderStatus.PENDING) == [order]
        assert list_orders(database, OrderStatus.COMPLETED) == []
        events = uow.outbox.unpublished(10)
    assert [(event.topic, event.order_id) for event in events] == [(Topic.ORDER_CREATED, order.id)]


def test_stock_is_not_taken_at_checkout(shop: Shop, database: Database) -> None:
    tea = shop.product(stock=2)
    shop.order((tea, 2))
    shop.order((tea, 2))
    with database.read() as uow:
        assert uow.products.by_skus([tea.sku])[tea.sku].stock == 2


def test_khr_orders_get_whole_riel(shop: Shop, clock: FakeClock) -> None:
    rice = shop.product(price="4000", currency="KHR")
    created = shop.order((rice, 3))
    assert created.order.total == Money(Decimal(12000), Currency.KHR)
    assert verify(created.payment.qr, now_ms=clock.now_ms()).amount == Decimal(12000)


@pytest.mark.parametrize(
    ("lines", "phone", "message"),
    [
        ([], None, "at least one line"),
        ([("NOPE", 1)], None, "unknown SKU: NOPE"),
        ([("TEA", 11)], None, "only 10 of TEA left"),
        ([("TEA", 6), ("TEA", 5)], None, "only 10 of TEA left"),
        ([("TEA", 1), ("RICE", 1)], None, "one currency; these lines mix KHR and USD"),
        ([("OLD", 1)], None, "OLD is not for sale"),
        ([("FREE", 1)], None, "must cost something"),
        ([("TEA", 1)], "555-1234", "not a Cambodian number"),
        ([("TEA", 0)], None, "between 1 and"),
        ([("HUGE", 2)], None, "total is more than a KHQR code can ask for"),
    ],
)
def test_checkout_refuses_bad_carts_with_a_clear_message(
    database: Database,
    settings: Settings,
    clock: FakeClock,
    lines: list[tuple[str, int]],
    phone: str | None,
    message: str,
) -> None:
    with database.write() as uow:
        for sku, price, currency in (
            ("TEA", 150, "USD"),
            ("RICE", 4000, "KHR"),
            ("OLD", 100, "USD"),
            ("FREE", 0, "USD"),
            ("HUGE", 9_999_999_999_999, "KHR"),
        ):
            uow.products.add(
                sku=sku,
                name=sku,
                name_km=None,
                price=Money.from_minor(price, Currency(currency)),
                stock=10,
                now_ms=clock.now_ms(),
            )
        uow.connection.execute(sa.text("UPDATE products SET active = false WHERE sku = 'OLD'"))
    with pytest.raises(OrderError, match=message):
        create_order(database, lines=lines, phone=phone, settings=settings, clock=clock)
    assert list_orders(database) == []


def test_a_new_qr_gets_a_new_md5_and_the_old_one_stays_checked(
    shop: Shop, database: Database, settings: Settings, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    # Same millisecond: the creation time is bumped so the md5 differs.
    second = new_qr_for_order(database, order_id=created.order.id, settings=settings, clock=clock)
    clock.advance(seconds=60)
    third = new_qr_for_order(database, order_id=created.order.id, settings=settings, clock=clock)
    assert len({created.payment.md5, second.md5, third.md5}) == 3
    assert second.created_ms == created.payment.created_ms + 1
    assert third.created_ms == clock.now_ms()
    for payment in (second, third):
        decoded = verify(payment.qr, now_ms=clock.now_ms())
        assert decoded.expiration_ms == created.order.window_end_ms
        assert decoded.money == created.order.total
        assert payment.next_check_ms == payment.created_ms + 5_000
    with database.read() as uow:
        payments = uow.payments.for_order(created.order.id)
        audit = [entry.action for entry in uow.audit.for_order(created.order.id)]
    assert [p.status for p in payments] == [PaymentStatus.PENDING] * 3
    assert all(p.next_check_ms is not None for p in payments)
    assert audit == ["order_created", "qr_created", "qr_created"]


def test_new_qrs_are_refused_when_they_cannot_be_paid(
    shop: Shop, database: Database, settings: Settings, clock: FakeClock
) -> None:
    created = shop.order((shop.product(), 1))
    order_id = created.order.id
    for _ in range(MAX_QRS_PER_ORDER - 1):
        new_qr_for_order(database, order_id=order_id, settings=settings, clock=clock)
    with pytest.raises(OrderError, match="already has 10"):
        new_qr_for_order(database, order_id=order_id, settings=settings, clock=clock)

    other = shop.order((shop.product(), 1))
    clock.set(other.order.window_end_ms)
    with pytest.raises(OrderError, match="window has ended"):
        new_qr_for_order(database, order_id=other.order.id, settings=settings, clock=clock)
    with database.write() as uow:
        uow.orders.transition(
            other.order.id,
            expected=OrderStatus.PENDING,
            target=OrderStatus.EXPIRED,
            now_ms=clock.now_ms(),
        )
    with pytest.raises(OrderError, match="is EXPIRED"):
        new_qr_for_order(database, order_id=other.order.id, settings=settings, clock=clock)
    with pytest.raises(OrderNotFound):
        new_qr_for_order(database, order_id=10_000, settings=settings, clock=clock)


def test_tokens_are_unique_and_reach_only_their_order(shop: Shop, database: Database) -> None:
    product = shop.product(stock=100)
    orders = [shop.order((product, 1)).order for _ in range(20)]
    assert len({order.public_token for order in orders}) == 20
    for order in orders:
        assert order_by_token(database, order.public_token).id == order.id
    with pytest.raises(OrderNotFound, match="no order has that token") as raised:
        order_by_token(database, "guessed-token")
    assert "guessed-token" not in str(raised.value)


def test_line_requests_can_be_given_as_pairs(
    shop: Shop, database: Database, settings: Settings, clock: FakeClock
) -> None:
    product = shop.product()
    created = create_order(
        database,
        lines=[(product.sku, 2), LineRequest(product.sku, 1)],
        phone=" ",
        settings=settings,
        clock=clock,
    )
    assert created.lines[0].quantity == 3
    assert created.order.customer_phone is None


# -- amounts a KHQR code can ask for (no database) -----------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency"),
    [
        ("0.01", "USD"),
        ("9999999999.99", "USD"),
        ("9999999999999", "USD"),
        ("1", "KHR"),
        ("9999999999999", "KHR"),
    ],
)
def test_amounts_a_khqr_code_can_ask_for_are_payable(amount: str, currency: str) -> None:
    money = Money(Decimal(amount), Currency(currency))
    assert validate_payable(money, "a price") is money


@pytest.mark.parametrize(
    ("amount", "currency", "words"),
    [
        ("0", "KHR", "must be more than 0"),
        ("0.00", "USD", "must be more than 0"),
        ("12345678901.50", "USD", "more than a KHQR code can ask for"),
        ("10000000000000", "KHR", "more than a KHQR code can ask for"),
        ("1" * 40, "KHR", "more than a KHQR code can ask for"),
        ("1E+5000", "KHR", "more than a KHQR code can ask for"),
    ],
)
def test_amounts_no_khqr_code_can_ask_for_are_refused(
    amount: str, currency: str, words: str
) -> None:
    with pytest.raises(OrderError, match=words):
        validate_payable(Money(Decimal(amount), Currency(currency)), "a price")
