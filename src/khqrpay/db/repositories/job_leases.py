"""Leases of the jobs one worker at a time runs: `job_leases`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from khqrpay.db import tables as t


class JobLeaseRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def take(self, name: str, *, owner: str, now_ms: int, until_ms: int) -> bool:
        """Take (or extend) the lease of job `name` until `until_ms` if it is free, ended or
        already `owner`'s; whether `owner` holds it now. One guarded upsert: two workers taking
        it at the same moment cannot both get it."""
        dialect = postgresql if self._connection.dialect.name == "postgresql" else sqlite
        insert = dialect.insert(t.job_leases).values(name=name, owner=owner, until_ms=until_ms)
        leases = t.job_leases.c
        taken = self._connection.execute(
            insert.on_conflict_do_update(
                index_elements=[leases.name],
                set_={"owner": owner, "until_ms": until_ms},
                where=sa.or_(leases.until_ms <= now_ms, leases.owner == owner),
            ).returning(leases.name)
        ).first()
        return taken is not None
