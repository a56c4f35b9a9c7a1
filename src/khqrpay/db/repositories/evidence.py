"""What Bakong said about each transfer: `payment_evidence`."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Row

from khqrpay.db import tables as t
from khqrpay.orders.model import Evidence, EvidenceSource, PaidTime, RecordedEvidence


class DuplicateHash(RuntimeError):
    """A Bakong hash is already recorded (the unique index refused a second row)."""


@dataclass(frozen=True, slots=True)
class NewEvidence:
    """A transfer to record for an order (`payment_id`: the QR it paid, if known)."""

    evidence: Evidence
    order_id: int
    payment_id: int | None
    mismatch_reason: str | None


def _evidence_row(entry: NewEvidence, source: EvidenceSource, now_ms: int) -> dict[str, object]:
    evidence, paid = entry.evidence, entry.evidence.money()
    return {
        "order_id": entry.order_id,
        "payment_id": entry.payment_id,
        "bakong_hash": evidence.bakong_hash,
        "short_hash": evidence.short_hash,
        "from_account": evidence.from_account,
        "to_account": evidence.to_account,
        "amount": evidence.amount,
        "amount_minor": None if paid is None else paid.minor,
        "currency": evidence.currency,
        "paid_ms": evidence.paid_ms,
        "paid_time": evidence.paid_time.value,
        "source": source.value,
        "matched": entry.mismatch_reason is None,
        "mismatch_reason": entry.mismatch_reason,
        "recorded_ms": now_ms,
    }


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
        """Insert; `DuplicateHash` (and no change) if the hash is recorded."""
        added = self.add_all(
            [NewEvidence(evidence, order_id, payment_id, mismatch_reason)],
            source=source,
            now_ms=now_ms,
        )
        if evidence.bakong_hash not in added:
            raise DuplicateHash(evidence.short_hash)
        return added[evidence.bakong_hash]

    def add_all(
        self, entries: Sequence[NewEvidence], *, source: EvidenceSource, now_ms: int
    ) -> dict[str, int]:
        """Insert several in one statement; the ids of those inserted, by hash. A hash already
        recorded is left out (no change): `ON CONFLICT DO NOTHING` rather than a savepoint."""
        if not entries:
            return {}
        on_postgresql = self._connection.dialect.name == "postgresql"
        insert = (postgresql if on_postgresql else sqlite).insert(t.payment_evidence)
        statement = insert.on_conflict_do_nothing(
            index_elements=[t.payment_evidence.c.bakong_hash]
        ).returning(t.payment_evidence.c.id, t.payment_evidence.c.bakong_hash)
        rows = self._connection.execute(
            statement, [_evidence_row(entry, source, now_ms) for entry in entries]
        )
        return {row.bakong_hash: row.id for row in rows}

    def order_of_hash(self, bakong_hash: str) -> int | None:
        """The order a Bakong hash is recorded for, if any."""
        return self.orders_of_hashes([bakong_hash]).get(bakong_hash)

    def orders_of_hashes(self, bakong_hashes: Iterable[str]) -> dict[str, int]:
        """The orders these Bakong hashes are recorded for, by hash (unrecorded ones left out)."""
        evidence = t.payment_evidence.c
        rows = self._connection.execute(
            sa.select(evidence.bakong_hash, evidence.order_id).where(
                evidence.bakong_hash.in_(sorted(set(bakong_hashes)))
            )
        )
        return {row.bakong_hash: row.order_id for row in rows}

    def hashes_of_orders(self, order_ids: Iterable[int]) -> dict[int, set[str]]:
        """The hashes recorded for each of these orders (one query); an order without any is
        left out."""
        evidence = t.payment_evidence.c
        rows = self._connection.execute(
            sa.select(evidence.order_id, evidence.bakong_hash).where(
                evidence.order_id.in_(sorted(set(order_ids)))
            )
        )
        hashes: dict[int, set[str]] = {}
        for row in rows:
            hashes.setdefault(row.order_id, set()).add(row.bakong_hash)
        return hashes

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
