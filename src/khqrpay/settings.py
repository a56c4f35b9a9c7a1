"""One settings object, read from the environment (prefix `KHQRPAY_`) and an optional `.env`.

Each setting's description is the documentation: `python -m khqrpay.settings` writes the
configuration reference (`docs/configuration.md`) from them, and a test keeps the page current.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from khqrpay.orders.budget import CallBudget
from khqrpay.orders.notices import RetrySchedule
from khqrpay.orders.schedule import SchedulePolicy

# Imported where used (validating a set value, making the shop's QR): loading the settings, which
# every command does at start, needs none of them.
if TYPE_CHECKING:
    from khqrpay.khqr import KHQRInput

ENV_PREFIX = "KHQRPAY_"


class SettingsError(ValueError):
    """Settings that cannot be used; the message names the variables, never their values (one
    may be a secret)."""


def bakong_token_problem(token: str) -> str | None:
    """Why this text cannot be a Bakong bearer token (it goes into an HTTP header), or None."""
    if any(character.isspace() or not character.isprintable() for character in token.strip()):
        return "a Bakong token must not contain spaces or control characters"
    return None


# A chat's numeric id (groups are negative) or a public channel's @username.
_TELEGRAM_CHAT_ID = re.compile(r"-?\d{1,20}|@[A-Za-z]\w{4,31}")
TELEGRAM_LANGUAGES = ("km", "en")


def _default_database_url() -> str:
    """`sqlite:///<working directory>/data/khqrpay.sqlite3`"""
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
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default_factory=_default_database_url,
        description=(
            "The database: `sqlite:///PATH` for one machine and one process, or "
            "`postgresql+psycopg://USER:PASSWORD@HOST:PORT/NAME` for any number of web and worker "
            "processes on any machines. It may carry a password: keep it with the secrets."
        ),
    )

    # Bakong Open API
    bakong_url: str = Field(
        default="https://api-bakong.nbc.gov.kh",
        description=(
            "The Bakong Open API: production `https://api-bakong.nbc.gov.kh`, the test service "
            "`https://sit-api-bakong.nbc.gov.kh` (its own tokens), or a `khqrpay simulator`."
        ),
    )
    bakong_token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "The Open API token (a JWT valid about 90 days) of the e-mail registered with the "
            "National Bank of Cambodia; see docs/bakong.md to get and renew it. Never logged."
        ),
    )
    bakong_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=60,
        description=(
            "The whole exchange (connect, send, answer) of one attempt; clients of the real "
            "service use 12 to 60 s, and a longer wait would only hold a batch's leases."
        ),
    )
    bakong_hedge_after_s: float = Field(
        default=4.0,
        ge=0,
        le=60,
        description=(
            "A call somebody waits on (a verifier call carrying a QR a customer is watching, "
            "Verify Instantly, Check Payment Status) that Bakong has not answered after this long "
            "is asked again in a second call (one more call from the request budget); the first "
            "answer is used and the other call cancelled, so a hanging request costs seconds, "
            "not the timeout. 0: never ask twice."
        ),
    )
    bakong_user_agent: str = Field(
        default="khqrpay/0.1 (+https://github.com/khqrpay)",
        description="Sent with every request: Bakong's firewall refuses requests without one.",
    )
    bakong_rate_limit_per_s: float = Field(
        default=20.0,
        gt=0,
        description="At most this many Bakong requests a second from one process.",
    )
    bakong_max_retries: int = Field(
        default=3,
        ge=0,
        description=(
            "Retries of a request that failed in passing (timeout, 5xx, 429) before its keys are "
            "rescheduled with a back-off."
        ),
    )
    # Ten, not fewer: 20% of requests failing at random (a bad day, not an outage) would open a
    # circuit of five every minute or so (measured in bench/e2e_bench.py), while ten in a row
    # still tell an outage within a few seconds.
    bakong_breaker_failures: int = Field(
        default=10,
        ge=1,
        description=(
            "After this many failed requests in a row, retries included (down, overloaded, garbled "
            "answers), the circuit opens: no Bakong call is made until "
            "`KHQRPAY_BAKONG_BREAKER_RESET_S` has passed."
        ),
    )
    bakong_breaker_reset_s: float = Field(
        default=30.0,
        gt=0,
        description="How long an open circuit waits before one trial call.",
    )
    bakong_token_warn_days: float = Field(
        default=7.0,
        ge=0,
        description=(
            "Warn (in the log and in `khqrpay doctor`) once the token expires within this many "
            "days."
        ),
    )
    bakong_backoff_base_s: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Retry waits: full jitter up to base × 2^n, capped at "
            "`KHQRPAY_BAKONG_BACKOFF_MAX_S`; a longer Retry-After goes to the caller."
        ),
    )
    bakong_backoff_max_s: float = Field(
        default=10.0,
        gt=0,
        description="The cap of a retry wait (at least `KHQRPAY_BAKONG_BACKOFF_BASE_S`).",
    )
    bakong_list_fallback_s: float = Field(
        default=600.0,
        gt=0,
        description=(
            "After the md5/hash list endpoint answers 403, use single checks this long before "
            "retrying it."
        ),
    )
    bakong_max_calls_per_min: int = Field(
        default=60,
        ge=1,
        le=100_000,
        description=(
            "The request budget: at most this many payment-check calls to Bakong a minute (md5 "
            "list, single md5 and hash checks), shared by every worker and web process using the "
            "same database. With the md5 list one call checks 50 QRs; when Bakong refuses the "
            "list, each QR is a call and the schedule stretches to stay within it."
        ),
    )
    bakong_staff_reserved_calls_per_min: int = Field(
        default=6,
        ge=0,
        description=(
            "Calls of the budget kept for staff buttons (Verify Instantly, Check Payment Status, "
            "a hash check), so a staff click is never refused because of the verifier or "
            "customers' presses (a budget smaller than this keeps all but one call for staff)."
        ),
    )

    # The receiving merchant
    merchant_account: str = Field(
        default="khqrpay_demo@devb",
        description=(
            "The Bakong account (`name@bank`, at most 32 characters) every QR pays into. The "
            "worker refuses to start when Bakong says it cannot receive."
        ),
    )
    merchant_name: str = Field(
        default="khqrpay demo shop",
        description="The name banking apps show the payer (at most 25 characters).",
    )
    merchant_city: str = Field(
        default="Phnom Penh",
        description="The merchant's city in the QR (at most 15 characters).",
    )
    merchant_id: str | None = Field(
        default=None,
        description=(
            "For a merchant QR (KHQR tag 30) issued with an acquiring bank: the merchant id it "
            "gave you (with `KHQRPAY_ACQUIRING_BANK`). Unset: an individual QR (tag 29)."
        ),
    )
    acquiring_bank: str | None = Field(
        default=None,
        description=(
            "The acquiring bank's name in a merchant QR (needed with `KHQRPAY_MERCHANT_ID`)."
        ),
    )

    # The verification schedule (seconds)
    schedule_initial_delay_s: float = Field(
        default=5.0,
        ge=0,
        description="The first check of a new QR comes this long after it was made.",
    )
    schedule_fast_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="Checks come this often while a QR is fresh.",
    )
    schedule_watched_interval_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "Checks come this often while a customer is watching the QR's page (hot), or the "
            "fast interval if that is shorter: the page turns into a receipt about a second "
            "after the payment."
        ),
    )
    schedule_fresh_window_s: float = Field(
        default=30.0,
        ge=0,
        description=(
            "A QR younger than this is fresh (checked every fast interval). Later, a QR nobody "
            "watches is checked every age × the age factor, and by the sweep."
        ),
    )
    schedule_hot_window_s: float = Field(
        default=15 * 60,
        ge=0,
        description="A QR stays hot (fast checks) this long after its customer last looked at it.",
    )
    schedule_age_factor: float = Field(
        default=0.1,
        gt=0,
        description=(
            "Past its fresh window, a QR is checked every age × this factor (between the fast and "
            "the maximum interval)."
        ),
    )
    schedule_max_interval_s: float = Field(
        default=30 * 60,
        gt=0,
        description="The longest wait between two checks of a pending QR.",
    )
    payment_window_s: float = Field(
        default=30 * 24 * 3600,
        gt=0,
        description=(
            "How long an order can be paid (its QR's expiry); afterwards it expires unless "
            "money arrives."
        ),
    )
    schedule_final_grace_s: float = Field(
        default=60.0,
        ge=0,
        description=(
            "The final check waits this long after the window end: Bakong settles a payment made "
            "in the window's last seconds a little later."
        ),
    )
    schedule_early_fraction: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description=(
            "A Bakong call made anyway carries payments whose next check is this share of their "
            "interval away (md5 list, up to 50 a call)."
        ),
    )
    schedule_ride_along_after_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Free places in a Bakong call that goes out anyway go to ride-alongs: pending QRs "
            "last checked at least this long ago, the longest ago first (their schedule stays "
            "as it is)."
        ),
    )
    schedule_sweep_interval_s: float = Field(
        default=100.0,
        gt=0,
        description=(
            "When no Bakong call goes out anyway and a pending QR has not been checked for this "
            "long, one call goes out full of the longest-unchecked QRs (the sweep): every pending "
            "QR, whatever its age, is checked about this often."
        ),
    )
    schedule_error_backoff_max_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "After a Bakong error a QR's next check backs off, doubling from the fast interval up "
            "to this."
        ),
    )

    # The worker
    worker_batch_size: int = Field(
        default=200,
        ge=1,
        description="Payments one worker claims in one cycle (checked in calls of up to 50).",
    )
    worker_lease_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "A claimed payment is another worker's to take after this long (its worker died)."
        ),
    )
    worker_poll_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="How long an idle worker waits before looking for due payments again.",
    )
    worker_unauthorized_pause_s: float = Field(
        default=300.0,
        gt=0,
        description=(
            "After Bakong refuses the token, no call is made for this long (then one cycle probes "
            "again)."
        ),
    )
    worker_shutdown_grace_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "On SIGTERM a Bakong call in flight gets this long to answer before its batch is "
            "released."
        ),
    )
    worker_sweep_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="How often the expiry sweep and the pending-payments gauge run.",
    )
    worker_metrics_host: str = Field(
        default="127.0.0.1",
        description="The address `khqrpay worker --metrics-port` serves Prometheus metrics on.",
    )
    attempts_kept_per_payment: int = Field(
        default=20,
        ge=1,
        description=(
            "Verification attempts kept per payment (older rows are pruned; their totals stay). "
            "The worker's routine not-paid-yet checks are only counted, not kept as rows."
        ),
    )

    # The web app (`khqrpay serve`)
    web_secret_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Signs session and CSRF cookies. Set it (any long random string, the same in every "
            "process) whenever the app restarts or runs as several processes: left empty, each "
            "process makes its own and sessions end with it."
        ),
    )
    web_secure_cookies: bool = Field(
        default=True,
        description=(
            "Cookies only over HTTPS (browsers also send them to http://localhost and 127.0.0.1); "
            "also turns on HSTS."
        ),
    )
    web_customer_session_days: float = Field(
        default=90.0,
        gt=0,
        description='How long a customer\'s browser keeps its cart and "My orders".',
    )
    web_staff_session_idle_minutes: float = Field(
        default=120.0,
        gt=0,
        description="Staff are logged out after this long without a request.",
    )
    web_max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Larger request bodies are refused (413).",
    )
    web_public_url: str | None = Field(
        default=None,
        description=(
            "The address customers and staff use (links in API answers, alerts); unset: the "
            "request's."
        ),
    )

    # Rate limits: every process counts in its own memory, so N web processes allow up to N
    # times these.
    web_rate_checkout: str = Field(
        default="10/minute;100/hour",
        description=(
            "Checkouts per client address. "
            "Limits notation: 10/minute, or several: 10/minute;100/hour."
        ),
    )
    web_rate_paid_per_order: str = Field(
        default="4/minute",
        description=(
            '"I have paid" presses per order. '
            "Limits notation: 10/minute, or several: 10/minute;100/hour."
        ),
    )
    web_rate_paid_per_client: str = Field(
        default="15/minute",
        description=(
            '"I have paid" presses per client address. '
            "Limits notation: 10/minute, or several: 10/minute;100/hour."
        ),
    )
    web_rate_lookup: str = Field(
        default="10/minute;50/hour",
        description=(
            "Order look-ups (My orders by phone and order link) per client address. "
            "Limits notation: 10/minute, or several: 10/minute;100/hour."
        ),
    )
    web_rate_banking_app: str = Field(
        default="20/minute",
        description=(
            '"Open in banking app" deep links per client address. '
            "Limits notation: 10/minute, or several: 10/minute;100/hour."
        ),
    )
    web_rate_api_key: str = Field(
        default="600/minute",
        description=(
            "API requests per API key. Limits notation: 10/minute, or several: 10/minute;100/hour."
        ),
    )
    web_rate_api_bakong: str = Field(
        default="60/minute",
        description=(
            "API calls that ask Bakong now (verify, check) per API key. "
            "Limits notation: 10/minute, or several: 10/minute;100/hour."
        ),
    )

    @field_validator(
        "web_rate_checkout",
        "web_rate_paid_per_order",
        "web_rate_paid_per_client",
        "web_rate_lookup",
        "web_rate_banking_app",
        "web_rate_api_key",
        "web_rate_api_bakong",
    )
    @classmethod
    def _rate_limit(cls, value: str, info: ValidationInfo) -> str:
        # A default is valid (a test parses each): `limits` is imported only for a value set in
        # the environment, not by every command that loads the settings.
        if info.field_name is not None and value == cls.model_fields[info.field_name].default:
            return value
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:  # its message quotes the value; settings errors never do
            raise ValueError("is not a rate limit like 10/minute") from None
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _text_is_utf8(cls, value: object) -> object:
        # Python keeps bytes of the environment that are not UTF-8 as lone surrogates.
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("is not UTF-8 text") from None
        return value

    @field_validator("database_url")
    @classmethod
    def _a_database_url(cls, url: str) -> str:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(url)
        except (ArgumentError, ValueError):  # the messages may quote the URL and its password
            raise ValueError(
                "is not a database URL (sqlite:///PATH or postgresql+psycopg://USER@HOST/DB)"
            ) from None
        return url

    @field_validator("bakong_token")
    @classmethod
    def _token_fits_a_header(cls, token: SecretStr) -> SecretStr:
        problem = bakong_token_problem(token.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return token

    def merchant_qr(self) -> KHQRInput:
        """The shop's receiving account as a static KHQR; an order's code adds its amount,
        currency, bill number and expiry to it (`dataclasses.replace`)."""
        from khqrpay.khqr import KHQRInput

        return KHQRInput(
            bakong_account_id=self.merchant_account,
            merchant_name=self.merchant_name,
            merchant_city=self.merchant_city,
            merchant_id=self.merchant_id,
            acquiring_bank=self.acquiring_bank,
        )

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

    def call_budget(self) -> CallBudget:
        """The Bakong request budget these settings describe."""
        return CallBudget(
            calls_per_min=self.bakong_max_calls_per_min,
            staff_reserved=min(
                self.bakong_staff_reserved_calls_per_min, self.bakong_max_calls_per_min - 1
            ),
        )

    def schedule_policy(self) -> SchedulePolicy:
        """The verification schedule these settings describe, in integer milliseconds."""
        return SchedulePolicy(
            initial_delay_ms=_seconds_to_ms(self.schedule_initial_delay_s),
            fast_interval_ms=_seconds_to_ms(self.schedule_fast_interval_s),
            watched_interval_ms=_seconds_to_ms(self.schedule_watched_interval_s),
            fresh_window_ms=_seconds_to_ms(self.schedule_fresh_window_s),
            hot_window_ms=_seconds_to_ms(self.schedule_hot_window_s),
            age_factor=self.schedule_age_factor,
            max_interval_ms=_seconds_to_ms(self.schedule_max_interval_s),
            payment_window_ms=_seconds_to_ms(self.payment_window_s),
            final_grace_ms=_seconds_to_ms(self.schedule_final_grace_s),
            early_fraction=self.schedule_early_fraction,
            error_backoff_max_ms=_seconds_to_ms(self.schedule_error_backoff_max_s),
            ride_along_after_ms=_seconds_to_ms(self.schedule_ride_along_after_s),
            sweep_interval_ms=_seconds_to_ms(self.schedule_sweep_interval_s),
        )


def _seconds_to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def load_settings() -> Settings:
    """The settings of the environment; raises `SettingsError` naming each variable that is
    wrong and why, without its value."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = [
            f"{ENV_PREFIX}{'.'.join(str(part) for part in error['loc']).upper()}: "
            + error["msg"].removeprefix("Value error, ")
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        raise SettingsError(f"invalid settings: {'; '.join(problems)}") from None


