"""What Bakong said about each transfer: `payment_evidence`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from khqrpay.db import tables as t
from khqrpay.orders.model import Evidence, EvidenceSource, PaidTime, RecordedEvidence


class DuplicateHash(RuntimeError):
    """A Bakong hash is already recorded (the unique index refused a second row)."""


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
                paid_time=PaidTime(row.paid_time),
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
        """Insert; `DuplicateHash` (and no change) if the hash is recorded. `ON CONFLICT DO
        NOTHING` on the hash rather than a savepoint: two round trips fewer per payment."""
        paid = evidence.money()
        on_postgresql = self._connection.dialect.name == "postgresql"
        insert = (postgresql if on_postgresql else sqlite).insert(t.payment_evidence)
        statement = (
            insert.values(
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
                paid_time=evidence.paid_time.value,
                source=source.value,
                matched=mismatch_reason is None,
                mismatch_reason=mismatch_reason,
                recorded_ms=now_ms,
            )
            .on_conflict_do_nothing(index_elements=[t.payment_evidence.c.bakong_hash])
            .returning(t.payment_evidence.c.id)
        )
        evidence_id: int | None = self._connection.execute(statement).scalar_one_or_none()
        if evidence_id is None:
            raise DuplicateHash(evidence.short_hash)
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

    def recorded_since(self, since_ms: int) -> list[RecordedEvidence]:
        """Every transfer recorded from `since_ms` on, oldest first."""
        rows = self._connection.execute(
            sa.select(t.payment_evidence)
            .where(t.payment_evidence.c.recorded_ms >= since_ms)
            .order_by(t.payment_evidence.c.recorded_ms)
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
