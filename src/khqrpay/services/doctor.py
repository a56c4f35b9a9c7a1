"""`khqrpay doctor`: is this machine ready to take payments? Each check gives one finding, ok, warn
or fail (or skip when an earlier failure leaves nothing to check), saying what is wrong and how
to fix it.

The checks, in order: the settings (they load; the merchant fields make a valid KHQR; the Bakong
token is there and not expired; the web secret key is set wherever sessions must outlive a
process), the database (reachable, at the latest schema), Bakong (a harmless check of an md5 no
QR has, which proves the token and the network path; whether the md5 list endpoint answers), the
receiving account (Bakong says it can receive) and the clock (against Bakong's Date header).
The test check is a staff call taken from the request budget every process shares (when the
database is usable), so a doctor run in a loop cannot crowd out the verifier.

A diagnosis is healthy when nothing failed: warnings and skips leave it healthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pydantic
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from khqrpay.bakong.budget import CallGate, calling_as
from khqrpay.bakong.errors import (
    BadResponse,
    BakongError,
    Blocked,
    OverBudget,
    RateLimited,
    Rejected,
    Unauthorized,
)
from khqrpay.bakong.outcomes import CheckResult
from khqrpay.bakong.token import BakongToken, TokenFormatError, read_jwt_expiry_ms
from khqrpay.clock import Clock, ms_to_datetime
from khqrpay.db import Database, DatabaseError, migrate, redacted
from khqrpay.khqr import KHQRInputError, encode
from khqrpay.orders.budget import CallBudget, CallPriority
from khqrpay.services.budget import SharedCallBudget, budget_status
from khqrpay.services.receiving_account import (
    AccountChecker,
    AccountVerdict,
    check_receiving_account,
)
from khqrpay.settings import Settings, environment_variable

# An md5 no KHQR has: checking it is harmless and proves the token and the way to Bakong.
PROBE_MD5 = hashlib.md5(b"khqrpay doctor: a QR nobody paid", usedforsecurity=False).hexdigest()
# A Date header has whole seconds and the answer takes its time: closer than this is in step.
CLOCK_OK_MS = 10_000
# Beyond this, QR creation times, token expiry and payment times are visibly wrong.
CLOCK_FAIL_MS = 5 * 60_000
# PostgreSQL: give up connecting after this long (an unreachable host would otherwise hang).
DATABASE_CONNECT_TIMEOUT_S = 5
_DAY_MS = 86_400_000


class Level(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class Check(enum.StrEnum):
    """What each finding is about, in the order they are made."""

    SETTINGS = "settings"
    MERCHANT = "merchant"
    TOKEN = "token"  # noqa: S105 - the name of a check, not a secret
    WEB = "web"
    DATABASE = "database"
    SCHEMA = "schema"
    BUDGET = "budget"
    BAKONG = "bakong"
    MD5_LIST = "md5_list"
    RECEIVING_ACCOUNT = "receiving_account"
    CLOCK = "clock"


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: what was found and, unless all is well, how to fix it."""

    check: Check
    level: Level
    message: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    findings: tuple[Finding, ...]

    @property
    def healthy(self) -> bool:
        """Nothing failed (warnings and skips allowed)."""
        return all(finding.level is not Level.FAIL for finding in self.findings)

    def count(self, level: Level) -> int:
        return sum(finding.level is level for finding in self.findings)


class BakongProbe(AccountChecker, Protocol):
    """What the doctor asks of a Bakong client (`BakongClient` is one)."""

    async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]: ...

    def list_fallback_until_ms(self) -> int | None: ...

    def clock_offset_ms(self) -> int | None: ...


# The client for these settings, its payment checks passing `gate` (None: no shared budget).
OpenBakong = Callable[[Settings, CallGate | None], AbstractAsyncContextManager[BakongProbe]]


