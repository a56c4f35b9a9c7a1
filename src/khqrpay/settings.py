"""One settings object, read from the environment (prefix `KHQRPAY_`) and an optional `.env`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from khqrpay.orders.notices import RetrySchedule
from khqrpay.orders.schedule import SchedulePolicy

# A chat's numeric id (groups are negative) or a public channel's @username.
_TELEGRAM_CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z]\w{4,31}")
TELEGRAM_LANGUAGES = ("km", "en")


def _default_database_url() -> str:
    return f"sqlite:///{Path('data').resolve() / 'khqrpay.sqlite3'}"


@dataclass(frozen=True, slots=True)
class TelegramChat:
    """A chat that receives the shop's alerts, in its language (`km` Khmer, `en` English)."""

    id: str
    language: str = "km"


def parse_telegram_chats(text: str) -> tuple[TelegramChat, ...]:
    """`-1001234567890:km,@shopnews:en` as chats (the language defaults to Khmer); a
    `ValueError` names the part that is not a chat."""
    chats: list[TelegramChat] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        chat_id, _, language = part.partition(":")
        chat_id, language = chat_id.strip(), language.strip() or "km"
        if not _TELEGRAM_CHAT_ID.fullmatch(chat_id) or language not in TELEGRAM_LANGUAGES:
            raise ValueError(
                f"{part!r} is not a Telegram chat: write CHAT_ID[:LANGUAGE], the id a number "
                "(groups: -100...) or @channelname, the language km or en"
            )
        if all(chat.id != chat_id for chat in chats):
            chats.append(TelegramChat(chat_id, language))
    return tuple(chats)


