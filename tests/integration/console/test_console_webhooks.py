"""The owner's webhooks and Telegram pages: the secret shown once, the address guard as a form
error, CSRF, removing, the delivery log and its replay (a new try), the dashboard's count of
deliveries given up, and Telegram's set-up without its token."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from pydantic import SecretStr

from helpers.console import Console, running_console
from helpers.receivers import WebhookReceiver, serve
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.orders.notices import DeliveryStatus
from khqrpay.services.webhooks import list_deliveries, list_endpoints
from khqrpay.settings import Settings

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


def _add(console: Console, url: str, *events: str, private: bool = False) -> str:
    """Post the add form as a browser does; the page that answers."""
    form: dict[str, object] = {"url": url, "events": list(events) or ["order.created"]}
    if private:
        form["allow_private"] = "1"
    answer = console.post("/admin/webhooks", script=False, **form)
    assert answer.status_code in (200, 400), answer.text[:300]
    return answer.text


def _send_due(console: Console) -> None:
    """One round of the worker's webhook sender, every try it starts finished and recorded."""

    async def once() -> None:
        async with console.app.dispatchers(owner="console-test") as (webhooks, *_telegram):
            await webhooks.run_once()
            await webhooks.close()

    asyncio.run(once())


@sqlite_only
def test_the_secret_is_shown_once_and_never_logged(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    console.as_owner()
    caplog.set_level(logging.DEBUG)
    answer = console.post(
        "/admin/webhooks",
        script=False,
        url="https://pos.example.com/khqr",
        events=["order.refund_flagged", "order.completed"],
    )
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    (shown,) = set(_SECRET.findall(answer.text))
    (endpoint,) = list_endpoints(console.app.database)
    assert shown == endpoint.secret.reveal()
    assert [e.value for e in endpoint.event_types] == ["order.completed", "order.refund_flagged"]

    listing = console.page("/admin/webhooks")
    assert "https://pos.example.com/khqr" in listing.text
    for path in ("/admin/webhooks", "/admin/webhooks/deliveries", "/admin"):
        assert "whsec_" not in console.page(path).text, path
    assert shown not in caplog.text
    assert not any(shown in value for value in console.client.cookies.values())


@sqlite_only
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:8080/hooks", "127.0.0.1 is this computer or a private network"),
        ("http://169.254.169.254/latest", "169.254.169.254 is this computer or a private network"),
        ("http://localhost/hooks", "localhost is this computer or a private network"),
        ("ftp://pos.example.com/khqr", "This URL cannot take webhooks: only http and https"),
    ],
)
def test_the_address_guard_refuses_in_the_form(console: Console, url: str, says: str) -> None:
    console.as_owner()
    answer = console.post("/admin/webhooks", script=False, url=url, events=["order.created"])
    assert answer.status_code == 400
    assert says in answer.text.replace("&#34;", '"')
    assert f'value="{url}"' in answer.text  # what was typed stays in the form
    assert list_endpoints(console.app.database) == []


@sqlite_only
def test_a_private_address_is_taken_when_the_owner_allows_it(console: Console) -> None:
    console.as_owner()
    assert "whsec_" in _add(console, "http://192.168.1.20/pos", private=True)
    (endpoint,) = list_endpoints(console.app.database)
    assert endpoint.allow_private
    assert "Private addresses allowed" in console.page("/admin/webhooks").text
    assert (
        "Choose at least one event."
        in console.post("/admin/webhooks", script=False, url="https://pos.example.com/").text
    )


@sqlite_only
def test_forms_without_the_csrf_token_are_refused(console: Console) -> None:
    console.as_owner()
    _add(console, "https://pos.example.com/khqr")
    (endpoint,) = list_endpoints(console.app.database)
    for path, form in (
        ("/admin/webhooks", {"url": "https://other.example.com/", "events": "order.created"}),
        (f"/admin/webhooks/{endpoint.id}/remove", {}),
        ("/admin/webhooks/deliveries/1/replay", {}),
    ):
        answer = console.client.post(path, data=form, follow_redirects=False)
        assert answer.status_code == 403, path
    assert [e.id for e in list_endpoints(console.app.database)] == [endpoint.id]


@sqlite_only
def test_only_the_owner_sees_the_pages_and_the_menu_links(console: Console) -> None:
    console.as_staff()
    assert console.page("/admin/webhooks").status_code == 403
    assert console.page("/admin/telegram").status_code == 403
    menu = console.page("/admin").text
    assert "/admin/webhooks" not in menu
    assert "/admin/telegram" not in menu
    console.client.cookies.clear()
    console.as_owner()
    menu = console.page("/admin").text
    assert 'href="/admin/webhooks"' in menu
    assert 'href="/admin/telegram"' in menu


