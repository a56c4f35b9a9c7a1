"""The Bakong request budget shared by every process: `bakong_calls` and `bakong_budget`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from khqrpay.db import tables as t


class BudgetRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def lock(self) -> int | None:
        """Lock the budget until the transaction ends (PostgreSQL: the one row, `FOR UPDATE`;
        SQLite's write transaction already excludes other writers), so that a count and the
        calls added after it are one step for every process. Until when the md5 list is refused
        (None: it is not, as far as any process knows)."""
        until_ms: int | None = self._connection.execute(
            sa.select(t.bakong_budget.c.list_refused_until_ms)
            .where(t.bakong_budget.c.id == 1)
            .with_for_update()
        ).scalar_one()
        return until_ms

    def list_refused_until_ms(self) -> int | None:
        until_ms: int | None = self._connection.execute(
            sa.select(t.bakong_budget.c.list_refused_until_ms).where(t.bakong_budget.c.id == 1)
        ).scalar_one()
        return until_ms

    def set_list_refused_until(self, until_ms: int) -> None:
        """Record a refusal of the md5 list; a later end never moves back."""
        column = t.bakong_budget.c.list_refused_until_ms
        self._connection.execute(
            t.bakong_budget.update()
            .where(t.bakong_budget.c.id == 1, sa.or_(column.is_(None), column < until_ms))
            .values(list_refused_until_ms=until_ms)
        )

    def calls_since(self, since_ms: int) -> int:
        """Calls counted in the slots starting after `since_ms`."""
        calls = t.bakong_calls.c
        return int(
            self._connection.execute(
                sa.select(sa.func.coalesce(sa.func.sum(calls.calls), 0)).where(
                    calls.slot_ms > since_ms
                )
            ).scalar_one()
        )

    def add_calls(self, slot_ms: int, calls: int, *, prune_before_ms: int) -> None:
        """Count `calls` more in the slot starting at `slot_ms`; forget slots that no longer
        count (starting at or before `prune_before_ms`)."""
        on_postgresql = self._connection.dialect.name == "postgresql"
        insert = (postgresql if on_postgresql else sqlite).insert(t.bakong_calls)
        table = t.bakong_calls.c
        self._connection.execute(
            insert.values(slot_ms=slot_ms, calls=calls).on_conflict_do_update(
                index_elements=[table.slot_ms], set_={"calls": table.calls + insert.excluded.calls}
            )
        )
        self._connection.execute(t.bakong_calls.delete().where(table.slot_ms <= prune_before_ms))
