"""The staff commands: `orders cancel|resolve|clear-refund-flag`, `products update|deactivate|
activate|adjust-stock`. JSON out; a refused action or bad input is `error: ...` and exit 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from test_cli_orders import Cli, products_add

from khqrpay.db import Database
from khqrpay.orders.model import EvidenceSource
from khqrpay.services.completion import record_payment

if TYPE_CHECKING:
    from conftest import Shop


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


def _pay_first_qr(shop: Shop, database: Database, order_id: int) -> None:
    """The verifier recording a payment of the order's first QR (what Bakong said)."""
    with database.read() as uow:
        [payment] = uow.payments.for_order(order_id)
    with database.write() as uow:
        record_payment(
            uow,
            order_id=order_id,
            # Paid a second after the QR was made (the CLI made it on the real clock).
            evidence=shop.evidence(payment, paid_ms=payment.created_ms + 1_000),
            source=EvidenceSource.VERIFIER,
            actor="worker:test",
            now_ms=shop.clock.now_ms(),
            payment_id=payment.id,
        )


def test_cancel_then_a_payment_then_resolve_by_refund(
    cli: Cli, shop: Shop, database: Database
) -> None:
    cli.ok(*products_add("TEA-1", "Iced tea", "1.50", "USD", "5"))
    order = cli.ok("orders", "create", "--line", "TEA-1:2")
    cancelled = cli.ok(
        "orders", "cancel", str(order["id"]), "--reason", "customer left", "--staff", "dara"
    )
    assert (cancelled["previous_status"], cancelled["status"], cancelled["refund_flag"]) == (
        "PENDING",
        "CANCELLED",
        False,
    )
    assert "error: order 1 is CANCELLED: only a PENDING order can be cancelled" in cli.error(
        "orders", "cancel", str(order["id"]), "--reason", "again"
    )

    _pay_first_qr(shop, database, order["id"])
    shown = cli.ok("orders", "show", str(order["id"]))
    assert (shown["status"], shown["refund_flag"], shown["refund_reason"]) == (
        "NEEDS_REVIEW",
        True,
        "paid a cancelled order",
    )
    refunded = cli.ok(
        "orders", "resolve", str(order["id"]), "--refund", "FT-991", "--reason", "sent back"
    )
    assert (refunded["status"], refunded["refund_flag"], refunded["refund_reference"]) == (
        "REFUNDED",
        False,
        "FT-991",
    )
    shown = cli.ok("orders", "show", str(order["id"]))
    assert shown["refund_reference"] == "FT-991"
    assert [(e["action"], e["actor"], e["reason"]) for e in shown["audit"][-2:]] == [
        ("needs_review", "worker:test", "paid a cancelled order"),
        ("refunded", "cli", "sent back"),
    ]
    assert cli.ok("products", "list")[0]["stock"] == 5


def test_resolve_by_accepting_takes_the_stock(cli: Cli, shop: Shop, database: Database) -> None:
    cli.ok(*products_add("TEA-1", "Iced tea", "1.50", "USD", "5"))
    order = cli.ok("orders", "create", "--line", "TEA-1:2")
    cli.ok("orders", "cancel", str(order["id"]), "--reason", "customer left")
    _pay_first_qr(shop, database, order["id"])
    accepted = cli.ok(
        "orders", "resolve", str(order["id"]), "--accept", "--reason", "came back", "--staff", "sok"
    )
    assert (accepted["previous_status"], accepted["status"], accepted["refund_flag"]) == (
        "NEEDS_REVIEW",
        "COMPLETED",
        False,
    )
    assert cli.ok("products", "list")[0]["stock"] == 3
    audit = cli.ok("orders", "show", str(order["id"]))["audit"]
    assert [(e["action"], e["actor"]) for e in audit[-2:]] == [
        ("completed", "staff:sok"),
        ("refund_flag_cleared", "staff:sok"),
    ]


def test_clear_refund_flag_records_the_reference(cli: Cli, shop: Shop, database: Database) -> None:
    cli.ok(*products_add("TEA-1", "Iced tea", "1.50", "USD", "5"))
    order = cli.ok("orders", "create", "--line", "TEA-1:1")
    _pay_first_qr(shop, database, order["id"])
    _pay_first_qr(shop, database, order["id"])  # a second transfer for the same QR
    assert cli.ok("orders", "show", str(order["id"]))["refund_flag"] is True
    cleared = cli.ok(
        "orders",
        "clear-refund-flag",
        str(order["id"]),
        "--reference",
        "FT-7",
        "--reason",
        "second payment sent back",
    )
    assert (cleared["status"], cleared["refund_flag"], cleared["refund_reference"]) == (
        "COMPLETED",
        False,
        "FT-7",
    )
    assert "has no refund flag to clear" in cli.error(
        "orders", "clear-refund-flag", str(order["id"]), "--reference", "FT-8", "--reason", "x"
    )