# The configuration reference ------------------------------------------------------------------

# Each section of the reference starts at its first setting, in the order they are declared.
SECTION_STARTS = {
    "database_url": "Database",
    "bakong_url": "Bakong Open API",
    "merchant_account": "The receiving merchant",
    "schedule_initial_delay_s": "The verification schedule",
    "worker_batch_size": "The worker (`khqrpay worker`)",
    "web_secret_key": "The web app (`khqrpay serve`)",
}
REFERENCE_COMMAND = "python -m khqrpay.settings > docs/configuration.md"
_TYPE_NAMES: dict[object, str] = {
    str: "text",
    SecretStr: "text",
    float: "number",
    int: "integer",
    bool: "true or false",
}
_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))


def environment_variable(name: str) -> str:
    """The variable a setting is read from (names are case-insensitive)."""
    return ENV_PREFIX + name.upper()


def is_secret(field: FieldInfo) -> bool:
    """A secret is a `SecretStr`: kept out of reprs, logs and errors."""
    return field.annotation is SecretStr


def configuration_reference() -> str:
    """`docs/configuration.md`: every setting's variable, type, default, secrecy and description."""
    fields = Settings.model_fields
    unknown = set(SECTION_STARTS) - set(fields)
    if unknown or next(iter(fields)) not in SECTION_STARTS:
        raise ValueError(f"SECTION_STARTS must name settings, the first one first: {unknown}")
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from the descriptions in src/khqrpay/settings.py (edit them there) by",
        f"     `{REFERENCE_COMMAND}`; a test fails when this page is out of date. -->",
        "",
        "khqrpay reads its settings from environment variables named `KHQRPAY_<SETTING>` (any",
        "case), and from a `.env` file in the working directory for those the environment does",
        "not set. Durations are in seconds unless the name says otherwise. A **secret** is never",
        "written to a log, an error or an answer; keep it (and a database URL with a password)",
        "out of version control: a `.env` or `EnvironmentFile` readable by the service only.",
        "`khqrpay doctor` checks the settings of a machine (docs/troubleshooting.md).",
        "",
        "Two standard variables matter too: `HTTPS_PROXY`, a proxy for the Bakong calls of a",
        "machine outside Cambodia (docs/bakong.md), and `FORWARDED_ALLOW_IPS`, the reverse",
        "proxies whose `X-Forwarded-*` headers the web app believes (docs/reverse-proxy.md).",
    ]
    for name, field in fields.items():
        if name in SECTION_STARTS:
            lines += [
                "",
                f"## {SECTION_STARTS[name]}",
                "",
                "| variable | type | default | description |",
                "|---|---|---|---|",
            ]
        variable = f"`{environment_variable(name)}`" + (" (secret)" if is_secret(field) else "")
        cells = (variable, _type_of(field), _default_of(field), field.description or "")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _type_of(field: FieldInfo) -> str:
    annotation = field.annotation
    arguments = [arg for arg in getattr(annotation, "__args__", ()) if arg is not type(None)]
    optional = len(arguments) == 1
    text = _TYPE_NAMES[arguments[0] if optional else annotation]
    bounds = [
        f"{symbol} {_number(getattr(constraint, attribute))}"
        for constraint in field.metadata
        for attribute, symbol in _BOUNDS
        if getattr(constraint, attribute, None) is not None
    ]
    text += f" ({', '.join(bounds)})" if bounds else ""
    return text + (", optional" if optional else "")


def _default_of(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return (field.default_factory.__doc__ or "computed").strip()
    value: Any = field.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{_number(value) if isinstance(value, int | float) else value}`"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


if __name__ == "__main__":
    sys.stdout.write(configuration_reference())
