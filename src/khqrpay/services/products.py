"""The product catalogue: adding and listing products; staff editing them (English and Khmer
names, price, for sale or not, stock). Every change is audited with who made it and why."""

from __future__ import annotations

from khqrpay.clock import Clock
from khqrpay.db import Database, DuplicateSku, UnitOfWork
from khqrpay.money import Money
from khqrpay.orders.model import (
    AuditEntry,
    OrderError,
    Product,
    ProductNotFound,
    validate_actor,
    validate_reason,
    validate_sku,
    validate_text,
)
from khqrpay.services.checkout import validate_payable

MAX_NAME_LENGTH = 200
# Every audited change to the catalogue.
PRODUCT_ACTIONS = (
    "product_added",
    "product_updated",
    "product_activated",
    "product_deactivated",
    "stock_adjusted",
)
# Stock is an INTEGER column: keep well inside its range.
MAX_STOCK = 1_000_000_000


def _clean_name(name: str, what: str = "a product name") -> str:
    cleaned = " ".join(validate_text(name, what).split())
    if not cleaned or len(cleaned) > MAX_NAME_LENGTH:
        raise OrderError(f"{what} is 1 to {MAX_NAME_LENGTH} characters")
    return cleaned


def is_khmer(character: str) -> bool:
    """A letter, sign or digit of the Khmer block (U+1780 to U+17FF)."""
    return "\u1780" <= character <= "\u17ff"


def clean_khmer_name(name_km: str | None) -> str | None:
    """A Khmer name as stored: spaces collapsed; None when blank (no Khmer name). Refused when it
    has no Khmer letter at all (an English name typed in the wrong field), is too long or has
    control characters."""
    if name_km is None or not name_km.strip():
        return None
    cleaned = _clean_name(name_km, "a Khmer name")
    if not any(is_khmer(character) for character in cleaned):
        raise OrderError("a Khmer name must be written in Khmer script (or left empty)")
    return cleaned


def add_product(
    database: Database,
    *,
    sku: str,
    name: str,
    price: Money,
    stock: int,
    now_ms: int,
    actor: str = "system",
    name_km: str | None = None,
) -> Product:
    """A new, active product with its English `name` and, optionally, its Khmer name; refuses a
    duplicate SKU, a blank name or one with control characters, a Khmer name with no Khmer
    letter, a price of 0 or more than a KHQR code can ask for, or a stock out of range."""
    validate_actor(actor)
    with database.write() as uow:
        return _add_product(
            uow,
            sku=sku,
            name=name,
            name_km=name_km,
            price=price,
            stock=stock,
            now_ms=now_ms,
            actor=actor,
        )


