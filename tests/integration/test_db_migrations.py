"""Migrations: the same scripts on SQLite and PostgreSQL, matching the tables in the code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import DatabaseError as DriverError

from khqrpay.db import Database, DatabaseError, migrate
from khqrpay.db.tables import metadata

TABLES = {
    "api_keys",
    "idempotency_keys",
    "job_leases",
    "products",
    "orders",
    "order_lines",
    "khqr_payments",
    "payment_evidence",
    "audit_log",
    "verification_attempts",
    "verification_attempt_totals",
    "outbox",
    "verification_rounds",
    "staff_users",
    "staff_login_failures",
    "webhook_endpoints",
    "webhook_endpoint_events",
    "webhook_messages",
    "webhook_deliveries",
    "webhook_attempts",
    "telegram_alerts",
    "telegram_messages",
    "bakong_calls",
    "bakong_budget",
}


def _tables(database: Database) -> set[str]:
    return set(sa.inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_creates_the_schema_the_code_describes(empty_database: Database) -> None:
    assert migrate.current_revision(empty_database) is None
    migrate.upgrade(empty_database)
    assert migrate.current_revision(empty_database) == migrate.HEAD_REVISION
    assert _tables(empty_database) == TABLES == set(metadata.tables)
    # Alembic's autogenerate comparison: columns, types, nullability, indexes, uniques, keys.
    assert migrate.schema_differences(empty_database) == []
    # Alembic does not compare CHECK constraints: compare their names.
    inspector = sa.inspect(empty_database.engine)
    for table in metadata.sorted_tables:
        in_code = {c.name for c in table.constraints if isinstance(c, sa.CheckConstraint)}
        in_database = {c["name"] for c in inspector.get_check_constraints(table.name)}
        assert in_database == in_code, table.name
    migrate.require_current(empty_database)


def test_upgrade_is_repeatable_and_downgrade_removes_everything(empty_database: Database) -> None:
    migrate.upgrade(empty_database)
    migrate.upgrade(empty_database)
    migrate.downgrade(empty_database, "base")
    assert _tables(empty_database) == set()
    migrate.upgrade(empty_database)
    assert _tables(empty_database) == TABLES


def test_a_database_behind_the_code_is_refused_with_the_fix(empty_database: Database) -> None:
    for revision in ("none", "0001"):
        if revision != "none":
            migrate.upgrade(empty_database, revision)
        fix = f"is at schema {revision}, not {migrate.HEAD_REVISION}: run `khqrpay db upgrade`"
        with pytest.raises(DatabaseError, match=re.escape(fix)):
            migrate.require_current(empty_database)


def _alembic_revision(database: Database) -> str | None:
    with database.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_the_revision_read_without_alembic_is_alembics(empty_database: Database) -> None:
    assert migrate.current_revision(empty_database) is _alembic_revision(empty_database) is None
    for revision in ("0001", "0003", "head"):
        migrate.upgrade(empty_database, revision)
        assert migrate.current_revision(empty_database) == _alembic_revision(empty_database)
    assert migrate.current_revision(empty_database) == migrate.HEAD_REVISION


def test_a_database_with_several_revisions_is_refused(empty_database: Database) -> None:
    migrate.upgrade(empty_database)
    with empty_database.write() as uow:
        uow.connection.execute(sa.text("INSERT INTO alembic_version VALUES ('0001')"))
    with pytest.raises(DatabaseError, match="several schema revisions"):
        migrate.require_current(empty_database)


def test_the_audit_log_is_append_only(database: Database) -> None:
    with database.write() as uow:
        uow.audit.append(order_id=None, at_ms=1, actor="system", action="test")
    for statement in ("UPDATE audit_log SET actor = 'forger'", "DELETE FROM audit_log"):
        with pytest.raises(DriverError, match="append-only"), database.write() as uow:
            uow.connection.exec_driver_sql(statement)
    with database.read() as uow:
        assert uow.connection.exec_driver_sql("SELECT actor FROM audit_log").all() == [("system",)]


def test_the_database_refuses_negative_stock(database: Database) -> None:
    with database.write() as uow:
        uow.connection.execute(
            sa.text(
                "INSERT INTO products (sku, name, price_minor, currency, stock, active, "
                "created_ms, updated_ms) VALUES ('S', 'n', 1, 'USD', 0, true, 0, 0)"
            )
        )
    with pytest.raises(sa.exc.IntegrityError), database.write() as uow:
        uow.connection.execute(sa.text("UPDATE products SET stock = stock - 1"))


def test_db_upgrade_works_from_the_installed_command(tmp_path: Path) -> None:
    """`khqrpay db upgrade` finds the migrations inside the package, wherever it runs from."""
    url = f"sqlite:///{tmp_path / 'sub' / 'shop.sqlite3'}"
    command = Path(sys.executable).with_name("khqrpay")
    env = {**os.environ, "KHQRPAY_DATABASE_URL": url}
    result = subprocess.run(
        [command, "db", "upgrade"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f'"revision": "{migrate.HEAD_REVISION}"' in result.stdout
    database = Database.from_url(url)
    try:
        assert _tables(database) == TABLES
    finally:
        database.dispose()


def _an_order_at_an_older_revision(database: Database) -> None:
    """An order written with the columns every revision has (by SQL: the code is newer)."""
    with database.write() as uow:
        uow.connection.execute(
            sa.text(
                "INSERT INTO orders (public_token, status, currency, total_minor, created_ms, "
                "window_end_ms, updated_ms) VALUES ('t', 'PENDING', 'USD', 150, 0, 1, 0)"
            )
        )


def test_0002_adds_the_refund_reference_to_existing_orders_and_removes_it_again(
    empty_database: Database,
) -> None:
    migrate.upgrade(empty_database, "0001")
    _an_order_at_an_older_revision(empty_database)
    migrate.upgrade(empty_database)
    with empty_database.read() as uow:
        assert uow.orders.get(1).refund_reference is None
    migrate.downgrade(empty_database, "0001")
    columns = {c["name"] for c in sa.inspect(empty_database.engine).get_columns("orders")}
    assert "refund_reference" not in columns
    with empty_database.read() as uow:
        assert uow.connection.execute(sa.text("SELECT count(*) FROM orders")).scalar_one() == 1


def test_0004_keeps_existing_orders_and_removes_what_it_added(empty_database: Database) -> None:
    migrate.upgrade(empty_database, "0003")
    _an_order_at_an_older_revision(empty_database)
    migrate.upgrade(empty_database)
    with empty_database.read() as uow:
        order = uow.orders.get(1)
    assert (order.customer_name, order.reference, order.api_client) == (None, None, None)
    migrate.downgrade(empty_database, "0003")
    inspector = sa.inspect(empty_database.engine)
    columns = {c["name"] for c in inspector.get_columns("orders")}
    assert not columns & {"customer_name", "reference", "api_client"}
    assert not {"api_keys", "idempotency_keys"} & set(inspector.get_table_names())
    with empty_database.read() as uow:
        assert uow.connection.execute(sa.text("SELECT count(*) FROM orders")).scalar_one() == 1


def test_a_client_holds_one_active_key_at_a_time(database: Database) -> None:
    def add(key_hash: str) -> None:
        with database.write() as uow:
            uow.connection.execute(
                sa.text(
                    "INSERT INTO api_keys (client, key_hash, shown, created_ms) "
                    "VALUES ('pos', :key_hash, 'k', 0)"
                ),
                {"key_hash": key_hash},
            )

    add("a" * 64)
    with pytest.raises(sa.exc.IntegrityError):
        add("b" * 64)
    with database.write() as uow:
        uow.connection.execute(sa.text("UPDATE api_keys SET revoked_ms = 1"))
    add("b" * 64)


def test_0010_gives_existing_products_and_lines_no_khmer_name_and_removes_it_again(
    empty_database: Database,
) -> None:
    migrate.upgrade(empty_database, "0006")
    _an_order_at_an_older_revision(empty_database)
    with empty_database.write() as uow:
        uow.connection.execute(
            sa.text(
                "INSERT INTO products (sku, name, price_minor, currency, stock, active, "
                "created_ms, updated_ms) VALUES ('TEA', 'Tea', 150, 'USD', 1, true, 0, 0)"
            )
        )
        uow.connection.execute(
            sa.text(
                "INSERT INTO order_lines (order_id, product_id, sku, name, unit_price_minor, "
                "quantity) VALUES (1, 1, 'TEA', 'Tea', 150, 1)"
            )
        )
    migrate.upgrade(empty_database)
    with empty_database.read() as uow:
        product = uow.products.get(1)
        assert product is not None
        assert product.name_km is None
        assert [line.name_km for line in uow.orders.lines(1)] == [None]
    migrate.downgrade(empty_database, "0006")
    inspector = sa.inspect(empty_database.engine)
    for table in ("products", "order_lines"):
        assert "name_km" not in {c["name"] for c in inspector.get_columns(table)}
    with empty_database.read() as uow:
        assert uow.connection.execute(sa.text("SELECT name FROM order_lines")).all() == [("Tea",)]
