"""`khqrpay orders show` and `orders list` start fast: they import what reading an order and
printing it need (the settings, SQLAlchemy, the tables, the views they print), nothing more."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from helpers.imports import start

if TYPE_CHECKING:
    from conftest import Shop

# What a command that only reads orders does not run on: Alembic (the schema check reads the
# revision itself), the Bakong client and its metrics, token, retries and rate limits, logging,
# the web stack, the simulator, the demo, the worker, the event bus, the outbound senders, KHQR
# encoding, and the services that write.
NOT_FOR_READING = (
    "alembic",
    "mako",
    "limits",
    "structlog",
    "prometheus_client",
    "tenacity",
    "httpx",
    "rich",
    "fastapi",
    "starlette",
    "uvicorn",
    "khqrpay.logging",
    "khqrpay.khqr",
    "khqrpay.web",
    "khqrpay.simulator",
    "khqrpay.demo",
    "khqrpay.worker",
    "khqrpay.events",
    "khqrpay.outbound",
    "khqrpay.bakong.client",
    "khqrpay.bakong.metrics",
    "khqrpay.bakong.resilience",
    "khqrpay.bakong.token",
    "khqrpay.services.checkout",
    "khqrpay.services.completion",
    "khqrpay.services.manual",
    "khqrpay.services.staff",
    "khqrpay.services.webhooks",
    # A unit of work makes its repositories on first use: reading orders needs none of these.
    "khqrpay.db.repositories.api_clients",
    "khqrpay.db.repositories.budget",
    "khqrpay.db.repositories.job_leases",
    "khqrpay.db.repositories.outbox",
    "khqrpay.db.repositories.staff_users",
    "khqrpay.db.repositories.telegram",
    "khqrpay.db.repositories.webhooks",
)


# The views `orders show` prints: the order's and those inside it.
ORDER_VIEWS = {
    "OrderView",
    "OrderLineView",
    "QrView",
    "RecordedEvidenceView",
    "AuditView",
    "ReviewNoteView",
}


@pytest.mark.parametrize(
    ("command", "printed_view", "views"),
    [("show", "OrderView", ORDER_VIEWS), ("list", "OrderSummary", {"OrderSummary"})],
)
def test_reading_orders_imports_only_what_it_runs_on(
    database_url: str, shop: Shop, command: str, printed_view: str, views: set[str]
) -> None:
    order = shop.order((shop.product(), 1)).order
    arguments = ("orders", "show", str(order.id)) if command == "show" else ("orders", "list")
    started = start(*arguments, env={"KHQRPAY_DATABASE_URL": database_url})
    printed = json.loads(started.stdout)
    assert (printed if command == "show" else printed[0])["id"] == order.id
    assert {"khqrpay.db.tables", "khqrpay.settings"} <= started.imported
    assert started.loaded(NOT_FOR_READING) == []
    # A view's schema is built when it is first used: the others (about 40) cost nothing.
    assert printed_view in started.built
    assert started.built <= views