def test_a_replay_from_the_log_makes_a_new_try(console: Console) -> None:
    receiver = WebhookReceiver(status=500)
    console.as_owner()
    with serve(receiver) as url:
        _add(console, f"{url}/hooks", "order.created", private=True)
        created = console.order((console.product(), 1))
        _send_due(console)
        (delivery,) = list_deliveries(console.app.database)
        assert delivery.state.attempts == 1
        (endpoint,) = list_endpoints(console.app.database)

        log = console.page(f"/admin/webhooks/deliveries?endpoint={endpoint.id}").text
        assert f'href="/admin/orders/{created.order.id}"' in log
        assert "answered HTTP 500" in log
        assert f"/admin/webhooks/deliveries/{delivery.id}/replay" in log

        receiver.status = 200
        console.clock.advance(
            seconds=1
        )  # not yet due again by itself (the first retry is ~10 s away)
        _send_due(console)
        assert len(receiver.requests) == 1
        answer = console.post(
            f"/admin/webhooks/deliveries/{delivery.id}/replay", script=False, endpoint=endpoint.id
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == f"/admin/webhooks/deliveries?endpoint={endpoint.id}"
        _send_due(console)
    (replayed,) = list_deliveries(console.app.database)
    assert (replayed.state.status, replayed.state.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert [a.status_code for a in replayed.attempt_log] == [500, 200]
    assert {r.headers["webhook-id"] for r in receiver.requests} == {delivery.message_id}
    assert "will be sent again" in console.page(answer.headers["location"]).text


def test_removing_an_endpoint_gives_up_its_deliveries_and_the_dashboard_counts_them(
    console: Console,
) -> None:
    console.as_owner()
    _add(console, "http://127.0.0.1:9/first", private=True)
    _add(console, "http://127.0.0.1:9/second", private=True)
    first, second = list_endpoints(console.app.database)
    console.order((console.product(), 1))
    page = console.page("/admin/webhooks").text
    assert page.count('data-count="pending">1<') == 2

    answer = console.post(f"/admin/webhooks/{first.id}/remove", script=False)
    assert answer.status_code == 303
    assert [e.id for e in list_endpoints(console.app.database)] == [second.id]
    assert "/admin/webhooks/deliveries?status=DEAD" not in console.page("/admin").text  # removed
    again = console.post(f"/admin/webhooks/{first.id}/remove", script=False)
    assert "already removed" in console.page(again.headers["location"]).text

    # Past its window, the other endpoint's delivery is given up after a last try.
    console.clock.advance(seconds=console.app.settings.delivery_retry_window_s + 1)
    _send_due(console)
    assert list_deliveries(console.app.database, endpoint_id=second.id)[0].state.status is (
        DeliveryStatus.DEAD
    )
    console.as_owner()  # three days later: the session has ended
    dashboard = console.page("/admin").text
    assert "Webhooks given up: 1." in dashboard
    assert "/admin/webhooks/deliveries?status=DEAD" in dashboard
    dead_log = console.page("/admin/webhooks/deliveries?status=DEAD").text
    assert dead_log.count("data-delivery=") == 2  # the removed endpoint's one is listed too
    assert dead_log.count("/replay") == 1  # but cannot be replayed


@sqlite_only
def test_the_log_is_paged_newest_first(console: Console) -> None:
    console.as_owner()
    _add(console, "http://127.0.0.1:9/in", private=True)
    product = console.product(stock=40)
    for _ in range(30):
        console.order((product, 1))
    ids = [d.id for d in list_deliveries(console.app.database, limit=30)]
    first = console.page("/admin/webhooks/deliveries").text
    shown = [int(n) for n in re.findall(r'data-delivery="(\d+)"', first)]
    assert shown == ids[:25]
    older = re.search(r'href="([^"]+before=\d+)"', first)
    assert older is not None
    rest = console.page(older.group(1).replace("&amp;", "&")).text
    assert [int(n) for n in re.findall(r'data-delivery="(\d+)"', rest)] == ids[25:]
    assert console.page("/admin/webhooks/deliveries?endpoint=999").status_code == 404


@sqlite_only
def test_telegram_shows_its_chats_partly_and_never_the_token(
    database: Database, settings: Settings, clock: FakeClock
) -> None:
    token = "123456789:AAtelegram-bot-token-secret"
    with running_console(
        database,
        settings,
        clock,
        telegram_bot_token=SecretStr(token),
        telegram_chats="-1001234567890:km,@shopchannel:en",
    ) as console:
        console.as_owner()
        assert "No alerts sent yet." in console.page("/admin/telegram").text
        created = console.order((console.product(), 1))
        console.pay(created.payment.qr)
        assert console.post(f"/admin/orders/{created.order.id}/verify").status_code == 200

        async def write_messages() -> None:
            async with console.app.dispatchers(owner="console-test") as (_webhooks, telegram):
                await asyncio.to_thread(telegram.channel.prepare, clock.now_ms())

        asyncio.run(write_messages())
        page = console.page("/admin/telegram").text
    assert page.count(f'href="/admin/orders/{created.order.id}"') == 2  # one message a chat
    assert "Payment received" in page
    assert "Waiting" in page
    assert "-•••7890" in page
    assert "@•••nnel" in page
    assert "1234567890" not in page
    assert "shopchannel" not in page
    assert "Khmer" in page
    assert "English" in page
    assert token not in page
    assert "AAtelegram" not in page
    assert "Alerts are sent" in page
