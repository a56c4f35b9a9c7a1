"""The CLI contract scripts rely on: flags, JSON keys, statuses, errors on stderr with exit 2."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from khqrpay.cli.main import app
from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.khqr import verify
from khqrpay.orders.model import Evidence, EvidenceSource
from khqrpay.services.completion import record_payment


class Cli:
    def __init__(self, database_url: str) -> None:
        self.runner = CliRunner()
        self.env = {
            "KHQRPAY_DATABASE_URL": database_url,
            "KHQRPAY_MERCHANT_ACCOUNT": "cli_shop@devb",
            "KHQRPAY_MERCHANT_NAME": "CLI Shop",
        }

    def ok(self, *args: str) -> Any:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def error(self, *args: str) -> str:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.startswith("error: ") or "Usage:" in result.stderr
        return result.stderr


def products_add(sku: str, name: str, price: str, currency: str, stock: str) -> tuple[str, ...]:
    """The arguments of `products add`."""
    return (
        "products",
        "add",
        "--sku",
        sku,
        "--name",
        name,
        "--price",
        price,
        "--currency",
        currency,
        "--stock",
        stock,
    )


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


def test_products_and_orders_round_trip(cli: Cli) -> None:
    tea = cli.ok(*products_add("TEA-1", "Iced tea", "1.50", "USD", "5"))
    assert tea == {
        "id": 1,
        "sku": "TEA-1",
        "name": "Iced tea",
        "name_km": None,
        "price": "1.50",
        "currency": "USD",
        "stock": 5,
        "active": True,
    }
    cli.ok(*products_add("RICE", "Rice", "4000", "khr", "2"), "--name-km", " បាយ ")
    listed = cli.ok("products", "list")
    assert [(p["sku"], p["name_km"], p["price"], p["currency"]) for p in listed] == [
        ("RICE", "បាយ", "4000", "KHR"),
        ("TEA-1", None, "1.50", "USD"),
    ]

    created = cli.ok(
        "orders", "create", "--line", "TEA-1:2", "--line", "TEA-1:1", "--phone", "012 345 678"
    )
    assert set(created) == {"id", "token", "status", "qr", "md5", "expires_at"}
    assert created["status"] == "PENDING"
    decoded = verify(created["qr"], now_ms=SystemClock().now_ms())
    assert decoded.md5 == created["md5"]
    assert str(decoded.money) == "4.50 USD"
    assert decoded.bakong_account_id == "cli_shop@devb"
    assert created["expires_at"].endswith("Z")

    shown = cli.ok("orders", "show", str(created["id"]))
    assert (shown["status"], shown["total"], shown["currency"]) == ("PENDING", "4.50", "USD")
    assert shown["token"] == created["token"]
    assert shown["phone"] == "+85512345678"
    assert shown["lines"] == [
        {
            "sku": "TEA-1",
            "name": "Iced tea",
            "name_km": None,
            "unit_price": "1.50",
            "quantity": 3,
            "total": "4.50",
        }
    ]
    [qr] = shown["qrs"]
    assert (qr["md5"], qr["status"], qr["expires_at"]) == (
        created["md5"],
        "PENDING",
        created["expires_at"],
    )
    assert shown["evidence"] == []
    assert [(a["action"], a["actor"], a["to_status"]) for a in shown["audit"]] == [
        ("order_created", "cli", "PENDING")
    ]
    assert shown["review_history"] == []

    listed_orders = cli.ok("orders", "list")
    assert [(o["id"], o["status"]) for o in listed_orders] == [(created["id"], "PENDING")]
    assert cli.ok("orders", "list", "--status", "PENDING") == listed_orders
    assert cli.ok("orders", "list", "--status", "completed") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("orders", "show", "404"), "order 404 not found"),
        (("orders", "create", "--line", "NOPE:1"), "unknown SKU: NOPE"),
        (("orders", "create", "--line", "TEA-1"), "must be SKU:QTY"),
        (("orders", "create", "--line", "TEA-1:1", "--phone", "123"), "not a Cambodian number"),
        (("orders", "list", "--status", "PAID"), "status 'PAID' is not one of PENDING"),
        (products_add("X", "X", "1.005", "USD", "1"), "USD allows at most 2 decimals"),
        (products_add("X", "X", "1", "EUR", "1"), "unsupported currency"),
        (products_add("X", "X", "1", "USD", "-1"), "stock must be a whole number"),
        (("orders", "show", "x"), "Invalid value"),
    ],
)
def test_refused_input_is_a_message_on_stderr_and_exit_2(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    cli.ok(*products_add("TEA-1", "Tea", "1", "USD", "1"))
    assert message in cli.error(*args)


def test_a_database_that_was_never_upgraded_is_refused_with_the_fix(tmp_path: Path) -> None:
    cli = Cli(f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert "run `khqrpay db upgrade`" in cli.error("orders", "list")
    upgraded = cli.ok("db", "upgrade")
    assert upgraded == {
        "database": f"sqlite:///{tmp_path / 'new.sqlite3'}",
        "revision": migrate.HEAD_REVISION,
    }
    assert cli.ok("orders", "list") == []


def test_the_password_never_appears_in_output() -> None:
    cli = Cli("postgresql+psycopg://shop:hunter2-secret@127.0.0.1:1/shop")
    stderr = cli.error("db", "upgrade")
    assert "hunter2-secret" not in stderr
    assert "database error" in stderr


def test_show_lists_every_review_reason_and_keeps_the_latest_as_review_reason(
    cli: Cli, database_url: str
) -> None:
    cli.ok(*products_add("TEA-1", "Tea", "1.50", "USD", "5"))
    created = cli.ok("orders", "create", "--line", "TEA-1:1")
    database = Database.from_url(database_url)
    try:
        for number, paid in enumerate(("1.00", "1.20"), start=1):
            with database.write() as uow:
                record_payment(
                    uow,
                    order_id=created["id"],
                    evidence=Evidence(
                        bakong_hash=f"{number:064x}",
                        from_account="payer@aba",
                        to_account="cli_shop@devb",
                        amount=Decimal(paid),
                        currency="USD",
                        paid_ms=SystemClock().now_ms(),
                    ),
                    source=EvidenceSource.VERIFIER,
                    actor="worker:w1",
                    now_ms=SystemClock().now_ms(),
                )
    finally:
        database.dispose()

    shown = cli.ok("orders", "show", str(created["id"]))

    history = shown["review_history"]
    assert [note["reason"] for note in history] == [
        "amount mismatch: expected 1.50 USD, paid 1.00 USD",
        "amount mismatch: expected 1.50 USD, paid 1.20 USD",
    ]
    assert {tuple(note) for note in history} == {("at", "reason", "actor")}
    assert {note["actor"] for note in history} == {"worker:w1"}
    assert all(note["at"].endswith("Z") for note in history)
    assert shown["review_reason"] == history[-1]["reason"]
