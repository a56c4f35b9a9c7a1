"""`khqrpay webhooks add|list|remove|deliveries|replay`: JSON out, the secret shown once, and
`error: ...` with exit 2 for bad input or a refused action."""

from __future__ import annotations

import pytest
from test_cli_orders import Cli, products_add

from khqrpay.db import Database
from khqrpay.services.webhooks import list_endpoints


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


def test_an_endpoint_is_added_listed_and_removed_and_its_secret_shown_once(
    cli: Cli, database: Database
) -> None:
    added = cli.ok(
        "webhooks",
        "add",
        "https://pos.example.com/hooks",
        "--events",
        "order.completed,order.refund_flagged",
    )
    assert added["url"] == "https://pos.example.com/hooks"
    assert added["events"] == ["order.completed", "order.refund_flagged"]
    assert (added["allow_private"], added["active"]) == (False, True)
    assert added["secret"].startswith("whsec_")
    (stored,) = list_endpoints(database)
    assert stored.secret.reveal() == added["secret"]

    (listed,) = cli.ok("webhooks", "list")
    assert "secret" not in listed
    assert listed == {key: value for key, value in added.items() if key != "secret"}

    local = cli.ok(
        "webhooks",
        "add",
        "http://127.0.0.1:8080/in",
        "--events",
        "order.created",
        "--allow-private",
    )
    assert local["allow_private"] is True
    removed = cli.ok("webhooks", "remove", str(added["id"]))
    assert removed["active"] is False
    assert "secret" not in removed
    assert [e["id"] for e in cli.ok("webhooks", "list")] == [local["id"]]
    assert [e["id"] for e in cli.ok("webhooks", "list", "--all")] == [added["id"], local["id"]]


def test_deliveries_are_listed_and_replayed(cli: Cli) -> None:
    endpoint = cli.ok(
        "webhooks",
        "add",
        "http://127.0.0.1:9/in",
        "--events",
        "order.created",
        "--allow-private",
    )
    cli.ok(*products_add("TEA-1", "Iced tea", "1.50", "USD", "5"))
    order = cli.ok("orders", "create", "--line", "TEA-1:1")
    (delivery,) = cli.ok("webhooks", "deliveries", "--endpoint", str(endpoint["id"]))
    assert (delivery["event_type"], delivery["order_id"], delivery["status"]) == (
        "order.created",
        order["id"],
        "PENDING",
    )
    assert delivery["webhook_id"].startswith("msg_")
    assert (delivery["attempts"], delivery["log"]) == (0, [])
    assert cli.ok("webhooks", "deliveries", "--status", "dead") == []
    replayed = cli.ok("webhooks", "replay", str(delivery["id"]))
    assert (replayed["id"], replayed["webhook_id"], replayed["status"]) == (
        delivery["id"],
        delivery["webhook_id"],
        "PENDING",
    )


# Input checks do not depend on the backend: SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("add", "http://127.0.0.1/in", "--events", "order.created"),
            "error: 127.0.0.1 is a loopback address: add the endpoint with --allow-private",
        ),
        (
            ("add", "http://localhost:3000/in", "--events", "order.created"),
            "error: localhost is this machine",
        ),
        (
            ("add", "ftp://example.com/in", "--events", "order.created"),
            "error: only http and https URLs take webhooks, not 'ftp'",
        ),
        (
            ("add", "https://user:pw@example.com/", "--events", "order.created"),
            "error: a webhook URL carries no user name or password",
        ),
        (
            ("add", "https://example.com/in", "--events", "order.paid"),
            "error: unknown event type 'order.paid': use order.created, order.completed",
        ),
        (("add", "https://example.com/in", "--events", ","), "error: name at least one"),
        (("remove", "7"), "error: no webhook endpoint 7"),
        (("replay", "7"), "error: no webhook delivery 7"),
        (("deliveries", "--endpoint", "7"), "error: no webhook endpoint 7"),
        (("deliveries", "--status", "lost"), "error: unknown status 'lost'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Cli, args: tuple[str, ...], message: str) -> None:
    error = cli.error("webhooks", *args)
    assert error.startswith(message)
    assert error.count("\n") == 1
    assert cli.ok("webhooks", "list") == []


def test_removing_twice_is_refused(cli: Cli) -> None:
    endpoint = cli.ok("webhooks", "add", "https://example.com/in", "--events", "order.created")
    cli.ok("webhooks", "remove", str(endpoint["id"]))
    assert cli.error("webhooks", "remove", str(endpoint["id"])) == (
        f"error: webhook endpoint {endpoint['id']} was already removed\n"
    )
