"""The engine for a database URL, with the settings each backend needs for safe concurrent writes.

SQLite: WAL (readers never block the writer), a busy timeout (writers wait instead of failing),
foreign keys on, and write transactions that begin with `BEGIN IMMEDIATE` so that the write lock is
taken up front; a deferred transaction that reads and then writes can fail with "database is
locked" instead of waiting. PostgreSQL: READ COMMITTED with explicit row locks (see
`repositories.OrderRepository.lock`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from khqrpay.db.uow import UnitOfWork

SQLITE_BUSY_TIMEOUT_MS = 30_000
# An execution option: read-only SQLite transactions start deferred so they never queue for the
# write lock.
_READ_ONLY = "khqrpay_read_only"


class DatabaseError(RuntimeError):
    """The database cannot be used as it is (unreachable, not migrated, ...)."""


def redacted(url: str | URL) -> str:
    """The URL without its password, for messages and logs."""
    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(engine: Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(_READ_ONLY, False)
        connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def create_engine(url: str | URL, **options: Any) -> Engine:
    """An engine with the backend settings above; a SQLite file's folder is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise DatabaseError("an in-memory SQLite database is one per connection; use a file")
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, **options)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseError(f"unsupported database {redacted(parsed)}: use sqlite or postgresql")
    return sa.create_engine(parsed, pool_pre_ping=True, **options)


class Database:
    """One database: hands out units of work (one transaction each)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_url(cls, url: str | URL, **options: Any) -> Database:
        return cls(create_engine(url, **options))

    @property
    def backend(self) -> str:
        """`sqlite` or `postgresql`."""
        return self.engine.dialect.name

    def __repr__(self) -> str:
        return f"Database({redacted(self.engine.url)})"

    @contextmanager
    def write(self) -> Iterator[UnitOfWork]:
        """A read-write transaction: committed if the block ends normally, else rolled back."""
        with self.engine.begin() as connection:
            yield UnitOfWork(connection)

    @contextmanager
    def read(self) -> Iterator[UnitOfWork]:
        """A transaction that sees one consistent snapshot and is rolled back at the end; on
        SQLite it never queues for the write lock."""
        if self.backend == "sqlite":
            engine = self.engine.execution_options(**{_READ_ONLY: True})
        else:
            engine = self.engine.execution_options(isolation_level="REPEATABLE READ")
        with engine.connect() as connection, connection.begin() as transaction:
            yield UnitOfWork(connection)
            transaction.rollback()

    def dispose(self) -> None:
        self.engine.dispose()
