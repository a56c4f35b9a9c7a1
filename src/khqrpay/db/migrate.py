"""Running the packaged Alembic migrations, and checking a database is at the latest schema."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from khqrpay.db.engine import Database, DatabaseError, redacted
from khqrpay.db.tables import metadata

SCRIPT_LOCATION = "khqrpay.db:migrations"


def alembic_config() -> Config:
    """The migrations' configuration, found inside the installed package (no alembic.ini)."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships its migrations
        raise DatabaseError("no migrations found in the package")
    return head


def upgrade(database: Database, revision: str = "head") -> None:
    _run(database, command.upgrade, revision)


def downgrade(database: Database, revision: str) -> None:
    _run(database, command.downgrade, revision)


def _run(database: Database, step: Any, revision: str) -> None:
    config = alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        step(config, revision)


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current(database: Database) -> None:
    """Refuse to work on a database whose schema is not the latest: say how to fix it."""
    current, head = current_revision(database), head_revision()
    if current != head:
        raise DatabaseError(
            f"the database {redacted(database.engine.url)} is at schema {current or 'none'}, "
            f"not {head}: run `khqrpay db upgrade`"
        )


def schema_differences(database: Database) -> list[Any]:
    """What differs between the tables in `khqrpay.db.tables` and the migrated database (empty
    when the migrations and the models agree)."""
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))