def _add_product(
    uow: UnitOfWork,
    *,
    sku: str,
    name: str,
    name_km: str | None,
    price: Money,
    stock: int,
    now_ms: int,
    actor: str,
) -> Product:
    validate_sku(sku)
    validate_payable(price, "a price")
    cleaned_name = _clean_name(name)
    cleaned_km = clean_khmer_name(name_km)
    if isinstance(stock, bool) or not isinstance(stock, int) or not 0 <= stock <= MAX_STOCK:
        raise OrderError(f"stock must be a whole number from 0 to {MAX_STOCK}")
    try:
        product = uow.products.add(
            sku=sku, name=cleaned_name, name_km=cleaned_km, price=price, stock=stock, now_ms=now_ms
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


def list_products(database: Database) -> list[Product]:
    with database.read() as uow:
        return uow.products.list_all()


def recent_product_changes(database: Database, *, limit: int = 20) -> list[AuditEntry]:
    """The newest changes to the catalogue, who made them and why."""
    with database.read() as uow:
        return uow.audit.latest(PRODUCT_ACTIONS, limit=limit)


def _locked(uow: UnitOfWork, sku: str) -> Product:
    product = uow.products.lock(validate_sku(sku))
    if product is None:
        raise ProductNotFound(f"unknown SKU: {sku}")
    return product


def _audit_product(
    uow: UnitOfWork,
    product: Product,
    *,
    action: str,
    actor: str,
    reason: str | None,
    now_ms: int,
    details: dict[str, object],
) -> None:
    uow.audit.append(
        order_id=None,
        at_ms=now_ms,
        actor=actor,
        action=action,
        reason=reason,
        details={"product_id": product.id, "sku": product.sku, **details},
    )


def update_product(
    database: Database,
    sku: str,
    *,
    name: str | None = None,
    name_km: str | None = None,
    price: str | None = None,
    clock: Clock,
    actor: str,
    reason: str | None = None,
) -> Product:
    """A new English name, Khmer name (`""` removes it) and/or price (as typed, in the product's
    currency, which never changes: `1.50`, `4000`); None leaves that one as it is. Orders already
    made keep the names and price they were made with. Nothing to change writes nothing."""
    validate_actor(actor)
    cleaned_reason = validate_reason(reason, required=False)
    if name is None and name_km is None and price is None:
        raise OrderError("give a new name, Khmer name or price")
    new_name = None if name is None else _clean_name(name)
    new_km = None if name_km is None else clean_khmer_name(name_km)
    with database.write() as uow:
        product = _locked(uow, sku)
        new_price = None if price is None else Money.parse(price, product.price.currency)
        changes: dict[str, object] = {}
        details: dict[str, object] = {}
        if new_name is not None and new_name != product.name:
            changes["name"] = new_name
            details["name"] = {"from": product.name, "to": new_name}
        if name_km is not None and new_km != product.name_km:
            changes["name_km"] = new_km
            details["name_km"] = {"from": product.name_km, "to": new_km}
        if new_price is not None:
            validate_payable(new_price, "a price")
        if new_price is not None and not new_price.same_value(product.price):
            changes["price_minor"] = new_price.minor
            details["price"] = {"from": str(product.price), "to": str(new_price)}
        if not changes:
            return product
        now_ms = clock.now_ms()
        updated = uow.products.update(product.id, now_ms=now_ms, **changes)
        _audit_product(
            uow,
            updated,
            action="product_updated",
            actor=actor,
            reason=cleaned_reason,
            now_ms=now_ms,
            details=details,
        )
        return updated


def set_product_active(
    database: Database,
    sku: str,
    *,
    active: bool,
    clock: Clock,
    actor: str,
    reason: str | None = None,
) -> Product:
    """Put a product on sale again (`active`) or take it off sale. Off sale, it cannot be ordered;
    its orders already made still complete when paid. Already so: nothing is written."""
    validate_actor(actor)
    cleaned_reason = validate_reason(reason, required=False)
    with database.write() as uow:
        product = _locked(uow, sku)
        if product.active is active:
            return product
        now_ms = clock.now_ms()
        updated = uow.products.update(product.id, now_ms=now_ms, active=active)
        _audit_product(
            uow,
            updated,
            action="product_activated" if active else "product_deactivated",
            actor=actor,
            reason=cleaned_reason,
            now_ms=now_ms,
            details={},
        )
        return updated


def adjust_stock(
    database: Database, sku: str, *, by: int, reason: str, clock: Clock, actor: str
) -> Product:
    """Add `by` units to the stock (negative: take them away: breakage, a count), with a reason.
    One guarded statement, so a payment taking stock at the same moment is never lost; stock
    never goes below 0 (refused, nothing changes)."""
    validate_actor(actor)
    validate_sku(sku)
    cleaned_reason = validate_reason(reason, required=True)
    if isinstance(by, bool) or not isinstance(by, int) or by == 0 or abs(by) > MAX_STOCK:
        raise OrderError(
            f"a stock adjustment is a whole number from -{MAX_STOCK} to {MAX_STOCK}, not 0"
        )
    with database.write() as uow:
        now_ms = clock.now_ms()
        product = uow.products.adjust_stock(sku, by, max_stock=MAX_STOCK, now_ms=now_ms)
        if product is None:
            current = uow.products.by_skus([sku]).get(sku)
            if current is None:
                raise ProductNotFound(f"unknown SKU: {sku}")
            if by < 0:
                raise OrderError(f"{sku} has {current.stock} in stock: cannot take away {-by}")
            raise OrderError(f"{sku} would have more than {MAX_STOCK} in stock")
        _audit_product(
            uow,
            product,
            action="stock_adjusted",
            actor=actor,
            reason=cleaned_reason,
            now_ms=now_ms,
            details={"by": by, "stock": product.stock},
        )
        return product
