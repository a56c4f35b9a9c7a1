"""The product catalogue: adding products and listing them."""

from __future__ import annotations

from khqrpay.db import DuplicateSku, UnitOfWork
from khqrpay.money import Money
from khqrpay.orders.model import (
    OrderError,
    Product,
    validate_actor,
    validate_sku,
    validate_text,
)
from khqrpay.services.checkout import validate_payable

MAX_NAME_LENGTH = 200
# Stock is an INTEGER column: keep well inside its range.
MAX_STOCK = 1_000_000_000


def add_product(
    uow: UnitOfWork,
    *,
    sku: str,
    name: str,
    price: Money,
    stock: int,
    now_ms: int,
    actor: str = "system",
) -> Product:
    """A new, active product; refuses a duplicate SKU, a blank name or one with control
    characters, a price of 0 or more than a KHQR code can ask for, or a stock out of range."""
    validate_actor(actor)
    validate_sku(sku)
    validate_payable(price, "a price")
    cleaned_name = " ".join(validate_text(name, "a product name").split())
    if not cleaned_name or len(cleaned_name) > MAX_NAME_LENGTH:
        raise OrderError(f"a product name is 1 to {MAX_NAME_LENGTH} characters")
    if isinstance(stock, bool) or not isinstance(stock, int) or not 0 <= stock <= MAX_STOCK:
        raise OrderError(f"stock must be a whole number from 0 to {MAX_STOCK}")
    try:
        product = uow.products.add(
            sku=sku, name=cleaned_name, price=price, stock=stock, now_ms=now_ms
        )
    except DuplicateSku:
        raise OrderError(f"a product with SKU {sku} already exists") from None
    uow.audit.append(
        order_id=None,
        at_ms=now_ms,
        actor=actor,
        action="product_added",
        details={"product_id": product.id, "sku": sku, "price": str(price), "stock": stock},
    )
    return product


def list_products(uow: UnitOfWork) -> list[Product]:
    return uow.products.list_all()