class Settings(BaseSettings):
    """Every figure a deployment may change; the schedule's figures are in seconds."""

    model_config = SettingsConfigDict(
        env_prefix="KHQRPAY_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(default_factory=_default_database_url)

    # Bakong Open API
    bakong_url: str = "https://api-bakong.nbc.gov.kh"
    bakong_token: SecretStr = SecretStr("")
    # The whole exchange (connect, send, answer) of one attempt; clients of the real service use
    # 12 to 60 s, and a longer wait would only hold a batch's leases.
    bakong_timeout_s: float = Field(default=15.0, gt=0, le=60)
    bakong_user_agent: str = "khqrpay/0.1 (+https://github.com/khqrpay)"
    bakong_rate_limit_per_s: float = Field(default=20.0, gt=0)
    bakong_max_retries: int = Field(default=3, ge=0)
    bakong_breaker_failures: int = Field(default=5, ge=1)
    bakong_breaker_reset_s: float = Field(default=30.0, gt=0)
    bakong_token_warn_days: float = Field(default=7.0, ge=0)
    # Retry waits: full jitter up to base * 2^n, capped; a longer Retry-After goes to the caller.
    bakong_backoff_base_s: float = Field(default=0.5, gt=0)
    bakong_backoff_max_s: float = Field(default=10.0, gt=0)
    # After the md5/hash list endpoint answers 403, use single checks this long before retrying it.
    bakong_list_fallback_s: float = Field(default=600.0, gt=0)

    # The receiving merchant
    merchant_account: str = "khqrpay_demo@devb"
    merchant_name: str = "khqrpay demo shop"
    merchant_city: str = "Phnom Penh"
    merchant_id: str | None = None
    acquiring_bank: str | None = None

    # The verification schedule (seconds)
    schedule_initial_delay_s: float = Field(default=5.0, ge=0)
    schedule_fast_interval_s: float = Field(default=2.0, gt=0)
    schedule_fresh_window_s: float = Field(default=15 * 60, ge=0)
    schedule_hot_window_s: float = Field(default=10 * 60, ge=0)
    schedule_age_factor: float = Field(default=0.1, gt=0)
    schedule_max_interval_s: float = Field(default=30 * 60, gt=0)
    payment_window_s: float = Field(default=30 * 24 * 3600, gt=0)
    # The final check waits this long after the window end: Bakong settles a payment made in the
    # window's last seconds a little later.
    schedule_final_grace_s: float = Field(default=60.0, ge=0)
    # A Bakong call made anyway carries payments whose next check is this share of their interval
    # away (md5 list, up to 50 a call).
    schedule_early_fraction: float = Field(default=0.5, ge=0, lt=1)
    schedule_error_backoff_max_s: float = Field(default=60.0, gt=0)

    # The worker
    worker_batch_size: int = Field(default=200, ge=1)
    worker_lease_s: float = Field(default=60.0, gt=0)
    worker_poll_interval_s: float = Field(default=0.5, gt=0)
    # After Bakong refuses the token, no call is made for this long (then one cycle probes again).
    worker_unauthorized_pause_s: float = Field(default=300.0, gt=0)
    # On SIGTERM a Bakong call in flight gets this long to answer before its batch is released.
    worker_shutdown_grace_s: float = Field(default=5.0, ge=0)
    # How often the expiry sweep and the pending-payments gauge run.
    worker_sweep_interval_s: float = Field(default=60.0, gt=0)
    worker_metrics_host: str = "127.0.0.1"
    attempts_kept_per_payment: int = Field(default=20, ge=1)

    # The web app (`khqrpay serve`)
    # Signs session and CSRF cookies. Set it (any long random string) whenever the app restarts
    # or runs as several processes: left empty, each process makes its own and sessions end
    # with it.
    web_secret_key: SecretStr = SecretStr("")
    # Cookies only over HTTPS (browsers also send them to http://localhost and 127.0.0.1).
    web_secure_cookies: bool = True
    # How long a customer's browser keeps its cart and "My orders".
    web_customer_session_days: float = Field(default=90.0, gt=0)
    # Staff are logged out after this long without a request.
    web_staff_session_idle_minutes: float = Field(default=120.0, gt=0)
    web_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # The address customers and staff use (links in API answers, alerts); default: the request's.
    web_public_url: str | None = None

    # Webhooks (`khqrpay webhooks ...`) and Telegram alerts, sent by the worker (docs/webhooks.md)
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=60,
        description=(
            "One webhook try, whole (connect, send, answer): a receiver slower than this has "
            "failed the try, which is retried."
        ),
    )
    webhook_concurrency: int = Field(
        default=16, ge=1, le=256, description="Webhook tries in flight at once, in all."
    )
    webhook_endpoint_concurrency: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "Webhook tries in flight at once to one endpoint (its connections): a slow or dead "
            "receiver holds no more."
        ),
    )
    delivery_retry_base_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "A failed webhook or Telegram message is tried again after about this, then twice "
            "as long each time (with jitter)."
        ),
    )
    delivery_retry_max_interval_s: float = Field(
        default=2 * 3600.0, gt=0, description="The longest wait between two tries."
    )
    delivery_retry_window_s: float = Field(
        default=3 * 24 * 3600.0,
        gt=0,
        description=(
            "How long a webhook or Telegram message is tried; then it is dead-lettered "
            "(`khqrpay webhooks replay` sends a webhook again)."
        ),
    )
    telegram_bot_token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "The Telegram bot's token, from @BotFather; with at least one chat, alerts are sent."
        ),
    )
    telegram_chats: str = Field(
        default="",
        description=(
            "The chats the bot alerts, each `CHAT_ID[:LANGUAGE]`, comma-separated: the id a "
            "number (groups are negative, `-100...`) or `@channelname`, the language `km` "
            "(Khmer, the default) or `en`. Example: `-1001234567890:km,-1009876543210:en`."
        ),
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org",
        description="The Telegram Bot API: the public one, or a local Bot API server.",
    )
    telegram_timeout_s: float = Field(
        default=10.0, gt=0, le=60, description="One Telegram call, whole."
    )

    @field_validator("telegram_chats")
    @classmethod
    def _telegram_chats(cls, value: str) -> str:
        parse_telegram_chats(value)
        return value

    def telegram_chat_list(self) -> tuple[TelegramChat, ...]:
        return parse_telegram_chats(self.telegram_chats)

    @property
    def telegram_enabled(self) -> bool:
        token = self.telegram_bot_token.get_secret_value().strip()
        return bool(token and self.telegram_chat_list())

    def retry_schedule(self) -> RetrySchedule:
        """When failed webhook deliveries and Telegram messages are tried again."""
        return RetrySchedule(
            first_ms=_seconds_to_ms(self.delivery_retry_base_s),
            max_interval_ms=_seconds_to_ms(self.delivery_retry_max_interval_s),
            window_ms=_seconds_to_ms(self.delivery_retry_window_s),
        )

    def schedule_policy(self) -> SchedulePolicy:
        """The verification schedule these settings describe, in integer milliseconds."""
        return SchedulePolicy(
            initial_delay_ms=_seconds_to_ms(self.schedule_initial_delay_s),
            fast_interval_ms=_seconds_to_ms(self.schedule_fast_interval_s),
            fresh_window_ms=_seconds_to_ms(self.schedule_fresh_window_s),
            hot_window_ms=_seconds_to_ms(self.schedule_hot_window_s),
            age_factor=self.schedule_age_factor,
            max_interval_ms=_seconds_to_ms(self.schedule_max_interval_s),
            payment_window_ms=_seconds_to_ms(self.payment_window_s),
            final_grace_ms=_seconds_to_ms(self.schedule_final_grace_s),
            early_fraction=self.schedule_early_fraction,
            error_backoff_max_ms=_seconds_to_ms(self.schedule_error_backoff_max_s),
        )


def _seconds_to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def load_settings() -> Settings:
    return Settings()
