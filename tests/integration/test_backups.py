"""Backups restore (docs/backups.md): the systemd backup unit's pg_dump, restored with
pg_restore, and SQLite's `.backup`, each give a working database at the latest schema."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.services.products import add_product

if TYPE_CHECKING:
    from tests.conftest import PostgresServer

BACKUP_UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "khqrpay-backup.service"
DAY_S = 86_400


def unit_commands(name: str) -> list[str]:
    """The unit's commands as systemd hands them to /bin/sh (`$$` → `$`, `%%` → `%`)."""
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.read_string(BACKUP_UNIT.read_text())
    line = parser["Service"][name]
    prefix = "/bin/sh -c '"
    assert line.startswith(prefix)
    assert line.endswith("'")
    return ["/bin/sh", "-c", line[len(prefix) : -1].replace("$$", "$").replace("%%", "%")]


def stock_of(url: str, sku: str) -> int:
    database = Database.from_url(url)
    try:
        assert migrate.current_revision(database) == migrate.HEAD_REVISION
        with database.read() as uow:
            return uow.products.by_skus([sku])[sku].stock
    finally:
        database.dispose()


def add_tea(url: str) -> None:
    database = Database.from_url(url)
    try:
        add_product(
            database,
            sku="TEA",
            name="Tea",
            price=Money.parse("1.25", Currency.USD),
            stock=17,
            now_ms=SystemClock().now_ms(),
        )
    finally:
        database.dispose()


@pytest.mark.postgres
def test_the_backup_units_dump_restores_with_pg_restore(
    postgres: PostgresServer, postgres_template: str, tmp_path: Path
) -> None:
    source = postgres.create(template=postgres_template)
    restored = postgres.create()
    try:
        add_tea(postgres.url(source))
        url = make_url(postgres.url(source))
        env = os.environ | {
            "STATE_DIRECTORY": str(tmp_path),
            "PGHOST": url.host or "",
            "PGPORT": str(url.port or 5432),
            "PGUSER": url.username or "",
            "PGPASSWORD": url.password or "",
            "PGDATABASE": source,
        }
        stale = tmp_path / "khqrpay-20000101T000000Z.dump"
        stale.write_bytes(b"")
        os.utime(stale, (time.time() - 20 * DAY_S, time.time() - 20 * DAY_S))
        for step in ("ExecStart", "ExecStartPost"):
            subprocess.run(unit_commands(step), env=env, check=True, timeout=120)
        (dump,) = tmp_path.glob("khqrpay-*.dump")  # the stale one was pruned
        assert dump != stale
        # docs/backups.md: restore into an empty database.
        target = make_url(postgres.url(restored)).set(drivername="postgresql")
        subprocess.run(
            [
                "pg_restore",
                "--no-owner",
                "--exit-on-error",
                "--dbname",
                target.render_as_string(hide_password=False),
                str(dump),
            ],
            check=True,
            timeout=120,
        )
        assert stock_of(postgres.url(restored), "TEA") == 17
        # The audit trail is still append-only after a restore: its triggers came along.
        database = Database.from_url(postgres.url(restored))
        try:
            with pytest.raises(sa.exc.DBAPIError), database.write() as uow:
                uow.connection.execute(sa.delete(t.audit_log))
        finally:
            database.dispose()
    finally:
        postgres.drop(source)
        postgres.drop(restored)


def test_sqlites_backup_command_copies_a_database_in_use(
    sqlite_template: Path, tmp_path: Path
) -> None:
    sqlite3_cli = shutil.which("sqlite3")
    if sqlite3_cli is None:
        pytest.skip("the sqlite3 command is not installed (apt-get install sqlite3)")
    live = tmp_path / "khqrpay.sqlite3"
    shutil.copy(sqlite_template, live)
    add_tea(f"sqlite:///{live}")
    backup = tmp_path / "backup.sqlite3"
    # docs/backups.md: safe while the app writes (the backup API copies a consistent snapshot).
    subprocess.run([sqlite3_cli, str(live), f".backup '{backup}'"], check=True, timeout=60)
    assert stock_of(f"sqlite:///{backup}", "TEA") == 17
