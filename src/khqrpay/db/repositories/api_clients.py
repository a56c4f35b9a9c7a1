"""The JSON API's clients: their keys (`api_keys`) and the Idempotency-Keys of their requests
(`idempotency_keys`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from khqrpay.db import tables as t
from khqrpay.orders.api_clients import ApiKey, IdempotencyRecord


class ActiveKeyExists(RuntimeError):
    """The client already holds an active key."""


class ApiKeyRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _key(row: Row[Any]) -> ApiKey:
        return ApiKey(
            id=row.id,
            client=row.client,
            shown=row.shown,
            created_ms=row.created_ms,
            revoked_ms=row.revoked_ms,
        )

    def add(self, *, client: str, key_hash: str, shown: str, now_ms: int) -> ApiKey:
        """A new active key; `ActiveKeyExists` if the client has one (the unique index says so,
        so two at the same moment cannot both succeed)."""
        statement = (
            t.api_keys.insert()
            .values(client=client, key_hash=key_hash, shown=shown, created_ms=now_ms)
            .returning(t.api_keys)
        )
        try:
            with self._connection.begin_nested():
                return self._key(self._connection.execute(statement).one())
        except IntegrityError as exc:
            if self.active_of(client) is not None:
                raise ActiveKeyExists(client) from exc
            raise

    def active_by_hash(self, key_hash: str) -> ApiKey | None:
        return self._active(t.api_keys.c.key_hash == key_hash)

    def active_of(self, client: str) -> ApiKey | None:
        return self._active(t.api_keys.c.client == client)

    def _active(self, which: sa.ColumnElement[bool]) -> ApiKey | None:
        row = self._connection.execute(
            sa.select(t.api_keys).where(which, t.api_keys.c.revoked_ms.is_(None))
        ).one_or_none()
        return None if row is None else self._key(row)

    def list_all(self) -> list[ApiKey]:
        """Every key ever made, by client, then oldest first."""
        rows = self._connection.execute(
            sa.select(t.api_keys).order_by(t.api_keys.c.client, t.api_keys.c.id)
        )
        return [self._key(row) for row in rows]

    def revoke(self, key_id: int, *, now_ms: int) -> ApiKey | None:
        """Revoke an active key (guarded: None if it was revoked meanwhile)."""
        row = self._connection.execute(
            t.api_keys.update()
            .where(t.api_keys.c.id == key_id, t.api_keys.c.revoked_ms.is_(None))
            .values(revoked_ms=now_ms)
            .returning(t.api_keys)
        ).one_or_none()
        return None if row is None else self._key(row)


class IdempotencyRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def claim(
        self, *, client: str, key: str, fingerprint: str, now_ms: int
    ) -> IdempotencyRecord | None:
        """Claim the key for this request: None when claimed, else the earlier request's record.

        The insert comes first: on PostgreSQL a second transaction inserting the same key waits
        on the unique index until the first commits, then fails and reads the committed record,
        so two identical requests at the same moment make one order. (SQLite's write
        transactions run one at a time: the second simply finds the record.)
        """
        statement = t.idempotency_keys.insert().values(
            client=client, key=key, fingerprint=fingerprint, created_ms=now_ms
        )
        try:
            with self._connection.begin_nested():
                self._connection.execute(statement)
        except IntegrityError:
            record = self.find(client=client, key=key)
            if record is None:
                raise
            return record
        return None

    def find(self, *, client: str, key: str) -> IdempotencyRecord | None:
        row = self._connection.execute(
            sa.select(t.idempotency_keys).where(
                t.idempotency_keys.c.client == client, t.idempotency_keys.c.key == key
            )
        ).one_or_none()
        if row is None:
            return None
        return IdempotencyRecord(
            client=row.client,
            key=row.key,
            fingerprint=row.fingerprint,
            order_id=row.order_id,
            created_ms=row.created_ms,
        )

    def attach_order(self, *, client: str, key: str, order_id: int) -> None:
        """The order the claiming request made (in the claiming transaction)."""
        self._connection.execute(
            t.idempotency_keys.update()
            .where(t.idempotency_keys.c.client == client, t.idempotency_keys.c.key == key)
            .values(order_id=order_id)
        )