async def diagnose(
    load_settings: Callable[[], Settings], *, clock: Clock, open_bakong: OpenBakong
) -> Diagnosis:
    """Every check, in order; never raises for a problem it can describe."""
    try:
        settings = load_settings()
    except ValueError as exc:  # pydantic's ValidationError, or a loader's own refusal
        return Diagnosis((_invalid_settings(exc), *_skipped(list(Check)[1:], "settings")))
    findings = [*check_settings(settings, now_ms=clock.now_ms())]
    database_findings = check_database(
        settings.database_url, budget=settings.call_budget(), now_ms=clock.now_ms()
    )
    findings += database_findings
    usable = all(
        finding.level is Level.OK
        for finding in database_findings
        if finding.check in (Check.DATABASE, Check.SCHEMA)
    )
    findings += await check_bakong(settings, open_bakong, clock=clock, shared_budget=usable)
    return Diagnosis(tuple(findings))


# Settings ------------------------------------------------------------------------------------


def _invalid_settings(exc: ValueError) -> Finding:
    if isinstance(exc, pydantic.ValidationError):
        # Each variable and why, never its value: one may be a secret.
        problems = "; ".join(
            f"{environment_variable(str(error['loc'][0])) if error['loc'] else 'settings'}: "
            f"{error['msg']}"
            for error in exc.errors(include_url=False, include_input=False)
        )
    else:
        problems = str(exc)
    return Finding(
        Check.SETTINGS,
        Level.FAIL,
        f"the settings do not load: {problems}",
        "correct the variable in the environment or .env (docs/configuration.md)",
    )


def check_settings(settings: Settings, *, now_ms: int) -> list[Finding]:
    """What the settings alone can tell: no network, no database."""
    try:
        settings.schedule_policy()
    except ValueError as exc:
        loaded = Finding(
            Check.SETTINGS,
            Level.FAIL,
            f"the verification schedule is inconsistent: {exc}",
            "correct the KHQRPAY_SCHEDULE_* variables (docs/configuration.md)",
        )
    else:
        loaded = Finding(
            Check.SETTINGS,
            Level.OK,
            f"loaded; database {_shown_url(settings.database_url)}, Bakong {settings.bakong_url}",
        )
    return [loaded, _merchant(settings, now_ms), _token(settings, now_ms), _web(settings)]


def _shown_url(url: str) -> str:
    try:
        return redacted(url)
    except ArgumentError:
        return "(not a URL)"


def _merchant(settings: Settings, now_ms: int) -> Finding:
    """The merchant fields must make a KHQR: the same encoder the checkout uses decides."""
    try:
        encode(settings.merchant_qr(), now_ms=now_ms)
    except KHQRInputError as exc:
        return Finding(
            Check.MERCHANT,
            Level.FAIL,
            f"the merchant settings make no valid KHQR: {exc.field}: {exc.rule}",
            "set KHQRPAY_MERCHANT_ACCOUNT (name@bank, as your banking app shows it), "
            "KHQRPAY_MERCHANT_NAME and KHQRPAY_MERCHANT_CITY",
        )
    kind = "merchant (tag 30)" if settings.merchant_id else "individual (tag 29)"
    return Finding(
        Check.MERCHANT,
        Level.OK,
        f"QRs pay {settings.merchant_account} as {settings.merchant_name!r}, "
        f"{settings.merchant_city}; {kind} KHQR",
    )


def _token(settings: Settings, now_ms: int) -> Finding:
    secret = settings.bakong_token.get_secret_value()
    renew = "renew it and set KHQRPAY_BAKONG_TOKEN (docs/bakong.md)"
    if not secret.strip():
        return Finding(
            Check.TOKEN,
            Level.FAIL,
            "KHQRPAY_BAKONG_TOKEN is not set: no payment can be checked",
            "register at the Bakong Open API and set KHQRPAY_BAKONG_TOKEN (docs/bakong.md)",
        )
    try:
        expires_ms = read_jwt_expiry_ms(BakongToken(secret).reveal())
    except TokenFormatError as exc:
        return Finding(
            Check.TOKEN,
            Level.WARN,
            f"the token's expiry cannot be read ({exc}); Bakong's answer below decides",
            "Bakong tokens are JWTs: check KHQRPAY_BAKONG_TOKEN was copied whole",
        )
    except ValueError as exc:
        return Finding(Check.TOKEN, Level.FAIL, f"the token is unusable: {exc}", renew)
    days_left = (expires_ms - now_ms) / _DAY_MS
    when = _date(expires_ms)
    if days_left <= 0:
        return Finding(
            Check.TOKEN,
            Level.FAIL,
            f"the token expired on {when} ({-days_left:.0f} days ago)",
            renew,
        )
    if days_left <= settings.bakong_token_warn_days:
        return Finding(
            Check.TOKEN,
            Level.WARN,
            f"the token expires on {when}, in {days_left:.1f} days",
            renew,
        )
    return Finding(Check.TOKEN, Level.OK, f"the token expires on {when}, in {days_left:.0f} days")


