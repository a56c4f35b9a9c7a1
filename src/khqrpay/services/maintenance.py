"""Looking after the database: bringing its schema to the latest revision; the leases of the
jobs one worker at a time runs."""

from __future__ import annotations

from dataclasses import dataclass

from khqrpay.db import Database, migrate, redacted


@dataclass(frozen=True, slots=True)
class SchemaState:
    database: str  # the URL with any password hidden
    revision: str | None


def upgrade_database(database: Database) -> SchemaState:
    """Create the tables or bring them to the latest schema (safe to run again)."""
    migrate.upgrade(database)
    return SchemaState(redacted(database.engine.url), migrate.current_revision(database))


def hold_job(database: Database, job: str, *, owner: str, now_ms: int, lease_ms: int) -> bool:
    """Take or renew `owner`'s lease of `job` (e.g. the expiry sweep) for `lease_ms`; whether
    `owner` may run it now. Another worker gets it only once the lease has ended (its holder
    stopped or was killed), so one worker at a time runs the job."""
    with database.write() as uow:
        return uow.job_leases.take(job, owner=owner, now_ms=now_ms, until_ms=now_ms + lease_ms)
