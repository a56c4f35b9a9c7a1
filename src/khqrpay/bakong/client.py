"""The async Bakong Open API client: typed results, typed errors, retries, breaker, rate limit."""

from __future__ import annotations

import asyncio
import enum
import random
import re
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TypeVar
from urllib.parse import urlsplit

import httpx

from khqrpay.bakong.budget import CallGate, current_priority, prepaid, take_prepaid
from khqrpay.bakong.deeplink import DeeplinkSource, require_url
from khqrpay.bakong.envelope import (
    Envelope,
    JsonFields,
    ListKey,
    decode_json,
    encode_json,
    parse_envelope,
    parse_list_items,
    parse_transaction,
)
from khqrpay.bakong.errors import (
    BadResponse,
    BakongError,
    BakongInputError,
    Blocked,
    CircuitOpen,
    MalformedTransaction,
    OverBudget,
    RateLimited,
    Rejected,
    Unauthorized,
    Unavailable,
)
from khqrpay.bakong.metrics import BakongMetrics, default_metrics
from khqrpay.bakong.outcomes import (
    AccountState,
    AccountStatus,
    CheckResult,
    Failed,
    NotFound,
    Paid,
    StaticQr,
)
from khqrpay.bakong.resilience import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    RetryPolicy,
    Sleeper,
    TokenBucket,
)
from khqrpay.bakong.token import BakongToken, TokenFormatError
from khqrpay.clock import Clock
from khqrpay.hashes import FULL_HASH, SHORT_HASH
from khqrpay.logging import get_logger
from khqrpay.money import Currency, Money, MoneyError
from khqrpay.settings import Settings

T = TypeVar("T")

MAX_LIST_KEYS = 50
# A list answer for 50 keys is ~30 KB; anything near this is not a Bakong answer.
MAX_BODY_BYTES = 1 << 20
_DAY_MS = 86_400_000
_MD5 = re.compile(r"^[0-9a-f]{32}$")
# KHQR limits a Bakong account id to 32 characters: `name@bank`.
_ACCOUNT_ID = re.compile(r"^[^@\s]+@[^@\s]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# The Open API document's limit on the e-mail a token is registered (and renewed) with.
MAX_EMAIL_LENGTH = 30


class Endpoint(enum.StrEnum):
    MD5 = "/v1/check_transaction_by_md5"
    HASH = "/v1/check_transaction_by_hash"
    SHORT_HASH = "/v1/check_transaction_by_short_hash"
    INSTRUCTION_REF = "/v1/check_transaction_by_instruction_ref"
    EXTERNAL_REF = "/v1/check_transaction_by_external_ref"
    MD5_LIST = "/v1/check_transaction_by_md5_list"
    HASH_LIST = "/v1/check_transaction_by_hash_list"
    ACCOUNT = "/v1/check_bakong_account"
    DEEPLINK = "/v1/generate_deeplink_by_qr"
    RENEW_TOKEN = "/v1/renew_token"  # noqa: S105 - a path, not a secret

    @property
    def label(self) -> str:
        """The short name used in logs and metrics."""
        return self.value.rsplit("/", 1)[-1]


class _Auth(enum.Enum):
    REQUIRED = "required"
    OPTIONAL = "optional"  # sent when configured (the account check may work without)
    NONE = "none"


def _counts_against_service(exc: BaseException) -> bool:
    """Breaker failures: the service is down, overloaded or answering garbage. An unreadable
    transaction for one key is that key's problem: it never pauses the checks of all."""
    if isinstance(exc, MalformedTransaction):
        return False
    return isinstance(exc, Unavailable | RateLimited | BadResponse)


# Words with which an application (not a firewall) says the bearer token is no good.
_TOKEN_TROUBLE = re.compile(r"token|jwt|unauthori[sz]ed|expired|revoked|credential", re.IGNORECASE)


def _forbidden(path: str, headers: httpx.Headers, content: bytes) -> BakongError:
    """A 403 is either Bakong refusing the token, expired or revoked (it says so: errorCode 6, a
    JSON answer about the token, or a WWW-Authenticate header), or the firewall's page (a
    non-Cambodian address, no User-Agent, a blocked path). Both stop the checks; only the first
    is fixed by a new token."""
    try:
        body = decode_json(content, endpoint=path, http_status=403)
    except BadResponse:
        body = None
    texts = [v for v in body.values() if isinstance(v, str)] if isinstance(body, Mapping) else []
    names_the_token = (
        "www-authenticate" in headers
        or (isinstance(body, Mapping) and body.get("errorCode") == 6)
        or any(_TOKEN_TROUBLE.search(text) for text in texts)
    )
    if names_the_token:
        return Unauthorized(
            "the token was refused (expired or revoked)",
            endpoint=path,
            http_status=403,
            error_code=6 if isinstance(body, Mapping) and body.get("errorCode") == 6 else None,
        )
    return Blocked("refused by Bakong's firewall (HTTP 403)", endpoint=path, http_status=403)


def _retry_after_of(exc: BaseException) -> float | None:
    return exc.retry_after_s if isinstance(exc, RateLimited) else None


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, BakongError) and exc.transient


