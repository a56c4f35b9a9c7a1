"""Telegram alerts on SQLite and PostgreSQL, through python-telegram-bot to a fake Bot API on
loopback: the right messages in Khmer and English, each once and in order per chat, Telegram's
flood control honoured, a chat that removed the bot given up, the bot token never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from helpers.receivers import FakeBotApi, serve
from khqrpay.bootstrap import App
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.db.repositories.telegram import TelegramMessage
from khqrpay.orders.events import BakongUnauthorized
from khqrpay.orders.model import EvidenceSource
from khqrpay.orders.notices import DeliveryStatus
from khqrpay.outbound.telegram_bot import TelegramBotSender
from khqrpay.services.alerts import warn_token_expiry
from khqrpay.services.completion import record_payment
from khqrpay.services.dispatch import Dispatcher
from khqrpay.settings import Settings

if TYPE_CHECKING:
    from conftest import Shop

TOKEN = "123456789:AAH-test-bot-token-0123456789abcdef"
KHMER, ENGLISH = "-1001001", "-1002002"
DAY_MS = 86_400_000


@pytest.fixture
def bot_api() -> Iterator[tuple[FakeBotApi, str]]:
    api = FakeBotApi(token=TOKEN)
    with serve(api) as url:
        yield api, url


Alerts = Callable[..., AbstractAsyncContextManager[Dispatcher[Any]]]


@pytest.fixture
def alerts(
    database: Database, settings: Settings, clock: FakeClock, bot_api: tuple[FakeBotApi, str]
) -> Alerts:
    """The worker's Telegram dispatcher, built by the composition root from the settings."""

    @asynccontextmanager
    async def build(**changes: Any) -> AsyncIterator[Dispatcher[Any]]:
        configured = settings.model_copy(
            update={
                "telegram_bot_token": SecretStr(TOKEN),
                "telegram_chats": f"{KHMER}:km,{ENGLISH}:en",
                "telegram_api_url": bot_api[1],
                "web_public_url": "https://shop.example/",
                "delivery_retry_base_s": 1.0,
                **changes,
            }
        )
        app = App(settings=configured, database=database, clock=clock)
        async with app.dispatchers(owner="test-worker") as (_webhooks, telegram):
            yield telegram
            await telegram.close()

    return build


def _record(shop: Shop, order_id: int, **changes: Any) -> None:
    with shop.database.read() as uow:
        payment = uow.payments.for_order(order_id)[0]
    with shop.database.write() as uow:
        record_payment(
            uow,
            order_id=order_id,
            evidence=shop.evidence(payment, **changes),
            source=EvidenceSource.VERIFIER,
            actor="worker:test",
            now_ms=shop.clock.now_ms(),
            payment_id=payment.id,
        )


def _messages(database: Database) -> list[TelegramMessage]:
    with database.read() as uow:
        ids = uow.connection.execute(sa.select(t.telegram_messages.c.id)).scalars()
        return uow.telegram.messages(list(ids))


async def test_payments_reviews_and_refund_flags_reach_each_chat_in_its_language(
    shop: Shop, alerts: Alerts, bot_api: tuple[FakeBotApi, str]
) -> None:
    api, _url = bot_api
    product = shop.product(price="3.00", stock=10)
    paid, short, twice = (shop.order((product, 1)).order.id for _ in range(3))
    _record(shop, paid)
    _record(shop, short, amount=Decimal("2.00"))
    _record(shop, twice)
    _record(shop, twice)  # a second transfer for a paid order: refund it
    async with alerts() as telegram:
        await telegram.run_once()  # one message at a time per chat: the first of each
        await telegram.run_once()
        await telegram.run_once()
        await telegram.run_once()

    english = api.texts(ENGLISH)
    assert english[0] == (
        f"✅ Payment received\nOrder #{paid} · $3.00\nPaid by: customer@aba\n"
        f"At: 26 Nov 2026, 07:00\nOpen: https://shop.example/admin/orders/{paid}"
    )
    assert english[1].startswith(f"⚠️ Order #{short} needs review · $3.00\nWhy: ")
    assert "2.00" in english[1]
    assert english[2].startswith(f"✅ Payment received\nOrder #{twice} · $3.00")
    assert english[3].startswith(f"↩️ Order #{twice}: money to refund · $3.00\nWhy: ")
    assert len(english) == 4

    khmer = api.texts(KHMER)
    assert khmer[0] == (
        f"✅ បានទទួលការទូទាត់\nការបញ្ជាទិញ #{paid} · $3.00\nអ្នកបង់ប្រាក់៖ customer@aba\n"
        f"ពេលវេលា៖ 26 វិច្ឆិកា 2026, 07:00\nមើល៖ https://shop.example/admin/orders/{paid}"
    )
    assert khmer[1].startswith(f"⚠️ ការបញ្ជាទិញ #{short} ត្រូវការពិនិត្យ · $3.00\nមូលហេតុ៖ ")
    assert khmer[3].startswith(f"↩️ ការបញ្ជាទិញ #{twice}៖ មានប្រាក់ដែលត្រូវសងវិញ")
    assert len(khmer) == 4
    assert {m.state.status for m in _messages(shop.database)} == {DeliveryStatus.DELIVERED}


