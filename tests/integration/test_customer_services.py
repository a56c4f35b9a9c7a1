"""The customer-side use cases on both databases: an order by amount completes through the one
completion function and takes no stock; the phone look-up; the cart; watching only pending
orders; ordering again."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

import pytest

from khqrpay.db import Database
from khqrpay.money import Currency, Money
from khqrpay.orders.api_clients import ApiKey
from khqrpay.orders.model import (
    Action,
    EvidenceSource,
    KhqrPayment,
    OrderError,
    OrderNotFound,
    OrderStatus,
    current_code,
)
from khqrpay.services.api_orders import OrderRequest, place_order
from khqrpay.services.checkout import Customer
from khqrpay.services.completion import record_payment
from khqrpay.services.customers import find_orders, order_again, price_cart, watch

if TYPE_CHECKING:
    from conftest import Shop

CLIENT = ApiKey(id=1, client="pos-1", shown="khqr_x", created_ms=0, revoked_ms=None)


def test_an_order_by_amount_completes_through_record_payment_and_takes_no_stock(
    shop: Shop, database: Database
) -> None:
    product = shop.product(stock=3)
    placed = place_order(
        database,
        client=CLIENT,
        request=OrderRequest(
            amount=Money(Decimal("7.25"), Currency.USD),
            reference="INV-9",
            customer=Customer("Dara", "012 345 678"),
        ),
        idempotency_key=None,
        settings=shop.settings,
        clock=shop.clock,
    )
    order = placed.details.order
    assert (order.reference, order.api_client, order.customer_phone) == (
        "INV-9",
        "pos-1",
        "+85512345678",
    )
    assert placed.details.lines == ()
    payment = current_code(placed.details.payments)
    with database.write() as uow:
        result = record_payment(
            uow,
            order_id=order.id,
            evidence=shop.evidence(payment),
            source=EvidenceSource.VERIFIER,
            actor="worker:test",
            now_ms=shop.clock.now_ms(),
            payment_id=payment.id,
        )
    assert result.action is Action.COMPLETE
    with database.read() as uow:
        assert uow.orders.get(order.id).status is OrderStatus.COMPLETED
        assert uow.products.get(product.id).stock == 3  # type: ignore[union-attr]


def test_an_order_request_has_lines_or_an_amount_with_a_reference() -> None:
    with pytest.raises(OrderError, match="either lines or an amount"):
        OrderRequest()
    with pytest.raises(OrderError, match="needs a reference"):
        OrderRequest(amount=Money(Decimal(1), Currency.USD))


def test_the_phone_look_up_needs_a_matching_token_and_lists_the_others(
    shop: Shop, database: Database
) -> None:
    product = shop.product()
    first = shop.order((product, 1), phone="012 345 678").order
    second = shop.order((product, 2), phone="+855 12 345 678").order
    shop.order((product, 1), phone="099 999 999")
    with pytest.raises(OrderNotFound):
        find_orders(database, phone="099 999 999", token=first.public_token)
    with pytest.raises(OrderNotFound):
        find_orders(database, phone="not a phone", token=first.public_token)
    with pytest.raises(OrderNotFound):
        find_orders(database, phone="012 345 678", token="x" * 32)
    found = find_orders(database, phone="012345678", token=first.public_token)
    assert found.order.id == first.id
    assert [other.id for other in found.others] == [second.id]


def test_the_cart_is_priced_now_and_forgets_what_no_longer_exists(
    shop: Shop, database: Database
) -> None:
    riel = shop.product(price="4000", currency="KHR", stock=2)
    dollar = shop.product(price="1.50", stock=5)
    cart = price_cart(database, {riel.sku: 3, dollar.sku: 2, "GONE": 1})
    assert cart.gone == ("GONE",)
    assert cart.currencies == [Currency.USD, Currency.KHR]
    assert cart.total(Currency.USD) == Money(Decimal("3.00"), Currency.USD)
    assert cart.payable(Currency.USD)
    assert not cart.payable(Currency.KHR)  # 3 wanted, 2 left
    assert cart.count == 5


def _end(shop: Shop, order_id: int, status: OrderStatus) -> None:
    """The order leaves PENDING (as the expiry sweep or staff would move it)."""
    with shop.database.write() as uow:
        uow.orders.transition(
            order_id, expected=OrderStatus.PENDING, target=status, now_ms=shop.clock.now_ms()
        )


def test_only_a_pending_order_is_watched(shop: Shop, database: Database) -> None:
    created = shop.order((shop.product(), 1))
    _end(shop, created.order.id, OrderStatus.CANCELLED)
    policy = shop.settings.schedule_policy()
    assert watch(database, created.order.id, policy=policy, clock=shop.clock) == 0


def _payments(database: Database, order_id: int) -> list[KhqrPayment]:
    with database.read() as uow:
        return uow.payments.for_order(order_id)


def test_a_watch_with_more_than_half_its_window_left_is_not_rewritten(
    shop: Shop, database: Database
) -> None:
    created = shop.order((shop.product(), 1))
    policy = shop.settings.schedule_policy()
    assert watch(database, created.order.id, policy=policy, clock=shop.clock) == 1
    (first,) = _payments(database, created.order.id)

    shop.clock.advance(seconds=policy.hot_window_ms / 1000 / 2 - 1)  # a till polling meanwhile
    assert watch(database, created.order.id, policy=policy, clock=shop.clock) == 0
    assert _payments(database, created.order.id) == [first]

    shop.clock.advance(seconds=2)  # less than half the window left: renewed
    assert watch(database, created.order.id, policy=policy, clock=shop.clock) == 1
    (renewed,) = _payments(database, created.order.id)
    assert renewed.hot_until_ms == shop.clock.now_ms() + policy.hot_window_ms


def test_ordering_again_makes_a_new_order_with_the_same_items_only_when_unpayable(
    shop: Shop, database: Database
) -> None:
    product = shop.product(stock=9)
    created = shop.order((product, 2), phone="012345678")
    with pytest.raises(OrderError, match="only an expired or cancelled order"):
        order_again(database, created.order.public_token, settings=shop.settings, clock=shop.clock)
    _end(shop, created.order.id, OrderStatus.EXPIRED)
    again = order_again(
        database, created.order.public_token, settings=shop.settings, clock=shop.clock
    )
    assert again.order.id != created.order.id
    assert [(line.sku, line.quantity) for line in again.lines] == [(product.sku, 2)]
    assert again.order.customer_phone == "+85512345678"