def _date(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M UTC")


def _is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] == "sqlite"


def _web(settings: Settings) -> Finding:
    key_set = bool(settings.web_secret_key.get_secret_value().strip())
    set_key = (
        "set KHQRPAY_WEB_SECRET_KEY to a long random string "
        '(python3 -c "import secrets; print(secrets.token_urlsafe(32))"), '
        "the same for every web process"
    )
    if not key_set and not _is_sqlite(settings.database_url):
        return Finding(
            Check.WEB,
            Level.FAIL,
            "KHQRPAY_WEB_SECRET_KEY is not set: each web process signs sessions with a key of "
            "its own, so logins and carts break between processes and at every restart",
            set_key,
        )
    if not key_set:
        return Finding(
            Check.WEB,
            Level.WARN,
            "KHQRPAY_WEB_SECRET_KEY is not set: sessions end whenever the web app restarts",
            set_key,
        )
    if not settings.web_secure_cookies:
        return Finding(
            Check.WEB,
            Level.WARN,
            "KHQRPAY_WEB_SECURE_COOKIES is off: session cookies also travel over plain HTTP",
            "serve the app over HTTPS (docs/reverse-proxy.md) and remove the setting",
        )
    return Finding(Check.WEB, Level.OK, "the secret key is set; cookies only over HTTPS")


# Database ------------------------------------------------------------------------------------


def check_database(url: str, *, budget: CallBudget, now_ms: int) -> list[Finding]:
    """Reachable, at the schema this code needs, and how the Bakong request budget (kept in it)
    is doing. Creates nothing: a missing SQLite file is reported, not made."""
    fix_url = "check KHQRPAY_DATABASE_URL (docs/postgresql.md)"
    try:
        parsed = make_url(url)
    except ArgumentError:
        return [
            Finding(Check.DATABASE, Level.FAIL, "KHQRPAY_DATABASE_URL is not a URL", fix_url),
            *_skipped([Check.SCHEMA, Check.BUDGET], "database"),
        ]
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return [
            Finding(
                Check.DATABASE,
                Level.FAIL,
                f"there is no SQLite database at {parsed.database}",
                f"create it with `khqrpay db upgrade`, or {fix_url}",
            ),
            *_skipped([Check.SCHEMA, Check.BUDGET], "database"),
        ]
    options = (
        {"connect_args": {"connect_timeout": DATABASE_CONNECT_TIMEOUT_S}}
        if parsed.get_backend_name() == "postgresql"
        else {}
    )
    try:
        database = Database.from_url(parsed, **options)
    except DatabaseError as exc:
        return [
            Finding(Check.DATABASE, Level.FAIL, str(exc), fix_url),
            *_skipped([Check.SCHEMA, Check.BUDGET], "database"),
        ]
    try:
        current = migrate.current_revision(database)
        schema = _schema(current)
        budget_found = (
            _budget(database, budget, now_ms)
            if schema.level is Level.OK
            else _skipped([Check.BUDGET], Check.SCHEMA)[0]
        )
    except DBAPIError as exc:  # unreachable, refused, or not a database at all
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "no connection"
        return [
            Finding(
                Check.DATABASE,
                Level.FAIL,
                f"cannot reach {redacted(parsed)}: {reason}",
                f"{fix_url}; is the server running and does it accept this machine and user?",
            ),
            *_skipped([Check.SCHEMA, Check.BUDGET], "database"),
        ]
    finally:
        database.dispose()
    reached = Finding(Check.DATABASE, Level.OK, f"reached {redacted(parsed)} ({database.backend})")
    return [reached, schema, budget_found]