async def test_bakong_token_trouble_is_told_once_per_window_and_stage(
    shop: Shop, alerts: Alerts, bot_api: tuple[FakeBotApi, str]
) -> None:
    api, _url = bot_api
    database, clock = shop.database, shop.clock
    for _ in range(3):  # every refused probe announces itself; people hear of it once
        with database.write() as uow:
            uow.outbox.add_event(
                BakongUnauthorized(at_ms=clock.now_ms(), error="401", worker="w1"),
                now_ms=clock.now_ms(),
            )
        clock.advance(seconds=300)
    expires = clock.now_ms() + 5 * DAY_MS

    def warn() -> bool:
        return warn_token_expiry(
            database,
            expires_at_ms=expires,
            now_ms=clock.now_ms(),
            warn_ms=7 * DAY_MS,
            worker="w1",
        )

    assert warn()
    assert not warn()  # the same token and stage: once
    async with alerts() as telegram:
        await telegram.run_once()
        await telegram.run_once()
        clock.set(expires - DAY_MS // 2)
        assert warn()  # its last day: told again
        await telegram.run_once()
    assert not warn_token_expiry(
        database, expires_at_ms=None, now_ms=clock.now_ms(), warn_ms=7 * DAY_MS, worker="w1"
    )

    english = api.texts(ENGLISH)
    assert english == [
        "⛔ Bakong refused the API token: payments are not being checked.\n"
        "Renew the token (KHQRPAY_BAKONG_TOKEN) and restart the worker.",
        "⏳ The Bakong API token expires on 1 Dec 2026, 07:15, in 5 days.\n"
        "Renew it before then, or payments stop being checked.",
        "⏳ The Bakong API token expires on 1 Dec 2026, 07:15, in less than a day.\n"
        "Renew it now, or payments stop being checked.",
    ]
    assert api.texts(KHMER)[0].startswith("⛔ បាគងបានបដិសេធ token API")
    assert len(api.texts(KHMER)) == 3


async def test_flood_control_holds_every_send_back_for_as_long_as_telegram_asks(
    shop: Shop, alerts: Alerts, bot_api: tuple[FakeBotApi, str]
) -> None:
    api, _url = bot_api
    api.flood_calls, api.flood_retry_after = 1, 30
    product = shop.product(stock=10)
    for _ in range(2):
        _record(shop, shop.order((product, 1)).order.id)
    async with alerts(telegram_chats=f"{ENGLISH}:en") as telegram:
        await telegram.run_once()  # answered 429, retry after 30 s
        calls = api.calls
        first, _second = _messages(shop.database)
        assert first.state.next_attempt_ms == shop.clock.now_ms() + 30_000
        assert first.state.last_error == "Telegram asked to wait 30 s"
        shop.clock.advance(seconds=29)
        await telegram.run_once()
        assert api.calls == calls  # nothing at all is sent while Telegram said to wait
        shop.clock.advance(seconds=1)
        await telegram.run_once()
        await telegram.run_once()
    assert len(api.texts(ENGLISH)) == 2
    assert [m.state.attempts for m in _messages(shop.database)] == [2, 1]


async def test_a_chat_that_removed_the_bot_is_given_up_and_the_others_still_told(
    shop: Shop, alerts: Alerts, bot_api: tuple[FakeBotApi, str]
) -> None:
    api, _url = bot_api
    api.forbidden_chats.add(KHMER)
    _record(shop, shop.order((shop.product(), 1)).order.id)
    async with alerts() as telegram:
        await telegram.run_once()
    by_chat = {m.chat_id: m.state for m in _messages(shop.database)}
    assert by_chat[KHMER].status is DeliveryStatus.DEAD
    assert by_chat[KHMER].attempts == 1
    assert by_chat[KHMER].last_error == (
        "Telegram refused the message: Forbidden: bot was kicked from the group chat"
    )
    assert by_chat[ENGLISH].status is DeliveryStatus.DELIVERED
    assert len(api.texts(ENGLISH)) == 1


async def test_a_refused_bot_token_is_retried_and_never_shown(
    shop: Shop, alerts: Alerts, bot_api: tuple[FakeBotApi, str]
) -> None:
    api, url = bot_api
    api.token = "999:another-token-the-fake-api-expects"
    _record(shop, shop.order((shop.product(), 1)).order.id)
    async with alerts() as telegram:
        await telegram.run_once()
    for message in _messages(shop.database):
        assert message.state.status is DeliveryStatus.PENDING  # a fixed token delivers it
        assert message.state.last_error == (
            "Telegram refused the bot token (KHQRPAY_TELEGRAM_BOT_TOKEN)"
        )
    sender = TelegramBotSender(token=TOKEN, api_url=url, timeout_s=1)
    assert TOKEN not in repr(sender)
    outcome = await sender.send(KHMER, "hello")
    await sender.aclose()
    assert outcome.error is not None
    assert TOKEN not in outcome.error


async def test_alerts_older_than_a_day_when_first_seen_are_not_sent(
    shop: Shop, alerts: Alerts, bot_api: tuple[FakeBotApi, str]
) -> None:
    api, _url = bot_api
    _record(shop, shop.order((shop.product(), 1)).order.id)
    shop.clock.advance(seconds=DAY_MS / 1000 + 1)  # Telegram set up a day later
    _record(shop, shop.order((shop.product(), 1)).order.id)
    async with alerts() as telegram:
        await telegram.run_once()
    assert len(api.texts(ENGLISH)) == 1
    assert "Order #2" in api.texts(ENGLISH)[0]
