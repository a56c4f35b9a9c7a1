"""Every check of a QR: `verification_attempts`, `verification_attempt_totals`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from khqrpay.db import tables as t
from khqrpay.orders.model import AttemptOutcome, EvidenceSource, VerificationAttempt
from khqrpay.orders.schedule import ErrorKind

# Outcomes that are no answer from Bakong, only an error (they share the schedule's names).
ERROR_OUTCOMES = frozenset(AttemptOutcome(kind.value) for kind in ErrorKind)


@dataclass(frozen=True, slots=True)
class CheckRound:
    """One check → apply round: its Bakong calls and what the QRs' answers were."""

    at_ms: int
    source: EvidenceSource
    calls: int
    checks: int
    errors: int
    outcomes: Mapping[AttemptOutcome, int]


class AttemptRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def record_batch(self, attempts: Sequence[VerificationAttempt], *, keep: int) -> None:
        """Count attempts in the per-payment totals and record each one but the routine ones
        (`VerificationAttempt.routine`) as a row, keeping only the last `keep` rows of each
        payment given one."""
        if keep < 1:
            raise ValueError("keep at least one attempt per payment")
        if not attempts:
            return
        self._add_to_totals(attempts)
        logged = [attempt for attempt in attempts if not attempt.routine]
        if not logged:
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
                for attempt in logged
            ],
        )
        self._prune({attempt.payment_id for attempt in logged}, keep)

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

    def record_round(
        self,
        *,
        at_ms: int,
        source: EvidenceSource,
        calls: int,
        outcomes: Mapping[AttemptOutcome, int],
        keep_ms: int,
    ) -> None:
        """One round of checks (`calls` Bakong calls, each QR's outcome counted); rounds older
        than `keep_ms` are deleted."""
        counted = {outcome.value: count for outcome, count in outcomes.items() if count}
        self._connection.execute(
            t.verification_rounds.insert().values(
                at_ms=at_ms,
                source=source.value,
                calls=calls,
                checks=sum(counted.values()),
                errors=sum(outcomes.get(outcome, 0) for outcome in ERROR_OUTCOMES),
                outcomes=counted,
            )
        )
        self._connection.execute(
            t.verification_rounds.delete().where(t.verification_rounds.c.at_ms < at_ms - keep_ms)
        )

    def rounds_since(self, since_ms: int) -> list[CheckRound]:
        """The rounds from `since_ms` on, oldest first."""
        rounds = t.verification_rounds.c
        rows = self._connection.execute(
            sa.select(t.verification_rounds)
            .where(rounds.at_ms >= since_ms)
            .order_by(rounds.at_ms, rounds.id)
        )
        return [
            CheckRound(
                at_ms=row.at_ms,
                source=EvidenceSource(row.source),
                calls=row.calls,
                checks=row.checks,
                errors=row.errors,
                outcomes={AttemptOutcome(k): int(v) for k, v in row.outcomes.items()},
            )
            for row in rows
        ]

    def last_answered_ms(self) -> int | None:
        """When Bakong last answered a check (a round with fewer errors than checks)."""
        rounds = t.verification_rounds.c
        last: int | None = self._connection.execute(
            sa.select(sa.func.max(rounds.at_ms)).where(rounds.errors < rounds.checks)
        ).scalar()
        return last
