"""What the CLI commands share: opening the database from the settings, printing JSON, showing
amounts and times, and turning refused input into `error: ...` on stderr and exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from sqlalchemy.exc import OperationalError

from khqrpay.clock import ms_to_datetime
from khqrpay.db import Database, DatabaseError, migrate
from khqrpay.khqr import KHQRError
from khqrpay.money import Money, MoneyError
from khqrpay.orders.model import OrderError
from khqrpay.settings import Settings, SettingsError, load_settings

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


def amount(money: Money) -> str:
    """An exact amount in the currency's usual unit, all its decimals written: `3.00`, `4000`."""
    return f"{money.amount:.{money.currency.exponent}f}"


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as ISO 8601 UTC (`2026-11-26T00:00:00.000Z`)."""
    if ms is None:
        return None
    return ms_to_datetime(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def reported_errors() -> Iterator[None]:
    """Input or state the command refuses becomes `error: ...` on stderr and exit code 2."""
    try:
        yield
    except (OrderError, MoneyError, KHQRError, DatabaseError, SettingsError) as exc:
        fail(str(exc))
    except OperationalError as exc:
        # The driver's message names the problem; the statement and parameters are left out.
        fail(f"database error: {str(exc.orig).strip().splitlines()[0]}")


@contextmanager
def open_database(*, migrated: bool = True) -> Iterator[tuple[Database, Settings]]:
    """The database of `KHQRPAY_DATABASE_URL` (refused unless at the latest schema when
    `migrated`), with the settings; inside `reported_errors`."""
    with reported_errors():
        settings = load_settings()
        database = Database.from_url(settings.database_url)
        try:
            if migrated:
                migrate.require_current(database)
            yield database, settings
        finally:
            database.dispose()
