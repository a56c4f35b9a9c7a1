"""Orders and their lines: `orders`, `order_lines`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from khqrpay.db import tables as t
from khqrpay.db.repositories._shared import money
from khqrpay.money import Money
from khqrpay.orders.model import (
    Order,
    OrderLine,
    OrderNotFound,
    OrderStatus,
    PaymentStatus,
    can_transition,
)


@dataclass(frozen=True, slots=True)
class OrderSearch:
    """What a search text may be, read by the caller; an order matching any of them is found."""

    ids: tuple[int, ...] = ()
    token: str | None = None
    phone: str | None = None  # a whole number, E.164
    phone_digits: str | None = None  # digits the number contains
    hex_prefix: str | None = None  # the start of a QR's md5 or of a Bakong hash (lower case)


@dataclass(frozen=True, slots=True)
class OrderQuery:
    """The staff's order list: each field set narrows it."""

    status: OrderStatus | None = None
    refund_flagged: bool = False
    created_from_ms: int | None = None
    created_before_ms: int | None = None
    search: OrderSearch | None = None


class OrderRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _order(row: Row[Any]) -> Order:
        return Order(
            id=row.id,
            public_token=row.public_token,
            status=OrderStatus(row.status),
            total=money(row.total_minor, row.currency),
            customer_phone=row.customer_phone,
            created_ms=row.created_ms,
            window_end_ms=row.window_end_ms,
            completed_ms=row.completed_ms,
            review_reason=row.review_reason,
            refund_flag=row.refund_flag,
            refund_reason=row.refund_reason,
            paid_manually_without_hash=row.paid_manually_without_hash,
            updated_ms=row.updated_ms,
            refund_reference=row.refund_reference,
            customer_name=row.customer_name,
            reference=row.reference,
            api_client=row.api_client,
        )

    def add(
        self,
        *,
        public_token: str,
        total: Money,
        customer_phone: str | None,
        lines: Sequence[OrderLine],
        now_ms: int,
        window_end_ms: int,
        customer_name: str | None = None,
        reference: str | None = None,
        api_client: str | None = None,
    ) -> Order:
        """A new PENDING order with its lines (all in the order's currency; none for an order
        paid by amount)."""
        row = self._connection.execute(
            t.orders.insert()
            .values(
                public_token=public_token,
                status=OrderStatus.PENDING.value,
                currency=total.currency.value,
                total_minor=total.minor,
                customer_phone=customer_phone,
                customer_name=customer_name,
                reference=reference,
                api_client=api_client,
                created_ms=now_ms,
                window_end_ms=window_end_ms,
                updated_ms=now_ms,
            )
            .returning(t.orders)
        ).one()
        if not lines:
            return self._order(row)
        self._connection.execute(
            t.order_lines.insert(),
            [
                {
                    "order_id": row.id,
                    "product_id": line.product_id,
                    "sku": line.sku,
                    "name": line.name,
                    "name_km": line.name_km,
                    "unit_price_minor": line.unit_price.minor,
                    "quantity": line.quantity,
                }
                for line in lines
            ],
        )
        return self._order(row)

    def get(self, order_id: int) -> Order:
        return self._by_id(order_id, lock=False)

    def lock(self, order_id: int) -> Order:
        """The order, locked until the transaction ends: `SELECT ... FOR UPDATE` on PostgreSQL;
        on SQLite the write transaction (`BEGIN IMMEDIATE`) already excludes other writers."""
        return self._by_id(order_id, lock=True)

    def lock_all(self, order_ids: Iterable[int]) -> dict[int, Order]:
        """Lock these orders in one statement, in id order, so that a transaction completing
        several never deadlocks with another doing the same; the orders by id (unknown ids are
        left out)."""
        rows = self._connection.execute(
            sa.select(t.orders)
            .where(t.orders.c.id.in_(sorted(set(order_ids))))
            .order_by(t.orders.c.id)
            .with_for_update()
        )
        return {row.id: self._order(row) for row in rows}

    def _by_id(self, order_id: int, *, lock: bool) -> Order:
        query = sa.select(t.orders).where(t.orders.c.id == order_id)
        if lock:
            query = query.with_for_update()
        row = self._connection.execute(query).one_or_none()
        if row is None:
            raise OrderNotFound(f"order {order_id} not found")
        return self._order(row)

    def by_token(self, public_token: str) -> Order:
        row = self._connection.execute(
            sa.select(t.orders).where(t.orders.c.public_token == public_token)
        ).one_or_none()
        if row is None:
            # Never echo the token: it is the customer's key to the order.
            raise OrderNotFound("no order has that token")
        return self._order(row)

    def by_tokens(self, public_tokens: Sequence[str]) -> list[Order]:
        """The orders that have these tokens (unknown ones are left out), newest first."""
        rows = self._connection.execute(
            sa.select(t.orders)
            .where(t.orders.c.public_token.in_(list(public_tokens)))
            .order_by(t.orders.c.id.desc())
        )
        return [self._order(row) for row in rows]

    def with_phone(self, customer_phone: str, *, limit: int) -> list[Order]:
        """The newest orders placed with this phone number (E.164)."""
        rows = self._connection.execute(
            sa.select(t.orders)
            .where(t.orders.c.customer_phone == customer_phone)
            .order_by(t.orders.c.id.desc())
            .limit(limit)
        )
        return [self._order(row) for row in rows]

    def of_client(
        self,
        api_client: str,
        *,
        status: OrderStatus | None,
        updated_since_ms: int | None,
        after_id: int,
        limit: int,
    ) -> list[Order]:
        """An API client's orders with ids above `after_id`, oldest first (a page of a listing)."""
        orders = t.orders.c
        query = sa.select(t.orders).where(orders.api_client == api_client, orders.id > after_id)
        if status is not None:
            query = query.where(orders.status == status.value)
        if updated_since_ms is not None:
            query = query.where(orders.updated_ms >= updated_since_ms)
        rows = self._connection.execute(query.order_by(orders.id).limit(limit))
        return [self._order(row) for row in rows]

    def find(self, status: OrderStatus | None = None) -> list[Order]:
        """Orders, newest first, optionally only those with one status."""
        query = sa.select(t.orders).order_by(t.orders.c.id.desc())
        if status is not None:
            query = query.where(t.orders.c.status == status.value)
        return [self._order(row) for row in self._connection.execute(query)]

    def unpaid_after_window(self, *, now_ms: int, grace_ms: int, limit: int) -> list[int]:
        """The ids of pending orders whose window (plus `grace_ms`) has ended and that have no
        pending QR left, the earliest window end first."""
        orders, payments = t.orders.c, t.khqr_payments.c
        pending_qr = sa.exists().where(
            payments.order_id == orders.id, payments.status == PaymentStatus.PENDING.value
        )
        return list(
            self._connection.execute(
                sa.select(orders.id)
                .where(
                    orders.status == OrderStatus.PENDING.value,
                    # The column alone on one side, so the partial index bounds the scan.
                    orders.window_end_ms <= now_ms - grace_ms,
                    ~pending_qr,
                )
                .order_by(orders.window_end_ms)
                .limit(limit)
            ).scalars()
        )

    def lines(self, order_id: int) -> list[OrderLine]:
        return self.lines_of([order_id]).get(order_id, [])

    def lines_of(self, order_ids: Sequence[int]) -> dict[int, list[OrderLine]]:
        """The lines of several orders (one query), by order id; an order without lines (one
        paid by amount) is left out."""
        rows = self._connection.execute(
            sa.select(t.order_lines, t.orders.c.currency)
            .join(t.orders, t.orders.c.id == t.order_lines.c.order_id)
            .where(t.order_lines.c.order_id.in_(list(order_ids)))
            .order_by(t.order_lines.c.id)
        )
        lines: dict[int, list[OrderLine]] = {}
        for row in rows:
            lines.setdefault(row.order_id, []).append(
                OrderLine(
                    product_id=row.product_id,
                    sku=row.sku,
                    name=row.name,
                    name_km=row.name_km,
                    unit_price=money(row.unit_price_minor, row.currency),
                    quantity=row.quantity,
                )
            )
        return lines

    def transition(
        self,
        order_id: int,
        *,
        expected: OrderStatus,
        target: OrderStatus,
        now_ms: int,
        **columns: object,
    ) -> bool:
        """Guarded status change: happens only if the order is still `expected`. A change the
        state machine does not allow is a bug, refused before it reaches the database."""
        changed = self.transition_all(
            [order_id], expected=expected, target=target, now_ms=now_ms, **columns
        )
        return changed == 1

    def transition_all(
        self,
        order_ids: Sequence[int],
        *,
        expected: OrderStatus,
        target: OrderStatus,
        now_ms: int,
        **columns: object,
    ) -> int:
        """`transition` for several orders in one statement; how many changed."""
        if target is not expected and not can_transition(expected, target):
            raise ValueError(f"an order cannot go from {expected} to {target}")
        result = self._connection.execute(
            t.orders.update()
            .where(t.orders.c.id.in_(sorted(order_ids)), t.orders.c.status == expected.value)
            .values(status=target.value, updated_ms=now_ms, **columns)
        )
        return result.rowcount

    def query(self, query: OrderQuery, *, limit: int, offset: int = 0) -> tuple[list[Order], int]:
        """One page of the orders `query` describes, newest first, and how many there are."""
        conditions = _conditions(query)
        total = self._connection.execute(
            sa.select(sa.func.count()).select_from(t.orders).where(*conditions)
        ).scalar_one()
        rows = self._connection.execute(
            sa.select(t.orders)
            .where(*conditions)
            .order_by(t.orders.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [self._order(row) for row in rows], int(total)

    def count_by_status(self) -> dict[OrderStatus, int]:
        rows = self._connection.execute(
            sa.select(t.orders.c.status, sa.func.count()).group_by(t.orders.c.status)
        )
        counts = dict.fromkeys(OrderStatus, 0)
        counts.update((OrderStatus(status), count) for status, count in rows)
        return counts

    def completed_totals(self, *, since_ms: int) -> list[Money]:
        """What the orders completed since `since_ms` took, one sum per currency."""
        orders = t.orders.c
        rows = self._connection.execute(
            sa.select(orders.currency, sa.func.sum(orders.total_minor))
            .where(orders.status == OrderStatus.COMPLETED.value, orders.completed_ms >= since_ms)
            .group_by(orders.currency)
            .order_by(orders.currency)
        )
        return [money(int(total), currency) for currency, total in rows]


def _conditions(query: OrderQuery) -> list[sa.ColumnElement[bool]]:
    orders = t.orders.c
    conditions: list[sa.ColumnElement[bool]] = []
    if query.status is not None:
        conditions.append(orders.status == query.status.value)
    if query.refund_flagged:
        conditions.append(orders.refund_flag.is_(sa.true()))
    if query.created_from_ms is not None:
        conditions.append(orders.created_ms >= query.created_from_ms)
    if query.created_before_ms is not None:
        conditions.append(orders.created_ms < query.created_before_ms)
    if query.search is not None:
        conditions.append(_matches(query.search))
    return conditions


def _matches(search: OrderSearch) -> sa.ColumnElement[bool]:
    orders, payments, evidence = t.orders.c, t.khqr_payments.c, t.payment_evidence.c
    alternatives: list[sa.ColumnElement[bool]] = []
    if search.ids:
        alternatives.append(orders.id.in_(search.ids))
    if search.token is not None:
        alternatives.append(orders.public_token == search.token)
    if search.phone is not None:
        alternatives.append(orders.customer_phone == search.phone)
    if search.phone_digits is not None:
        alternatives.append(orders.customer_phone.contains(search.phone_digits, autoescape=True))
    if search.hex_prefix is not None:
        alternatives += [
            sa.exists().where(
                payments.order_id == orders.id,
                payments.md5.startswith(search.hex_prefix, autoescape=True),
            ),
            sa.exists().where(
                evidence.order_id == orders.id,
                evidence.bakong_hash.startswith(search.hex_prefix, autoescape=True),
            ),
        ]
    return sa.or_(sa.false(), *alternatives)
