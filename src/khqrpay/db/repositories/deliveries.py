"""The queue every outbound message table shares (webhook deliveries, Telegram messages).

A row is PENDING until delivered or dead. A worker claims due rows under a lease (so a killed
worker's rows come back when the lease ends), sends them with no transaction open, and writes the
outcome back guarded by its lease. Rows of one *lane* (one endpoint's messages about one order,
one chat's messages) go out in id order: only the oldest pending row of a lane is ever claimed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql import FromClause

from khqrpay.orders.notices import DeliveryState, DeliveryStatus

PENDING = DeliveryStatus.PENDING.value
# Written into the statement, not bound: the partial indexes on pending rows are then usable by
# the planner whatever it knows of the parameters (PostgreSQL's generic plans).
_PENDING_SQL: sa.ColumnElement[str] = sa.literal_column(f"'{PENDING}'")


def delivery_state(row: sa.Row[Any]) -> DeliveryState:
    return DeliveryState(
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        created_ms=row.created_ms,
        started_ms=row.started_ms,
        next_attempt_ms=row.next_attempt_ms,
        last_attempt_ms=row.last_attempt_ms,
        last_error=row.last_error,
        done_ms=row.done_ms,
    )


def new_delivery(now_ms: int) -> dict[str, object]:
    """The queue columns of a message to send now."""
    return {
        "status": PENDING,
        "attempts": 0,
        "created_ms": now_ms,
        "started_ms": now_ms,
        "next_attempt_ms": now_ms,
    }


@dataclass(frozen=True, slots=True)
class Try:
    """One try's outcome: delivered (no error), again at `again_ms`, or dead (neither)."""

    row_id: int
    at_ms: int
    error: str | None = None
    again_ms: int | None = None

    @property
    def status(self) -> DeliveryStatus:
        if self.error is None:
            return DeliveryStatus.DELIVERED
        return DeliveryStatus.DEAD if self.again_ms is None else DeliveryStatus.PENDING


class DeliveryQueue:
    """The queue columns of `table`; `target` is the recipient column (concurrency is counted
    per target), `lane` the columns whose rows must go out in order."""

    def __init__(
        self, connection: Connection, table: sa.Table, *, target: str, lane: Sequence[str]
    ) -> None:
        self._connection = connection
        self._table = table
        self._target = target
        self._lane = tuple(lane)

    def _claimable(self, now_ms: int) -> tuple[FromClause, list[sa.ColumnElement[bool]]]:
        """The rows a worker may take now: pending, due, not leased, first of their lane."""
        row = self._table.alias("row")
        earlier = self._table.alias("earlier")
        before_in_lane = (
            sa.exists()
            .where(*(earlier.c[column] == row.c[column] for column in self._lane))
            .where(earlier.c.status == _PENDING_SQL, earlier.c.id < row.c.id)
        )
        return row, [
            row.c.status == _PENDING_SQL,
            row.c.next_attempt_ms <= now_ms,
            sa.or_(row.c.lease_until_ms.is_(None), row.c.lease_until_ms <= now_ms),
            ~before_in_lane,
        ]

    def due_targets(self, now_ms: int) -> list[Any]:
        """The recipients with a message to send now."""
        row, claimable = self._claimable(now_ms)
        query = sa.select(row.c[self._target]).where(*claimable).distinct()
        return list(self._connection.execute(query).scalars())

    def claim(
        self, target: object, *, now_ms: int, limit: int, owner: str, lease_until_ms: int
    ) -> list[int]:
        """Lease up to `limit` of `target`'s claimable rows, oldest first; their ids. On
        PostgreSQL rows another worker is claiming are skipped (`FOR UPDATE SKIP LOCKED`)."""
        row, claimable = self._claimable(now_ms)
        query = (
            sa.select(row.c.id)
            .where(row.c[self._target] == target, *claimable)
            .order_by(row.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True, of=row)
        )
        ids = list(self._connection.execute(query).scalars())
        if ids:
            self._connection.execute(
                self._table.update()
                .where(self._table.c.id.in_(ids))
                .values(lease_owner=owner, lease_until_ms=lease_until_ms)
            )
        return ids

    def record_tries(self, tries: Sequence[Try], *, owner: str) -> None:
        """Write the outcome of each try, one statement for them all, to the rows `owner` still
        holds (a row replayed or taken over meanwhile is left as it is)."""
        if not tries:
            return
        table = self._table
        self._connection.execute(
            table.update()
            .where(
                table.c.id == sa.bindparam("row_id"),
                table.c.status == PENDING,
                table.c.lease_owner == owner,
            )
            .values(
                status=sa.bindparam("new_status"),
                attempts=table.c.attempts + 1,
                last_attempt_ms=sa.bindparam("at_ms"),
                last_error=sa.bindparam("error"),
                done_ms=sa.bindparam("finished_ms"),
                next_attempt_ms=sa.func.coalesce(sa.bindparam("again_ms"), table.c.next_attempt_ms),
                lease_owner=None,
                lease_until_ms=None,
            ),
            [
                {
                    "row_id": attempt.row_id,
                    "new_status": attempt.status.value,
                    "at_ms": attempt.at_ms,
                    "error": attempt.error,
                    "finished_ms": None if attempt.again_ms is not None else attempt.at_ms,
                    "again_ms": attempt.again_ms,
                }
                for attempt in tries
            ],
        )

    def release(self, row_ids: Sequence[int], *, owner: str) -> None:
        """Hand back rows claimed and not sent (shutdown): claimable again at once."""
        if row_ids:
            self._connection.execute(
                self._table.update()
                .where(self._table.c.id.in_(list(row_ids)), self._table.c.lease_owner == owner)
                .values(lease_owner=None, lease_until_ms=None)
            )

    def give_up(self, where: sa.ColumnElement[bool], *, now_ms: int, error: str) -> int:
        """Dead-letter the pending rows `where` selects (their recipient is gone)."""
        result = self._connection.execute(
            self._table.update()
            .where(where, self._table.c.status == PENDING)
            .values(
                status=DeliveryStatus.DEAD.value,
                done_ms=now_ms,
                last_error=error,
                lease_owner=None,
                lease_until_ms=None,
            )
        )
        return result.rowcount

    def restart(self, row_id: int, *, now_ms: int) -> bool:
        """Send a row again from now (a replay): pending, due now, a new retry window; its tries
        so far stay counted."""
        result = self._connection.execute(
            self._table.update()
            .where(self._table.c.id == row_id)
            .values(
                status=PENDING,
                started_ms=now_ms,
                next_attempt_ms=now_ms,
                done_ms=None,
                lease_owner=None,
                lease_until_ms=None,
            )
        )
        return result.rowcount == 1