def parse_retry_after(value: str | None, *, now_ms: int) -> float | None:
    """Retry-After as seconds from now: delta-seconds or an HTTP date; None if absent or invalid."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now_ms / 1000)


def _require_hex(field: str, value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str):
        raise BakongInputError(field, f"must be a string of {what}")
    cleaned = value.strip().lower()
    if not pattern.fullmatch(cleaned):
        raise BakongInputError(field, f"must be {what}")
    return cleaned


def _require_ref(field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BakongInputError(field, "must be a non-empty string")
    cleaned = value.strip()
    if len(cleaned) > 128 or not cleaned.isprintable():
        raise BakongInputError(field, "must be at most 128 printable characters")
    return cleaned


def _normalize_keys(
    field: str, values: Iterable[str], pattern: re.Pattern[str], what: str
) -> list[str]:
    if isinstance(values, str | bytes):
        raise BakongInputError(field, "must be a collection of keys, not a single string")
    # dict.fromkeys: duplicates removed, request order kept.
    return list(dict.fromkeys(_require_hex(field, value, pattern, what) for value in values))


def _error_for(envelope: Envelope, endpoint: Endpoint, http_status: int) -> BakongError:
    """A failure envelope that is not a result of the endpoint asked."""
    code = envelope.error_code
    message = envelope.response_message[:200] or "Bakong refused the request"
    if code == 6:
        error_type: type[BakongError] = Unauthorized
    elif code in (7, 9):  # e-mail server down, cannot connect to server: on Bakong's side
        error_type = Unavailable
    else:
        error_type = Rejected
    return error_type(message, endpoint=endpoint.value, http_status=http_status, error_code=code)


class BakongClient:
    """Async client of the Bakong Open API; use as `async with BakongClient(...) as client`.

    Every method raises a `BakongError` when no answer could be had; results are typed values.
    Time comes from `clock`, retry and rate-limit waits go through `sleep`.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleeper = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: BakongMetrics | None = None,
        gate: CallGate | None = None,
    ) -> None:
        self._base_url = require_url("bakong_url", settings.bakong_url)
        if settings.bakong_backoff_max_s < settings.bakong_backoff_base_s:
            raise BakongInputError("bakong_backoff_max_s", "must be at least bakong_backoff_base_s")
        self._settings = settings
        self._clock = clock
        # The request budget every payment check takes from (None: unlimited, as in unit tests).
        self._gate = gate
        self._metrics = metrics or default_metrics()
        self._log = get_logger(__name__)
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            transport=transport,
            timeout=httpx.Timeout(settings.bakong_timeout_s),
            headers={
                # Requests without a User-Agent have been refused by Bakong's firewall.
                "User-Agent": settings.bakong_user_agent,
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
            follow_redirects=False,
        )
        self._breaker = CircuitBreaker(
            failure_threshold=settings.bakong_breaker_failures,
            reset_s=settings.bakong_breaker_reset_s,
            clock=clock,
            counts_as_failure=_counts_against_service,
            on_change=self._circuit_changed,
        )
        self._metrics.set_circuit_state(CircuitState.CLOSED)
        self._limiter = TokenBucket(
            rate_per_s=settings.bakong_rate_limit_per_s, clock=clock, sleep=sleep
        )
        self._retry = RetryPolicy(
            attempts=settings.bakong_max_retries + 1,
            backoff=Backoff(
                base_s=settings.bakong_backoff_base_s,
                max_s=settings.bakong_backoff_max_s,
                rng=rng or random.Random(),  # noqa: S311 - jitter, not cryptography
            ),
            is_transient=_is_transient,
            retry_after_s=_retry_after_of,
            sleep=sleep,
        )
        self._list_blocked_until_ms: dict[Endpoint, int] = {}
        # Our clock minus Bakong's (its Date header) at the last answer; None before one.
        self._clock_offset_ms: int | None = None
        self._token: BakongToken | None = None
        self._token_expiry_ms: int | None = None
        self._token_warned: set[int] = set()
        secret = settings.bakong_token.get_secret_value()
        if secret.strip():
            self._use_token(BakongToken(secret))

    def __repr__(self) -> str:
        return f"BakongClient(base_url={self._base_url!r}, token={self._token!r})"

    async def __aenter__(self) -> BakongClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def circuit_state(self) -> CircuitState:
        return self._breaker.state

    def list_fallback_until_ms(self) -> int | None:
        """Until when md5s are checked one by one because the md5-list endpoint answered 403
        (None: the list endpoint is in use)."""
        until = self._list_blocked_until_ms.get(Endpoint.MD5_LIST, 0)
        return until if until > self._clock.now_ms() else None

    def list_refused_elsewhere(self, until_ms: int) -> None:
        """Another process found the md5 list refused until `until_ms` (the shared budget's
        record): check one by one until then, without spending a call to learn it again."""
        blocked = self._list_blocked_until_ms
        blocked[Endpoint.MD5_LIST] = max(blocked.get(Endpoint.MD5_LIST, 0), until_ms)

    # Token --------------------------------------------------------------------------------------

    def _use_token(self, token: BakongToken) -> None:
        self._token = token
        self._token_warned = set()
        try:
            self._token_expiry_ms = token.expires_at_ms()
        except TokenFormatError as exc:
            self._token_expiry_ms = None
            self._log.warning("bakong token expiry unreadable", reason=str(exc))
        self._metrics.token_expiry.set((self._token_expiry_ms or 0) / 1000)

    def token_expires_at_ms(self) -> int | None:
        """The token's JWT `exp` in epoch ms; None without a token or if it has no readable exp."""
        return self._token_expiry_ms

    def token_expiring_soon(self, now_ms: int | None = None) -> bool:
        """True once the token is within `bakong_token_warn_days` of expiry (or expired).

        Logs a warning the first time each threshold is crossed (the warn days, one day left,
        expired), not on every call.
        """
        if self._token_expiry_ms is None:
            return False
        now = self._clock.now_ms() if now_ms is None else now_ms
        remaining_ms = self._token_expiry_ms - now
        warn_ms = round(self._settings.bakong_token_warn_days * _DAY_MS)
        thresholds = sorted({t for t in (warn_ms, _DAY_MS, 0) if t <= warn_ms}, reverse=True)
        crossed = [t for t in thresholds if remaining_ms <= t]
        if crossed and crossed[-1] not in self._token_warned:
            self._token_warned.update(crossed)
            log = self._log.error if remaining_ms <= 0 else self._log.warning
            log(
                "bakong token expired" if remaining_ms <= 0 else "bakong token expires soon",
                expires_at_ms=self._token_expiry_ms,
                days_left=round(remaining_ms / _DAY_MS, 2),
                action="renew it with `renew_token(email)` (NBC mails a reminder 3 days before)",
            )
        return remaining_ms <= warn_ms

    # Transport ----------------------------------------------------------------------------------

    async def _post(
        self, endpoint: Endpoint, body: bytes, auth: _Auth
    ) -> tuple[int, httpx.Headers, bytes]:
        headers = {}
        if auth is not _Auth.NONE and self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.reveal()}"
        try:
            # httpx's timeout bounds each read; this bounds the whole exchange, so that an answer
            # trickling in never holds a batch longer than `bakong_timeout_s`.
            async with (
                asyncio.timeout(self._settings.bakong_timeout_s),
                self._http.stream(
                    "POST", endpoint.value, content=body, headers=headers
                ) as response,
            ):
                self._note_server_date(response.headers.get("Date"))
                content = bytearray()
                async for chunk in response.aiter_bytes():
                    content += chunk
                    if len(content) > MAX_BODY_BYTES:
                        raise BadResponse(
                            "the answer is larger than 1 MiB",
                            endpoint=endpoint.value,
                            http_status=response.status_code,
                        )
                return response.status_code, response.headers, bytes(content)
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise Unavailable(
                f"no answer within {self._settings.bakong_timeout_s:g}s", endpoint=endpoint.value
            ) from exc
        except httpx.DecodingError as exc:
            raise BadResponse("the body could not be decoded", endpoint=endpoint.value) from exc
        except httpx.TransportError as exc:  # refused, reset, DNS, protocol errors
            raise Unavailable(
                f"connection failed ({type(exc).__name__})", endpoint=endpoint.value
            ) from exc

    def _note_server_date(self, value: str | None) -> None:
        try:
            server = parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError):
            server = None
        if server is not None:
            # A Date has whole seconds: Bakong's time was somewhere in that second, so its middle.
            server_ms = round(server.replace(tzinfo=server.tzinfo or UTC).timestamp() * 1000) + 500
            self._clock_offset_ms = self._clock.now_ms() - server_ms

    def clock_offset_ms(self) -> int | None:
        """How far our clock is ahead of Bakong's (negative: behind), from the Date header of the
        last answer, to within a second; None until an answer carried one."""
        return self._clock_offset_ms

    def _envelope_of(
        self, endpoint: Endpoint, status: int, headers: httpx.Headers, content: bytes
    ) -> Envelope:
        path = endpoint.value
        if status == 401:
            raise Unauthorized("the token was refused", endpoint=path, http_status=status)
        if status == 403:
            raise _forbidden(path, headers, content)
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"), now_ms=self._clock.now_ms())
            raise RateLimited(
                "rate limited by Bakong",
                retry_after_s=retry_after,
                endpoint=path,
                http_status=status,
            )
        if status >= 500:
            raise Unavailable(
                "Bakong answered with a server error", endpoint=path, http_status=status
            )
        envelope = parse_envelope(
            decode_json(content, endpoint=path, http_status=status),
            endpoint=path,
            http_status=status,
        )
        if not 200 <= status < 300 and envelope.ok:
            raise BadResponse(
                "a success envelope with an error status", endpoint=path, http_status=status
            )
        return envelope

    # The call pipeline --------------------------------------------------------------------------

    async def _call(
        self,
        endpoint: Endpoint,
        payload: object,
        interpret: Callable[[Envelope, int], T],
        *,
        auth: _Auth,
        keys: Sequence[str],
        outcome: Callable[[T], str],
        retry: bool = True,
        budgeted: bool = False,
    ) -> T:
        """One logical call: rate limit, breaker, HTTP, interpretation, retries, log and metrics.
        `budgeted`: a payment check, each attempt of which takes a call from the budget."""
        body = encode_json(payload)
        started = time.perf_counter()
        attempts = 0

        async def attempt() -> T:
            nonlocal attempts
            attempts += 1
            if auth is _Auth.REQUIRED and self._token is None:
                raise Unauthorized(
                    "no Bakong token configured (KHQRPAY_BAKONG_TOKEN)", endpoint=endpoint.value
                )
            if auth is not _Auth.NONE:
                self.token_expiring_soon()
            if budgeted:
                await self._take_budget(endpoint)
            try:
                guarded = self._breaker.guard()
            except CircuitOpenError as exc:
                raise CircuitOpen(
                    "Bakong calls are paused after repeated failures",
                    retry_in_s=exc.retry_in_s,
                    endpoint=endpoint.value,
                ) from None
            with guarded:
                await self._limiter.acquire()
                status, headers, content = await self._post(endpoint, body, auth)
                return interpret(self._envelope_of(endpoint, status, headers, content), status)

        def on_retry(attempt_number: int, exc: BaseException, wait_s: float) -> None:
            kind = exc.kind if isinstance(exc, BakongError) else type(exc).__name__
            self._metrics.retries.labels(endpoint.label, kind).inc()
            self._log.warning(
                "bakong attempt failed, retrying",
                endpoint=endpoint.label,
                keys=len(keys),
                attempt=attempt_number,
                error=str(exc),
                wait_s=round(wait_s, 3),
            )

        try:
            result = await (self._retry.run(attempt, on_retry=on_retry) if retry else attempt())
        except BakongError as exc:
            self._finish(endpoint, keys, exc.kind, started, attempts, error=exc)
            raise
        self._finish(endpoint, keys, outcome(result), started, attempts)
        return result

    async def _take_budget(self, endpoint: Endpoint) -> None:
        if self._gate is None or take_prepaid(1):
            return
        priority = current_priority()
        if await self._gate.acquire(1, priority=priority) < 1:
            self._metrics.calls.labels(endpoint.label, OverBudget.kind).inc()
            raise OverBudget(
                f"no call left in the request budget for the {priority.value} this minute",
                endpoint=endpoint.value,
            )

    def _finish(
        self,
        endpoint: Endpoint,
        keys: Sequence[str],
        outcome: str,
        started: float,
        attempts: int,
        *,
        error: BakongError | None = None,
    ) -> None:
        elapsed_s = time.perf_counter() - started
        self._metrics.calls.labels(endpoint.label, outcome).inc()
        self._metrics.latency.labels(endpoint.label).observe(elapsed_s)
        fields: dict[str, object] = {
            "endpoint": endpoint.label,
            "keys": len(keys),
            "outcome": outcome,
            "latency_ms": round(elapsed_s * 1000, 1),
            "attempts": attempts,
        }
        if len(keys) == 1:
            fields["key"] = keys[0][:8]
        if error is None:
            self._log.info("bakong call", **fields)
        else:
            self._log.warning("bakong call", error=str(error), **fields)

    def _circuit_changed(self, state: CircuitState) -> None:
        self._metrics.set_circuit_state(state)
        log = self._log.info if state is CircuitState.CLOSED else self._log.warning
        log("bakong circuit breaker", state=state.name.lower())

    # Single checks ------------------------------------------------------------------------------

    async def _check(
        self,
        endpoint: Endpoint,
        payload: Mapping[str, object],
        key: str,
        *,
        hash_prefix: str | None = None,
    ) -> CheckResult:
        def interpret(envelope: Envelope, status: int) -> CheckResult:
            if envelope.ok:
                transaction = parse_transaction(
                    envelope.data,
                    where="data",
                    endpoint=endpoint.value,
                    received_ms=self._clock.now_ms(),
                )
                if hash_prefix is not None and not transaction.hash.startswith(hash_prefix):
                    raise MalformedTransaction(
                        "the transaction answers for another hash", endpoint=endpoint.value
                    )
                return Paid(transaction)
            message = envelope.response_message
            match envelope.error_code:
                case 1:
                    return NotFound(message)
                case 2:
                    return StaticQr(message)
                case 3:
                    return Failed(message)
            raise _error_for(envelope, endpoint, status)

        return await self._call(
            endpoint,
            payload,
            interpret,
            auth=_Auth.REQUIRED,
            keys=[key],
            outcome=_kind_of,
            budgeted=True,
        )

    async def check_md5(self, md5: str) -> CheckResult:
        """Check a payment by the md5 of its KHQR string (32 hex)."""
        key = _require_hex("md5", md5, _MD5, "32 hex digits")
        return await self._check(Endpoint.MD5, {"md5": key}, key)

    async def check_hash(self, tx_hash: str) -> CheckResult:
        """Check by Bakong's 64-hex transaction hash."""
        key = _require_hex("hash", tx_hash, FULL_HASH, "64 hex digits")
        return await self._check(Endpoint.HASH, {"hash": key}, key, hash_prefix=key)

    async def check_short_hash(
        self, short_hash: str, amount: Decimal, currency: Currency
    ) -> CheckResult:
        """Check by the first 8 hex digits of the hash, with the amount and currency paid."""
        key = _require_hex("short_hash", short_hash, SHORT_HASH, "8 hex digits")
        if not isinstance(currency, Currency):
            raise BakongInputError("currency", "must be a Currency")
        try:
            money = Money(amount, currency)
        except MoneyError as exc:
            raise BakongInputError("amount", str(exc)) from exc
        if money.minor == 0:
            raise BakongInputError("amount", "must be positive")
        payload = {"hash": key, "amount": money.amount, "currency": currency.value}
        return await self._check(Endpoint.SHORT_HASH, payload, key, hash_prefix=key)

    async def check_instruction_ref(self, instruction_ref: str) -> CheckResult:
        ref = _require_ref("instruction_ref", instruction_ref)
        return await self._check(Endpoint.INSTRUCTION_REF, {"instructionRef": ref}, ref)

    async def check_external_ref(self, external_ref: str) -> CheckResult:
        ref = _require_ref("external_ref", external_ref)
        return await self._check(Endpoint.EXTERNAL_REF, {"externalRef": ref}, ref)

    # List checks --------------------------------------------------------------------------------

    async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]:
        """Check many md5s, at most 50 per request; keys of the answer are lower-case.

        Per key: a result, or the error for that key (e.g. `Unavailable` for SERVICE_FAILED,
        `BadResponse` for a key the answer left out). If the list endpoint is blocked (403), single
        checks are used instead for `bakong_list_fallback_s`. Raises when no chunk could be asked.
        """
        keys = _normalize_keys("md5s", md5s, _MD5, "32 hex digits")
        return await self._check_list(Endpoint.MD5_LIST, "md5", keys, self.check_md5)

    async def check_hash_list(self, hashes: Iterable[str]) -> dict[str, CheckResult | BakongError]:
        """Like `check_md5_list`, by 64-hex transaction hashes."""
        keys = _normalize_keys("hashes", hashes, FULL_HASH, "64 hex digits")
        return await self._check_list(Endpoint.HASH_LIST, "hash", keys, self.check_hash)

    async def _check_list(
        self,
        endpoint: Endpoint,
        key_field: ListKey,
        keys: list[str],
        check_one: Callable[[str], Coroutine[object, object, CheckResult]],
    ) -> dict[str, CheckResult | BakongError]:
        results: dict[str, CheckResult | BakongError] = {}
        first_error: BakongError | None = None
        any_chunk_answered = False
        for start in range(0, len(keys), MAX_LIST_KEYS):
            chunk = keys[start : start + MAX_LIST_KEYS]
            try:
                answers = await self._check_chunk(endpoint, key_field, chunk, check_one)
            except Unauthorized:
                raise
            except BakongError as exc:
                first_error = first_error or exc
                answers = dict.fromkeys(chunk, exc)
            else:
                any_chunk_answered = True
            results.update(answers)
        if first_error is not None and not any_chunk_answered:
            raise first_error
        for answer in results.values():
            self._metrics.list_items.labels(endpoint.label, answer.kind).inc()
        return results

    async def _check_chunk(
        self,
        endpoint: Endpoint,
        key_field: ListKey,
        chunk: list[str],
        check_one: Callable[[str], Coroutine[object, object, CheckResult]],
    ) -> dict[str, CheckResult | BakongError]:
        if self._clock.now_ms() < self._list_blocked_until_ms.get(endpoint, 0):
            return await self._check_singly(chunk, check_one)

        def interpret(envelope: Envelope, status: int) -> dict[str, CheckResult | BakongError]:
            if not envelope.ok:
                raise _error_for(envelope, endpoint, status)
            return parse_list_items(
                envelope.data,
                requested=chunk,
                key_field=key_field,
                endpoint=endpoint.value,
                received_ms=self._clock.now_ms(),
            )

        try:
            return await self._call(
                endpoint,
                chunk,
                interpret,
                auth=_Auth.REQUIRED,
                keys=chunk,
                outcome=lambda _answers: "ok",
                budgeted=True,
            )
        except Blocked:
            until_ms = self._clock.now_ms() + round(self._settings.bakong_list_fallback_s * 1000)
            self._list_blocked_until_ms[endpoint] = until_ms
            if self._gate is not None:
                await self._gate.list_refused(until_ms=until_ms)
            self._log.warning(
                "bakong list endpoint blocked, using single checks",
                endpoint=endpoint.label,
                until_ms=until_ms,
            )
            return await self._check_singly(chunk, check_one)

    async def _check_singly(
        self, chunk: list[str], check_one: Callable[[str], Coroutine[object, object, CheckResult]]
    ) -> dict[str, CheckResult | BakongError]:
        # One call per key, all taken from the budget at once; the keys it has no call left for
        # are deferred (OverBudget), never dropped.
        granted = len(chunk)
        if self._gate is not None:
            granted = take_prepaid(len(chunk))
            if granted < len(chunk):
                granted += await self._gate.acquire(
                    len(chunk) - granted, priority=current_priority()
                )

        async def paid_for(key: str) -> CheckResult:
            with prepaid(1):  # in this key's own task (gather wraps each in one)
                return await check_one(key)

        # Concurrent, but still paced by the rate limiter and guarded by the breaker.
        answers = await asyncio.gather(
            *(paid_for(key) for key in chunk[:granted]), return_exceptions=True
        )
        results: dict[str, CheckResult | BakongError] = dict.fromkeys(
            chunk[granted:],
            OverBudget(
                f"single checks: no call left in the request budget for {len(chunk) - granted} "
                "QRs this minute"
            ),
        )
        for key, answer in zip(chunk[:granted], answers, strict=True):
            if isinstance(answer, Unauthorized) or (
                isinstance(answer, BaseException) and not isinstance(answer, BakongError)
            ):
                raise answer
            results[key] = answer
        return results

    # Account, deep link, token ------------------------------------------------------------------

    async def check_account(self, account_id: str) -> AccountStatus:
        """Whether a Bakong account (`name@bank`) exists (errorCode 11: not found, 12: invalid),
        with what the answer says of it (`accountStatus`, `canReceive`, `frozen`, `kycStatus`)."""
        if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id.strip()):
            raise BakongInputError("account_id", "must look like name@bank")
        account = account_id.strip()
        if len(account) > 32:
            raise BakongInputError("account_id", "must be at most 32 characters (KHQR limit)")
        states = {11: AccountState.NOT_FOUND, 12: AccountState.INVALID}

        def interpret(envelope: Envelope, status: int) -> AccountStatus:
            if envelope.ok:
                return _account_details(account, envelope)
            if envelope.error_code in states:
                return AccountStatus(
                    account, states[envelope.error_code], envelope.response_message
                )
            raise _error_for(envelope, Endpoint.ACCOUNT, status)

        return await self._call(
            Endpoint.ACCOUNT,
            {"accountId": account},
            interpret,
            auth=_Auth.OPTIONAL,
            keys=[account],
            outcome=lambda status: status.state.value,
        )

    async def generate_deeplink(self, qr: str, source_info: DeeplinkSource | None = None) -> str:
        """A short link that opens the customer's banking app on this KHQR."""
        if not isinstance(qr, str) or not qr.strip().startswith("000201"):
            raise BakongInputError("qr", "must be a KHQR string (starting with 000201)")
        qr = qr.strip()
        if len(qr) > 512 or not qr.isprintable():
            raise BakongInputError("qr", "must be at most 512 printable characters")
        payload: dict[str, object] = {"qr": qr}
        if source_info is not None:
            payload["sourceInfo"] = source_info.as_json()

        def interpret(envelope: Envelope, status: int) -> str:
            if not envelope.ok:
                raise _error_for(envelope, Endpoint.DEEPLINK, status)
            link = JsonFields(envelope.data, where="data", endpoint=Endpoint.DEEPLINK.value).text(
                "shortLink"
            )
            if urlsplit(link).scheme not in ("https", "http") or not urlsplit(link).netloc:
                raise BadResponse("data.shortLink is not a URL", endpoint=Endpoint.DEEPLINK.value)
            return link

        return await self._call(
            Endpoint.DEEPLINK,
            payload,
            interpret,
            auth=_Auth.NONE,
            keys=[qr],
            outcome=lambda _link: "ok",
        )

    async def renew_token(self, email: str, *, switch: bool = False) -> str:
        """Ask Bakong for a new token for the registered e-mail; with `switch`, use it from now on.

        Not retried: a repeated renewal could issue a second token after the first was lost.
        """
        if not isinstance(email, str) or not _EMAIL.match(email.strip()):
            raise BakongInputError("email", "must be an e-mail address")
        if len(email.strip()) > MAX_EMAIL_LENGTH:
            raise BakongInputError(
                "email", f"must be at most {MAX_EMAIL_LENGTH} characters (the Open API's limit)"
            )

        def interpret(envelope: Envelope, status: int) -> BakongToken:
            if not envelope.ok:
                raise _error_for(envelope, Endpoint.RENEW_TOKEN, status)
            text = JsonFields(
                envelope.data, where="data", endpoint=Endpoint.RENEW_TOKEN.value
            ).text("token")
            try:
                return BakongToken(text)
            except ValueError as exc:
                raise BadResponse(
                    f"data.token is not a usable token: {exc}", endpoint=Endpoint.RENEW_TOKEN.value
                ) from None

        token = await self._call(
            Endpoint.RENEW_TOKEN,
            {"email": email.strip()},
            interpret,
            auth=_Auth.NONE,
            keys=[],
            outcome=lambda _token: "ok",
            retry=False,
        )
        if switch:
            self._use_token(token)
        try:
            expires_at_ms: int | None = token.expires_at_ms()
        except TokenFormatError:
            expires_at_ms = None
        self._log.info("bakong token renewed", switched=switch, expires_at_ms=expires_at_ms)
        return token.reveal()


def _kind_of(result: CheckResult) -> str:
    return result.kind


def _account_details(account: str, envelope: Envelope) -> AccountStatus:
    """An existing account; `data` is null in older answers, an object of details in newer ones."""
    if envelope.data is None:
        return AccountStatus(account, AccountState.EXISTS, envelope.response_message)
    fields = JsonFields(envelope.data, where="data", endpoint=Endpoint.ACCOUNT.value)
    return AccountStatus(
        account,
        AccountState.EXISTS,
        envelope.response_message,
        account_status=fields.optional_text("accountStatus"),
        can_receive=fields.optional_flag("canReceive"),
        frozen=fields.optional_flag("frozen"),
        kyc_status=fields.optional_text("kycStatus"),
    )
