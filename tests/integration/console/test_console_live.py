"""Live regions over a real HTTP server: the order page's stream sends the order as it is on
connecting, then again whenever the outbox says it changed, whoever changed it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from helpers.console import STAFF, console_apps
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest
from khqrpay.services.checkout import create_order
from khqrpay.services.products import add_product
from khqrpay.services.staff import cancel_order
from khqrpay.serving import serve_in_thread
from khqrpay.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def events(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The SSE messages of a stream, one dict (`id`, `data`) each."""
    message: dict[str, str] = {}
    for line in response.iter_lines():
        if not line:
            if "data" in message:
                yield message
            message = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            message[field] = value.strip()


def test_an_order_page_stream_follows_the_order(
    database: Database, settings: Settings, clock: FakeClock
) -> None:
    web, _bakong, app = console_apps(database, settings, clock)
    product = add_product(
        database, sku="TEA", name="Tea", price=Money.parse("1.50", Currency.USD), stock=3, now_ms=0
    )
    created = create_order(
        database,
        lines=[LineRequest(product.sku, 1)],
        phone=None,
        settings=app.settings,
        clock=clock,
    )
    with (
        serve_in_thread(web, name="console") as url,
        httpx.Client(base_url=url, timeout=10) as browser,
    ):
        login_page = browser.get("/admin/login").text
        token = re.search(r'name="csrftoken" value="([^"]+)"', login_page)
        assert token is not None
        form = {"name": STAFF[0], "password": STAFF[1], "csrftoken": token.group(1)}
        assert browser.post("/admin/login", data=form).status_code == 303

        live = f"/admin/orders/{created.order.id}/live"
        with browser.stream("GET", live, headers={"accept": "text/event-stream"}) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            received = events(stream)
            first = next(received)
            assert "Pending" in json.loads(first["data"])["html"]

            cancel_order(database, created.order.id, actor="cli", reason="left", clock=clock)

            second = next(received)
            html = json.loads(second["data"])["html"]
            assert "Cancelled" in html
            assert "left" in html  # the reason, in the timeline
            assert int(second["id"]) > 0  # the outbox id: a reconnect says where it was
