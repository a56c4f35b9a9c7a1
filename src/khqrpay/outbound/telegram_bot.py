"""Telegram messages through the Bot API, with python-telegram-bot.

`api_url` is the Bot API's address (`https://api.telegram.org`, a local Bot API server, or a fake
one in tests). The bot token is a secret: it is registered for redaction and scrubbed from every
error this adapter returns (the library puts it in URLs and some messages). Telegram's flood
control (HTTP 429 with `retry_after`) comes back as `SendOutcome.retry_after_s`; a chat that
refuses the bot (it was removed, the chat does not exist) is a permanent failure.
"""

from __future__ import annotations

import warnings
from datetime import timedelta

from telegram import Bot, LinkPreviewOptions
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from khqrpay.logging import REDACTED, register_secret
from khqrpay.outbound.port import SendOutcome, Stopwatch

CONNECTIONS = 8
# The library is moving `retry_after` from int to timedelta and warns whenever it is read (it
# reads it itself when the error is made); both types are handled here.
warnings.filterwarnings("ignore", message=".*retry_after", category=PTBDeprecationWarning)


def _seconds(exc: RetryAfter) -> float:
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def chat_ref(chat_id: str) -> int | str:
    """A numeric chat id as the number the Bot API takes; a @channelname as it is."""
    return chat_id if chat_id.startswith("@") else int(chat_id)


class TelegramBotSender:
    """Sends plain-text messages; `aclose()` (or `async with`) closes its connections."""

    def __init__(self, *, token: str, api_url: str, timeout_s: float) -> None:
        self._token = token.strip()
        if not self._token:
            raise ValueError("a Telegram bot token is needed (KHQRPAY_TELEGRAM_BOT_TOKEN)")
        register_secret(self._token)
        self._requests = (
            HTTPXRequest(
                connection_pool_size=CONNECTIONS,
                read_timeout=timeout_s,
                write_timeout=timeout_s,
                connect_timeout=timeout_s,
            ),
            # The bot's second client (for getUpdates, which is never called here).
            HTTPXRequest(connection_pool_size=1),
        )
        self._bot = Bot(
            self._token,
            base_url=f"{api_url.rstrip('/')}/bot{{token}}",
            request=self._requests[0],
            get_updates_request=self._requests[1],
        )

    def __repr__(self) -> str:
        return f"TelegramBotSender(api_url={self._bot.base_url.replace(self._token, REDACTED)!r})"

    async def __aenter__(self) -> TelegramBotSender:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for request in self._requests:
            await request.shutdown()

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, REDACTED)

    async def send(self, chat_id: str, text: str) -> SendOutcome:
        stopwatch = Stopwatch()

        def failed(
            error: str, *, retry_after_s: float | None = None, permanent: bool = False
        ) -> SendOutcome:
            return SendOutcome(
                delivered=False,
                duration_ms=stopwatch.ms(),
                error=self._scrub(error),
                retry_after_s=retry_after_s,
                permanent=permanent,
            )

        try:
            await self._bot.send_message(
                chat_id=chat_ref(chat_id),
                text=text,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        except RetryAfter as exc:
            seconds = _seconds(exc)
            return failed(f"Telegram asked to wait {seconds:g} s", retry_after_s=seconds)
        except (Forbidden, BadRequest, ChatMigrated) as exc:
            return failed(f"Telegram refused the message: {exc.message}", permanent=True)
        except InvalidToken:
            return failed("Telegram refused the bot token (KHQRPAY_TELEGRAM_BOT_TOKEN)")
        except TelegramError as exc:
            return failed(f"Telegram did not answer: {exc.message}")
        return SendOutcome(delivered=True, duration_ms=stopwatch.ms())