def _budget(database: Database, budget: CallBudget, now_ms: int) -> Finding:
    status = budget_status(database, budget, now_ms=now_ms)
    if status.use.single_checks or status.behind_orders:
        return Finding(
            Check.BUDGET,
            Level.WARN,
            status.describe(),
            "payments are found later, none is skipped; if it lasts, raise "
            "KHQRPAY_BAKONG_MAX_CALLS_PER_MIN as far as Bakong allows (docs/troubleshooting.md)",
        )
    return Finding(Check.BUDGET, Level.OK, status.describe())


def _schema(current: str | None) -> Finding:
    head = migrate.HEAD_REVISION
    if current == head:
        return Finding(Check.SCHEMA, Level.OK, f"at the latest schema ({head})")
    return Finding(
        Check.SCHEMA,
        Level.FAIL,
        f"the database is at schema {current or 'none (no tables)'}, this khqrpay needs {head}",
        "run `khqrpay db upgrade` (docs/upgrading.md); if a newer khqrpay already upgraded "
        "it, upgrade khqrpay on this machine",
    )


# Bakong --------------------------------------------------------------------------------------


async def check_bakong(
    settings: Settings, open_bakong: OpenBakong, *, clock: Clock, shared_budget: bool
) -> list[Finding]:
    """A harmless check, the md5 list endpoint, the receiving account and the clock.
    `shared_budget`: the database is usable, so the test check takes from the request budget."""
    async with contextlib.AsyncExitStack() as stack:
        gate: CallGate | None = None
        if shared_budget:
            database = Database.from_url(settings.database_url)
            stack.callback(database.dispose)
            gate = SharedCallBudget(database, settings.call_budget(), clock)
        try:
            client = await stack.enter_async_context(open_bakong(settings, gate))
        except ValueError as exc:  # a BakongInputError, or a token that cannot be sent
            return [
                Finding(
                    Check.BAKONG,
                    Level.FAIL,
                    f"no Bakong client can be made from the settings: {exc}",
                    "correct the KHQRPAY_BAKONG_* variables (docs/configuration.md)",
                ),
                *_skipped([Check.MD5_LIST, Check.RECEIVING_ACCOUNT, Check.CLOCK], "bakong"),
            ]
        findings = await _probe(client, settings)
        account = await check_receiving_account(
            client, settings.merchant_account, within_s=settings.bakong_timeout_s
        )
        findings.append(_account(account.verdict, account.describe()))
        findings.append(_clock(client.clock_offset_ms()))
    return findings


async def _probe(client: BakongProbe, settings: Settings) -> list[Finding]:
    if not settings.bakong_token.get_secret_value().strip():
        return _skipped([Check.BAKONG, Check.MD5_LIST], "token")
    try:
        # Staff priority: the doctor is a person asking, like the console's buttons.
        async with asyncio.timeout(settings.bakong_timeout_s):
            with calling_as(CallPriority.STAFF):
                answer = (await client.check_md5_list([PROBE_MD5]))[PROBE_MD5]
    except TimeoutError:
        answer = BakongError(f"no answer within {settings.bakong_timeout_s:g}s")
    except BakongError as exc:
        answer = exc
    if isinstance(answer, BakongError):
        return [_bakong_error(answer, settings), *_skipped([Check.MD5_LIST], "bakong")]
    found = Finding(
        Check.BAKONG,
        Level.OK,
        f"{settings.bakong_url} accepted the token (a test check answered {answer.kind})",
    )
    if client.list_fallback_until_ms() is not None:
        return [
            found,
            Finding(
                Check.MD5_LIST,
                Level.WARN,
                "the md5 list endpoint is refused (HTTP 403) while single checks work: the "
                "worker makes one call per QR instead of one per 50, within "
                f"{settings.bakong_max_calls_per_min} calls a minute (the schedule stretches)",
                "nothing to change; it retries the list every KHQRPAY_BAKONG_LIST_FALLBACK_S "
                "(docs/troubleshooting.md)",
            ),
        ]
    return [found, Finding(Check.MD5_LIST, Level.OK, "the md5 list endpoint answers")]


