"""The catalogue: `products`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from khqrpay.db import tables as t
from khqrpay.db.repositories._shared import money
from khqrpay.money import Money
from khqrpay.orders.model import Product


class DuplicateSku(RuntimeError):
    """A product with that SKU already exists."""


class _Short(Exception):
    """Raised inside the stock savepoint to undo it as a whole."""

    def __init__(self, product_id: int) -> None:
        super().__init__(product_id)
        self.product_id = product_id


class ProductRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _product(row: Row[Any]) -> Product:
        return Product(
            id=row.id,
            sku=row.sku,
            name=row.name,
            name_km=row.name_km,
            price=money(row.price_minor, row.currency),
            stock=row.stock,
            active=row.active,
            created_ms=row.created_ms,
            updated_ms=row.updated_ms,
        )

    def add(
        self, *, sku: str, name: str, name_km: str | None, price: Money, stock: int, now_ms: int
    ) -> Product:
        statement = (
            t.products.insert()
            .values(
                sku=sku,
                name=name,
                name_km=name_km,
                price_minor=price.minor,
                currency=price.currency.value,
                stock=stock,
                active=True,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
            .returning(t.products)
        )
        try:
            with self._connection.begin_nested():
                return self._product(self._connection.execute(statement).one())
        except IntegrityError as exc:
            if self.by_skus([sku]):
                raise DuplicateSku(sku) from exc
            raise

    def list_all(self) -> list[Product]:
        rows = self._connection.execute(sa.select(t.products).order_by(t.products.c.sku))
        return [self._product(row) for row in rows]

    def by_skus(self, skus: Iterable[str]) -> dict[str, Product]:
        rows = self._connection.execute(
            sa.select(t.products).where(t.products.c.sku.in_(list(skus)))
        )
        return {row.sku: self._product(row) for row in rows}

    def get(self, product_id: int) -> Product | None:
        row = self._connection.execute(
            sa.select(t.products).where(t.products.c.id == product_id)
        ).one_or_none()
        return None if row is None else self._product(row)

    def take_all_stock(self, quantities: Mapping[int, int], *, now_ms: int) -> int | None:
        """Take every product's quantity or none at all, in one guarded statement (several
        products: in a savepoint, undone as a whole when one is short); the id of the first
        product, in id order, with too little left, None when everything was taken."""
        products = t.products.c
        needed = sa.case(dict(quantities), value=products.id)
        statement = (
            t.products.update()
            .where(products.id.in_(sorted(quantities)), products.stock >= needed)
            .values(stock=products.stock - needed, updated_ms=now_ms)
        )
        if len(quantities) == 1:  # nothing to undo (no savepoint)
            (product_id,) = quantities
            return None if self._connection.execute(statement).rowcount == 1 else product_id
        try:
            with self._connection.begin_nested():
                if self._connection.execute(statement).rowcount < len(quantities):
                    short = self._connection.execute(
                        sa.select(sa.func.min(products.id)).where(
                            products.id.in_(sorted(quantities)), products.stock < needed
                        )
                    ).scalar_one()
                    raise _Short(short)
        except _Short as short:
            return short.product_id
        return None

    def lock_for_orders(self, order_ids: Iterable[int]) -> dict[int, Product]:
        """Lock the products these orders' lines take, in id order (after the orders
        themselves: the order every completion locks in), so completions of many orders in one
        transaction never deadlock with other such transactions on shared products; the
        products by id, as locked."""
        lines = t.order_lines.c
        rows = self._connection.execute(
            sa.select(t.products)
            .where(
                t.products.c.id.in_(
                    sa.select(lines.product_id).where(lines.order_id.in_(sorted(set(order_ids))))
                )
            )
            .order_by(t.products.c.id)
            .with_for_update()
        )
        return {row.id: self._product(row) for row in rows}

    def lock(self, sku: str) -> Product | None:
        """The product, locked until the transaction ends (`FOR UPDATE` on PostgreSQL; SQLite's
        write transaction already excludes other writers)."""
        row = self._connection.execute(
            sa.select(t.products).where(t.products.c.sku == sku).with_for_update()
        ).one_or_none()
        return None if row is None else self._product(row)

    def update(self, product_id: int, *, now_ms: int, **columns: object) -> Product:
        """Set `columns` (name, name_km, price_minor, active) of a product; the product as it
        is now."""
        row = self._connection.execute(
            t.products.update()
            .where(t.products.c.id == product_id)
            .values(updated_ms=now_ms, **columns)
            .returning(t.products)
        ).one()
        return self._product(row)

    def adjust_stock(self, sku: str, by: int, *, max_stock: int, now_ms: int) -> Product | None:
        """Add `by` (negative: take away) to the stock in one guarded statement, never a read then
        a write: nothing changes, and None is returned, if the stock would leave 0..max_stock
        (or there is no such product)."""
        stock = t.products.c.stock
        row = self._connection.execute(
            t.products.update()
            .where(t.products.c.sku == sku, stock + by >= 0, stock + by <= max_stock)
            .values(stock=stock + by, updated_ms=now_ms)
            .returning(t.products)
        ).one_or_none()
        return None if row is None else self._product(row)
