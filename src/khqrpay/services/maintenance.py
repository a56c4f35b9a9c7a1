"""Looking after the database: bringing its schema to the latest revision."""

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
