"""The append-only audit trail: `audit_log`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from khqrpay.db import tables as t
from khqrpay.orders.model import AuditEntry, OrderStatus


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
