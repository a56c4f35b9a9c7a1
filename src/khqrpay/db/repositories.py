"""Repositories: the SQL for each table, returning immutable domain objects.

They run inside the caller's transaction (a `UnitOfWork`) and never commit. Writes that must not
race are guarded in SQL (`WHERE status = :expected`, `WHERE stock >= :quantity`) and report
whether they happened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.model import (
    AttemptOutcome,
    AuditEntry,
    Evidence,
    EvidenceSource,
    KhqrPayment,
    Order,
    OrderLine,
    OrderNotFound,
    OrderStatus,
    OutboxEvent,
    PaymentStatus,
    Product,
    RecordedEvidence,
    VerificationAttempt,
    can_transition,
)


class DuplicateHash(RuntimeError):
    """A Bakong hash is already recorded (the unique index refused a second row)."""


class DuplicateSku(RuntimeError):
    """A product with that SKU already exists."""


def _money(minor: int, currency: str) -> Money:
    return Money.from_minor(minor, Currency(currency))


def _status(value: str | None) -> OrderStatus | None:
    return None if value is None else OrderStatus(value)


class ProductRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _product(row: Row[Any]) -> Product:
        return Product(
            id=row.id,
            sku=row.sku,
            name=row.name,
            price=_money(row.price_minor, row.currency),
            stock=row.stock,
            active=row.active,
            created_ms=row.created_ms,
            updated_ms=row.updated_ms,
        )

    def add(self, *, sku: str, name: str, price: Money, stock: int, now_ms: int) -> Product:
        statement = (
            t.products.insert()
            .values(
                sku=sku,
                name=name,
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

    def take_stock(self, product_id: int, quantity: int, *, now_ms: int) -> bool:
        """Decrement stock only if enough is left; False (and no change) otherwise."""
        result = self._connection.execute(
            t.products.update()
            .where(t.products.c.id == product_id, t.products.c.stock >= quantity)
            .values(stock=t.products.c.stock - quantity, updated_ms=now_ms)
        )
        return result.rowcount == 1


class OrderRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _order(row: Row[Any]) -> Order:
        return Order(
            id=row.id,
            public_token=row.public_token,
            status=OrderStatus(row.status),
            total=_money(row.total_minor, row.currency),
            customer_phone=row.customer_phone,
            created_ms=row.created_ms,
            window_end_ms=row.window_end_ms,
            completed_ms=row.completed_ms,
            review_reason=row.review_reason,
            refund_flag=row.refund_flag,
            refund_reason=row.refund_reason,
            paid_manually_without_hash=row.paid_manually_without_hash,
            updated_ms=row.updated_ms,
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
    ) -> Order:
        """A new PENDING order with its lines (all in the order's currency)."""
        row = self._connection.execute(
            t.orders.insert()
            .values(
                public_token=public_token,
                status=OrderStatus.PENDING.value,
                currency=total.currency.value,
                total_minor=total.minor,
                customer_phone=customer_phone,
                created_ms=now_ms,
                window_end_ms=window_end_ms,
                updated_ms=now_ms,
            )
            .returning(t.orders)
        ).one()
        self._connection.execute(
            t.order_lines.insert(),
            [
                {
                    "order_id": row.id,
                    "product_id": line.product_id,
                    "sku": line.sku,
                    "name": line.name,
                    "unit_price_minor": line.unit_price.minor,
                    "quantity": line.quantity,
                }
                for line in lines
            ],
        )
        return self._order(row)

    def get(self, order_id: int) -> Order:
        row = self._connection.execute(
            sa.select(t.orders).where(t.orders.c.id == order_id)
        ).one_or_none()
        if row is None:
            raise OrderNotFound(f"order {order_id} not found")
        return self._order(row)

    def lock(self, order_id: int) -> Order:
        """The order, locked until the transaction ends: `SELECT ... FOR UPDATE` on PostgreSQL;
        on SQLite the write transaction (`BEGIN IMMEDIATE`) already excludes other writers."""
        row = self._connection.execute(
            sa.select(t.orders).where(t.orders.c.id == order_id).with_for_update()
        ).one_or_none()
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

    def find(self, status: OrderStatus | None = None) -> list[Order]:
        """Orders, newest first, optionally only those with one status."""
        query = sa.select(t.orders).order_by(t.orders.c.id.desc())
        if status is not None:
            query = query.where(t.orders.c.status == status.value)
        return [self._order(row) for row in self._connection.execute(query)]

    def lines(self, order_id: int) -> list[OrderLine]:
        rows = self._connection.execute(
            sa.select(t.order_lines, t.orders.c.currency)
            .join(t.orders, t.orders.c.id == t.order_lines.c.order_id)
            .where(t.order_lines.c.order_id == order_id)
            .order_by(t.order_lines.c.id)
        )
        return [
            OrderLine(
                product_id=row.product_id,
                sku=row.sku,
                name=row.name,
                unit_price=_money(row.unit_price_minor, row.currency),
                quantity=row.quantity,
            )
            for row in rows
        ]

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
        if target is not expected and not can_transition(expected, target):
            raise ValueError(f"an order cannot go from {expected} to {target}")
        result = self._connection.execute(
            t.orders.update()
            .where(t.orders.c.id == order_id, t.orders.c.status == expected.value)
            .values(status=target.value, updated_ms=now_ms, **columns)
        )
        return result.rowcount == 1


class PaymentRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _payment(row: Row[Any]) -> KhqrPayment:
        return KhqrPayment(
            id=row.id,
            order_id=row.order_id,
            qr=row.qr,
            md5=row.md5,
            amount=_money(row.amount_minor, row.currency),
            to_account=row.to_account,
            created_ms=row.created_ms,
            expires_ms=row.expires_ms,
            status=PaymentStatus(row.status),
            next_check_ms=row.next_check_ms,
            earliest_check_ms=row.earliest_check_ms,
            hot_until_ms=row.hot_until_ms,
            consecutive_errors=row.consecutive_errors,
            lease_owner=row.lease_owner,
            lease_until_ms=row.lease_until_ms,
            check_count=row.check_count,
            last_checked_ms=row.last_checked_ms,
            last_outcome=None if row.last_outcome is None else AttemptOutcome(row.last_outcome),
        )

    def add(
        self,
        *,
        order_id: int,
        qr: str,
        md5: str,
        amount: Money,
        to_account: str,
        created_ms: int,
        expires_ms: int,
        next_check_ms: int,
        earliest_check_ms: int,
    ) -> KhqrPayment:
        row = self._connection.execute(
            t.khqr_payments.insert()
            .values(
                order_id=order_id,
                qr=qr,
                md5=md5,
                amount_minor=amount.minor,
                currency=amount.currency.value,
                to_account=to_account,
                created_ms=created_ms,
                expires_ms=expires_ms,
                status=PaymentStatus.PENDING.value,
                next_check_ms=next_check_ms,
                earliest_check_ms=earliest_check_ms,
            )
            .returning(t.khqr_payments)
        ).one()
        return self._payment(row)

    def get(self, payment_id: int) -> KhqrPayment | None:
        row = self._connection.execute(
            sa.select(t.khqr_payments).where(t.khqr_payments.c.id == payment_id)
        ).one_or_none()
        return None if row is None else self._payment(row)

    def for_order(self, order_id: int) -> list[KhqrPayment]:
        rows = self._connection.execute(
            sa.select(t.khqr_payments)
            .where(t.khqr_payments.c.order_id == order_id)
            .order_by(t.khqr_payments.c.id)
        )
        return [self._payment(row) for row in rows]

    def mark_paid(self, payment_id: int, *, now_ms: int) -> None:
        """The QR was paid: no more checks, lease released."""
        self._connection.execute(
            t.khqr_payments.update()
            .where(t.khqr_payments.c.id == payment_id)
            .values(
                status=PaymentStatus.PAID.value,
                next_check_ms=None,
                earliest_check_ms=None,
                lease_owner=None,
                lease_until_ms=None,
                last_checked_ms=now_ms,
                last_outcome=AttemptOutcome.PAID.value,
            )
        )


class EvidenceRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _recorded(row: Row[Any]) -> RecordedEvidence:
        return RecordedEvidence(
            id=row.id,
            order_id=row.order_id,
            payment_id=row.payment_id,
            evidence=Evidence(
                bakong_hash=row.bakong_hash,
                from_account=row.from_account,
                to_account=row.to_account,
                amount=row.amount,
                currency=row.currency,
                paid_ms=row.paid_ms,
            ),
            amount_minor=row.amount_minor,
            source=EvidenceSource(row.source),
            matched=row.matched,
            mismatch_reason=row.mismatch_reason,
            recorded_ms=row.recorded_ms,
        )

    def add(
        self,
        evidence: Evidence,
        *,
        order_id: int,
        payment_id: int | None,
        source: EvidenceSource,
        mismatch_reason: str | None,
        now_ms: int,
    ) -> int:
        """Insert under a savepoint; `DuplicateHash` (and no change) if the hash is recorded."""
        paid = evidence.money()
        statement = (
            t.payment_evidence.insert()
            .values(
                order_id=order_id,
                payment_id=payment_id,
                bakong_hash=evidence.bakong_hash,
                short_hash=evidence.short_hash,
                from_account=evidence.from_account,
                to_account=evidence.to_account,
                amount=evidence.amount,
                amount_minor=None if paid is None else paid.minor,
                currency=evidence.currency,
                paid_ms=evidence.paid_ms,
                source=source.value,
                matched=mismatch_reason is None,
                mismatch_reason=mismatch_reason,
                recorded_ms=now_ms,
            )
            .returning(t.payment_evidence.c.id)
        )
        try:
            with self._connection.begin_nested():
                evidence_id: int = self._connection.execute(statement).scalar_one()
        except IntegrityError as exc:
            if self.order_of_hash(evidence.bakong_hash) is None:
                raise
            raise DuplicateHash(evidence.short_hash) from exc
        return evidence_id

    def order_of_hash(self, bakong_hash: str) -> int | None:
        """The order a Bakong hash is recorded for, if any."""
        order_id: int | None = self._connection.execute(
            sa.select(t.payment_evidence.c.order_id).where(
                t.payment_evidence.c.bakong_hash == bakong_hash
            )
        ).scalar_one_or_none()
        return order_id

    def for_order(self, order_id: int) -> list[RecordedEvidence]:
        rows = self._connection.execute(
            sa.select(t.payment_evidence)
            .where(t.payment_evidence.c.order_id == order_id)
            .order_by(t.payment_evidence.c.id)
        )
        return [self._recorded(row) for row in rows]

    def link_payment(self, bakong_hash: str, payment_id: int) -> bool:
        """Name the QR a hash paid, when it was recorded without one (staff gave the hash)."""
        result = self._connection.execute(
            t.payment_evidence.update()
            .where(
                t.payment_evidence.c.bakong_hash == bakong_hash,
                t.payment_evidence.c.payment_id.is_(None),
            )
            .values(payment_id=payment_id)
        )
        return result.rowcount == 1


class AuditRepository:
    """Append-only: there is deliberately no update or delete here."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def append(
        self,
        *,
        order_id: int | None,
        at_ms: int,
        actor: str,
        action: str,
        from_status: OrderStatus | None = None,
        to_status: OrderStatus | None = None,
        reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        self._connection.execute(
            t.audit_log.insert().values(
                order_id=order_id,
                at_ms=at_ms,
                actor=actor,
                action=action,
                from_status=None if from_status is None else from_status.value,
                to_status=None if to_status is None else to_status.value,
                reason=reason,
                details=dict(details or {}),
            )
        )

    def for_order(self, order_id: int) -> list[AuditEntry]:
        rows = self._connection.execute(
            sa.select(t.audit_log)
            .where(t.audit_log.c.order_id == order_id)
            .order_by(t.audit_log.c.id)
        )
        return [
            AuditEntry(
                id=row.id,
                order_id=row.order_id,
                at_ms=row.at_ms,
                actor=row.actor,
                action=row.action,
                from_status=_status(row.from_status),
                to_status=_status(row.to_status),
                reason=row.reason,
                details=row.details,
            )
            for row in rows
        ]


class OutboxRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(
        self, *, topic: str, order_id: int | None, payload: Mapping[str, object], now_ms: int
    ) -> None:
        self._connection.execute(
            t.outbox.insert().values(
                created_ms=now_ms, topic=topic, order_id=order_id, payload=dict(payload)
            )
        )

    def unpublished(self, limit: int) -> list[OutboxEvent]:
        """The oldest events not yet relayed, in the order they were written."""
        rows = self._connection.execute(
            sa.select(t.outbox)
            .where(t.outbox.c.published_ms.is_(None))
            .order_by(t.outbox.c.id)
            .limit(limit)
        )
        return [
            OutboxEvent(
                id=row.id,
                created_ms=row.created_ms,
                topic=row.topic,
                order_id=row.order_id,
                payload=row.payload,
                published_ms=row.published_ms,
                attempts=row.attempts,
            )
            for row in rows
        ]

    def mark_published(self, event_ids: Sequence[int], *, now_ms: int) -> None:
        self._connection.execute(
            t.outbox.update()
            .where(t.outbox.c.id.in_(list(event_ids)), t.outbox.c.published_ms.is_(None))
            .values(published_ms=now_ms, attempts=t.outbox.c.attempts + 1)
        )


class AttemptRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def record_batch(self, attempts: Sequence[VerificationAttempt], *, keep: int) -> None:
        """Record attempts, count them in the per-payment totals, and keep only the last `keep`
        rows of each payment touched."""
        if keep < 1:
            raise ValueError("keep at least one attempt per payment")
        if not attempts:
            return
        self._connection.execute(
            t.verification_attempts.insert(),
            [
                {
                    "payment_id": attempt.payment_id,
                    "order_id": attempt.order_id,
                    "at_ms": attempt.at_ms,
                    "source": attempt.source.value,
                    "outcome": attempt.outcome.value,
                    "latency_ms": attempt.latency_ms,
                    "detail": attempt.detail,
                }
                for attempt in attempts
            ],
        )
        self._add_to_totals(attempts)
        self._prune({attempt.payment_id for attempt in attempts}, keep)

    def _add_to_totals(self, attempts: Sequence[VerificationAttempt]) -> None:
        counts = Counter((attempt.payment_id, attempt.outcome) for attempt in attempts)
        last_ms: dict[tuple[int, AttemptOutcome], int] = {}
        for attempt in attempts:
            key = (attempt.payment_id, attempt.outcome)
            last_ms[key] = max(last_ms.get(key, attempt.at_ms), attempt.at_ms)
        on_postgresql = self._connection.dialect.name == "postgresql"
        dialect = postgresql if on_postgresql else sqlite
        insert = dialect.insert(t.verification_attempt_totals)
        # The larger of two values: GREATEST on PostgreSQL, the two-argument MAX on SQLite.
        larger = sa.func.greatest if on_postgresql else sa.func.max
        totals = t.verification_attempt_totals.c
        self._connection.execute(
            insert.on_conflict_do_update(
                index_elements=[totals.payment_id, totals.outcome],
                set_={
                    "count": totals.count + insert.excluded.count,
                    "last_ms": larger(totals.last_ms, insert.excluded.last_ms),
                },
            ),
            [
                {
                    "payment_id": payment_id,
                    "outcome": outcome.value,
                    "count": count,
                    "last_ms": last_ms[(payment_id, outcome)],
                }
                for (payment_id, outcome), count in sorted(counts.items())
            ],
        )

    def _prune(self, payment_ids: set[int], keep: int) -> None:
        attempts = t.verification_attempts.c
        ranked = (
            sa.select(
                attempts.id,
                sa.func.row_number()
                .over(partition_by=attempts.payment_id, order_by=attempts.id.desc())
                .label("rank"),
            )
            .where(attempts.payment_id.in_(sorted(payment_ids)))
            .subquery()
        )
        self._connection.execute(
            t.verification_attempts.delete().where(
                attempts.id.in_(sa.select(ranked.c.id).where(ranked.c.rank > keep))
            )
        )

    def recent(self, payment_id: int) -> list[VerificationAttempt]:
        """The kept attempts of one payment, newest first."""
        rows = self._connection.execute(
            sa.select(t.verification_attempts)
            .where(t.verification_attempts.c.payment_id == payment_id)
            .order_by(t.verification_attempts.c.id.desc())
        )
        return [
            VerificationAttempt(
                payment_id=row.payment_id,
                order_id=row.order_id,
                at_ms=row.at_ms,
                source=EvidenceSource(row.source),
                outcome=AttemptOutcome(row.outcome),
                latency_ms=row.latency_ms,
                detail=row.detail,
            )
            for row in rows
        ]

    def totals(self, payment_id: int) -> dict[AttemptOutcome, int]:
        """How many attempts of each outcome were ever recorded for a payment."""
        rows = self._connection.execute(
            sa.select(
                t.verification_attempt_totals.c.outcome, t.verification_attempt_totals.c.count
            ).where(t.verification_attempt_totals.c.payment_id == payment_id)
        )
        # `Row.count` is tuple.count, so the columns are read by position.
        return {AttemptOutcome(outcome): count for outcome, count in rows}
