"""Running the packaged Alembic migrations, and checking a database is at the latest schema.

Alembic (and its script directory) is imported only to migrate or compare: every command checks
the schema at start by reading `alembic_version` against `HEAD_REVISION`, which costs a query, not
the import of Alembic and every migration script.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from khqrpay.db.engine import Database, DatabaseError, redacted

if TYPE_CHECKING:
    from alembic.config import Config

SCRIPT_LOCATION = "khqrpay.db:migrations"
# The newest migration's revision, known without loading Alembic's script directory: a new
# migration changes it too (a unit test compares it with the scripts' head).
HEAD_REVISION = "0010"
# Alembic's table of the applied revision (its default name and schema).
VERSION_TABLE = "alembic_version"


def alembic_config() -> Config:
    """The migrations' configuration, found inside the installed package (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    from alembic import command

    _run(database, command.upgrade, revision)


def downgrade(database: Database, revision: str) -> None:
    from alembic import command

    _run(database, command.downgrade, revision)


def _run(database: Database, step: Callable[[Config, str], None], revision: str) -> None:
    config = alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def current_revision(database: Database) -> str | None:
    """The revision the database is at, as Alembic records it; None before the first migration."""
    with database.read() as uow:
        if not sa.inspect(uow.connection).has_table(VERSION_TABLE):
            return None
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        revisions = list(uow.connection.execute(sa.select(version.c.version_num)).scalars())
    if len(revisions) > 1:  # khqrpay's migrations are one line: one revision at a time
        raise DatabaseError(
            f"the database {redacted(database.engine.url)} records several schema revisions "
            f"({', '.join(sorted(revisions))}): it was not migrated by khqrpay"
        )
    return revisions[0] if revisions else None


def require_current(database: Database) -> None:
    """Refuse to work on a database whose schema is not the latest: say how to fix it."""
    current = current_revision(database)
    if current != HEAD_REVISION:
        raise DatabaseError(
            f"the database {redacted(database.engine.url)} is at schema {current or 'none'}, "
            f"not {HEAD_REVISION}: run `khqrpay db upgrade`"
        )


def schema_differences(database: Database) -> list[Any]:
    """What differs between the tables in `khqrpay.db.tables` and the migrated database (empty
    when the migrations and the models agree)."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from khqrpay.db.tables import metadata

    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))