# Each refused with this message; none changes the order or the catalogue.
REFUSED: list[tuple[tuple[str, ...], str]] = [
    (("orders", "cancel", "1", "--reason", " "), "error: a reason is required"),
    (("orders", "cancel", "9", "--reason", "x"), "error: order 9 not found"),
    (("orders", "cancel", "0", "--reason", "x"), "Invalid value for 'order_id'"),
    (("orders", "cancel", "1"), "Missing option '--reason'"),
    (("orders", "cancel", "1", "--reason", "x", "--staff", "a/b"), "Invalid value for '--staff'"),
    (("orders", "resolve", "1", "--reason", "x"), "error: give either --accept or --refund"),
    (
        ("orders", "resolve", "1", "--accept", "--refund", "FT", "--reason", "x"),
        "error: give either --accept or --refund",
    ),
    (
        ("orders", "resolve", "1", "--accept", "--reason", "x"),
        "error: order 1 is PENDING: only a NEEDS_REVIEW order can be accepted as paid",
    ),
    (
        ("orders", "resolve", "1", "--refund", " ", "--reason", "x"),
        "error: a refund reference is 1 to 128 characters",
    ),
    (
        ("orders", "clear-refund-flag", "1", "--reference", "FT", "--reason", "x"),
        "error: order 1 has no refund flag to clear",
    ),
    (("products", "update", "TEA-1"), "error: give a new name, Khmer name or price"),
    (("products", "update", "TEA-1", "--price", "1.001"), "error: USD allows at most 2"),
    (
        ("products", "update", "TEA-1", "--name-km", "Iced tea"),
        "error: a Khmer name must be written in Khmer script",
    ),
    (("products", "update", "NOPE", "--name", "x"), "error: unknown SKU: NOPE"),
    (("products", "deactivate", "NOPE"), "error: unknown SKU: NOPE"),
    (
        ("products", "adjust-stock", "TEA-1", "--by", "-6", "--reason", "count"),
        "error: TEA-1 has 5 in stock: cannot take away 6",
    ),
    (("products", "adjust-stock", "TEA-1", "--by", "2"), "Missing option '--reason'"),
    (("products", "adjust-stock", "TEA-1", "--by", "0", "--reason", "x"), "not 0"),
]


def test_bad_staff_input_and_refused_actions_exit_2_and_change_nothing(cli: Cli) -> None:
    cli.ok(*products_add("TEA-1", "Iced tea", "1.50", "USD", "5"))
    order = cli.ok("orders", "create", "--line", "TEA-1:1")
    before = cli.ok("orders", "show", str(order["id"])), cli.ok("products", "list")
    for args, message in REFUSED:
        assert message in cli.error(*args), args
    assert (cli.ok("orders", "show", str(order["id"])), cli.ok("products", "list")) == before


def test_product_commands_edit_deactivate_and_restock(cli: Cli) -> None:
    cli.ok(*products_add("TEA-1", "Iced tea", "1.50", "USD", "5"))
    pending = cli.ok("orders", "create", "--line", "TEA-1:1")
    updated = cli.ok("products", "update", "TEA-1", "--name", "Lemon tea", "--price", "2")
    assert (updated["name"], updated["price"], updated["currency"]) == ("Lemon tea", "2.00", "USD")
    assert cli.ok("orders", "show", str(pending["id"]))["total"] == "1.50"
    named = cli.ok("products", "update", "TEA-1", "--name-km", "តែក្រូចឆ្មា")
    assert (named["name"], named["name_km"]) == ("Lemon tea", "តែក្រូចឆ្មា")
    assert cli.ok("products", "update", "TEA-1", "--name-km", "")["name_km"] is None

    off = cli.ok("products", "deactivate", "TEA-1", "--reason", "out of lemons")
    assert off["active"] is False
    assert "error: TEA-1 is not for sale" in cli.error("orders", "create", "--line", "TEA-1:1")
    assert cli.ok("products", "activate", "TEA-1")["active"] is True
    assert cli.ok("orders", "create", "--line", "TEA-1:1")["status"] == "PENDING"

    restocked = cli.ok(
        "products", "adjust-stock", "TEA-1", "--by", "10", "--reason", "delivery", "--staff", "sok"
    )
    assert restocked["stock"] == 15
    counted = cli.ok("products", "adjust-stock", "TEA-1", "--by", "-15", "--reason", "count")
    assert counted["stock"] == 0
