"""The Telegram chats setting: `CHAT_ID[:LANGUAGE]`, comma-separated, refused with the reason."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from khqrpay.settings import Settings, TelegramChat, parse_telegram_chats


def test_chats_are_read_with_their_language_khmer_by_default() -> None:
    assert parse_telegram_chats(" -1001234567890:en, @shop_news ,-42:km,-42:en") == (
        TelegramChat("-1001234567890", "en"),
        TelegramChat("@shop_news", "km"),
        TelegramChat("-42", "km"),
    )
    assert parse_telegram_chats("") == ()


@pytest.mark.parametrize("text", ["-100x", "-1001:fr", "shop", "@abc", "12:km:en"])
def test_a_chat_that_is_not_one_is_refused_by_name(text: str) -> None:
    with pytest.raises(ValidationError, match="is not a Telegram chat: write CHAT_ID"):
        Settings(_env_file=None, telegram_chats=text)  # type: ignore[call-arg]


def test_alerts_need_a_token_and_a_chat() -> None:
    def enabled(token: str, chats: str) -> bool:
        return Settings(  # type: ignore[call-arg]
            _env_file=None, telegram_bot_token=SecretStr(token), telegram_chats=chats
        ).telegram_enabled

    assert enabled("1:abc", "-1001")
    assert not enabled("", "-1001")
    assert not enabled("1:abc", "")