def _bakong_error(error: BakongError, settings: Settings) -> Finding:
    if isinstance(error, OverBudget):
        return Finding(
            Check.BAKONG,
            Level.WARN,
            "not asked: the request budget every process shares has no call left this minute "
            f"(KHQRPAY_BAKONG_MAX_CALLS_PER_MIN={settings.bakong_max_calls_per_min})",
            "run `khqrpay doctor` again in a minute; if the budget stays spent, see the budget "
            "check above",
        )
    if isinstance(error, Unauthorized):
        return Finding(
            Check.BAKONG,
            Level.FAIL,
            f"Bakong refused the token: {error}",
            "renew the token (a test-service token does not work on production, nor the "
            "reverse) and set KHQRPAY_BAKONG_TOKEN (docs/bakong.md)",
        )
    if isinstance(error, Blocked):
        return Finding(
            Check.BAKONG,
            Level.FAIL,
            f"Bakong's firewall refused this machine: {error}",
            "the Open API answers Cambodian IP addresses only: run the worker in Cambodia or "
            "send its Bakong calls through a server there (docs/bakong.md)",
        )
    if isinstance(error, RateLimited):
        wait = "" if error.retry_after_s is None else f", retry after {error.retry_after_s:g}s"
        return Finding(
            Check.BAKONG,
            Level.WARN,
            f"Bakong is rate-limiting this machine ({error}{wait})",
            "lower KHQRPAY_BAKONG_RATE_LIMIT_PER_S or run fewer workers (docs/troubleshooting.md)",
        )
    if isinstance(error, BadResponse | Rejected):
        return Finding(
            Check.BAKONG,
            Level.FAIL,
            f"{settings.bakong_url} did not answer as the Open API does: {error}",
            "check KHQRPAY_BAKONG_URL",
        )
    return Finding(
        Check.BAKONG,
        Level.FAIL,
        f"Bakong at {settings.bakong_url} gave no answer: {error}",
        "check this machine reaches it (DNS, outbound HTTPS, a proxy); if it does, Bakong "
        "is down: try again later (docs/troubleshooting.md)",
    )


def _account(verdict: AccountVerdict, description: str) -> Finding:
    match verdict:
        case AccountVerdict.READY:
            return Finding(Check.RECEIVING_ACCOUNT, Level.OK, description)
        case AccountVerdict.CANNOT_RECEIVE:
            return Finding(
                Check.RECEIVING_ACCOUNT,
                Level.FAIL,
                description,
                "set KHQRPAY_MERCHANT_ACCOUNT to the account your banking app's Bakong profile "
                "shows, or ask your bank why it cannot receive",
            )
        case AccountVerdict.UNCHECKED:
            return Finding(
                Check.RECEIVING_ACCOUNT,
                Level.WARN,
                description,
                "the worker checks it again at start-up; see the bakong line above",
            )


def _clock(offset_ms: int | None) -> Finding:
    if offset_ms is None:
        return Finding(
            Check.CLOCK,
            Level.SKIP,
            "not compared: no answer from Bakong carried a Date header",
            "make sure the machine keeps time with NTP (`timedatectl`)",
        )
    direction = "ahead of" if offset_ms > 0 else "behind"
    text = f"this machine's clock is {abs(offset_ms) / 1000:.1f}s {direction} Bakong's"
    if abs(offset_ms) <= CLOCK_OK_MS:
        return Finding(Check.CLOCK, Level.OK, text)
    return Finding(
        Check.CLOCK,
        Level.FAIL if abs(offset_ms) > CLOCK_FAIL_MS else Level.WARN,
        f"{text}: QR times, token expiry and payment times are off by as much",
        "turn on time synchronisation: `timedatectl set-ntp true` (or chrony)",
    )


def _skipped(checks: Iterable[Check], because: Check | str) -> list[Finding]:
    return [
        Finding(check, Level.SKIP, f"not checked: the {Check(because).value} check failed")
        for check in checks
    ]
