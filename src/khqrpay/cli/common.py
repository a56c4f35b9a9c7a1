"""What the CLI commands share: opening the database from the settings, printing JSON, showing
amounts and times, and turning refused input into `error: ...` on stderr and exit code 2."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import pydantic
import typer
from sqlalchemy.exc import OperationalError

from khqrpay.bootstrap import App, bootstrap
from khqrpay.db import DatabaseError
from khqrpay.khqr import KHQRError
from khqrpay.money import MoneyError
from khqrpay.orders.model import OrderError, validate_actor
from khqrpay.services.webhooks import WebhookError

USAGE_ERROR = 2


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(USAGE_ERROR)


OrderId = Annotated[int, typer.Argument(min=1, help="The order's id.")]
Reason = Annotated[str, typer.Option(help="Why, for the audit trail (required).")]
Staff = Annotated[
    str | None,
    typer.Option(help="Who acts, for the audit trail (recorded as staff:NAME; default: cli)."),
]


def staff_actor(staff: str | None) -> str:
    """The audit trail's actor for `--staff NAME`: `staff:NAME`, or `cli` without one."""
    return validate_actor("cli" if staff is None else f"staff:{staff.strip()}")


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))


@contextmanager
def reported_errors() -> Iterator[None]:
    """Input or state the command refuses becomes `error: ...` on stderr and exit code 2."""
    try:
        yield
    except (OrderError, MoneyError, KHQRError, DatabaseError, WebhookError) as exc:
        fail(str(exc))
    except pydantic.ValidationError as exc:
        fail(f"invalid settings: {exc}")
    except OperationalError as exc:
        # The driver's message names the problem; the statement and parameters are left out.
        fail(f"database error: {str(exc.orig).strip().splitlines()[0]}")


@contextmanager
def open_app(*, migrated: bool = True) -> Iterator[App]:
    """The app's parts from the settings (the database refused unless at the latest schema when
    `migrated`); inside `reported_errors`."""
    with reported_errors(), bootstrap(migrated=migrated) as app:
        yield app
