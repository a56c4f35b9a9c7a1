"""Alembic environment: runs on the connection `khqrpay.db.migrate` hands over, or on the URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from khqrpay.db.engine import create_engine
from khqrpay.db.tables import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters tables by copying them; batch mode makes later migrations portable.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("khqrpay migrations run online only: give a database URL")
run_migrations_online()
