"""The append-only audit trail: `audit_log`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from khqrpay.db import tables as t
from khqrpay.orders.model import AuditEntry, NewAuditEntry, OrderStatus


def _status(value: str | None) -> OrderStatus | None:
    return None if value is None else OrderStatus(value)


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
        self.append_all(
            [
                NewAuditEntry(
                    order_id, at_ms, actor, action, from_status, to_status, reason, details or {}
                )
            ]
        )

    def append_all(self, entries: Sequence[NewAuditEntry]) -> None:
        """Several entries in one statement, in the order given."""
        if not entries:
            return
        self._connection.execute(
            t.audit_log.insert(),
            [
                {
                    "order_id": entry.order_id,
                    "at_ms": entry.at_ms,
                    "actor": entry.actor,
                    "action": entry.action,
                    "from_status": None if entry.from_status is None else entry.from_status.value,
                    "to_status": None if entry.to_status is None else entry.to_status.value,
                    "reason": entry.reason,
                    "details": dict(entry.details),
                }
                for entry in entries
            ],
        )

    def for_order(self, order_id: int) -> list[AuditEntry]:
        rows = self._connection.execute(
            sa.select(t.audit_log)
            .where(t.audit_log.c.order_id == order_id)
            .order_by(t.audit_log.c.id)
        )
        return self._entries(rows)

    def latest(self, actions: Collection[str], *, limit: int) -> list[AuditEntry]:
        """The newest entries about no order (products, accounts) with one of `actions`."""
        audit = t.audit_log.c
        rows = self._connection.execute(
            sa.select(t.audit_log)
            .where(audit.order_id.is_(None), audit.action.in_(sorted(actions)))
            .order_by(audit.id.desc())
            .limit(limit)
        )
        return self._entries(rows)

    @staticmethod
    def _entries(rows: Iterable[Row[Any]]) -> list[AuditEntry]:
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
