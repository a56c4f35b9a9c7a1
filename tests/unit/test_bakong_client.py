"""BakongClient against recorded envelopes served by an in-process httpx MockTransport.

Time is virtual: a FakeClock and a sleeper that advances it, so retries, Retry-After, the breaker
and the rate limiter are tested without waiting.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import random
import time
from collections.abc import Callable
from decimal import Decimal
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
import structlog
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from structlog.testing import capture_logs

from helpers.virtual_time import VirtualSleep
from khqrpay.bakong import (
    AccountState,
    BadResponse,
    BakongClient,
    BakongError,
    BakongInputError,
    BakongMetrics,
    Blocked,
    CircuitOpen,
    CircuitState,
    DeeplinkSource,
    Failed,
    MalformedTransaction,
    NotFound,
    OverBudget,
    Paid,
    RateLimited,
    Rejected,
    StaticQr,
    Unauthorized,
    Unavailable,
)
from khqrpay.bakong.budget import calling_as
from khqrpay.bakong.client import parse_retry_after
from khqrpay.clock import FakeClock, ms_to_datetime
from khqrpay.logging import configure_logging
from khqrpay.money import Currency
from khqrpay.orders.budget import CallPriority
from khqrpay.settings import Settings

DATA = Path(__file__).parent.parent / "data" / "bakong"
START_MS = 1_795_651_200_000
DAY_MS = 86_400_000
MD5 = "0123456789abcdef0123456789abcdef"
PAID_HASH = "8465d722d7d5065f2886f0a474a4d34dc6a7855355b611836f7b6111228893e9"
QR = (
    "00020101021229180014khqrpay_demo@devb5204599953031165802KH"
    "5917khqrpay demo shop6010Phnom Penh63041234"
)


def jwt(exp_ms: int) -> str:
    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256'})}.{part({'exp': exp_ms // 1000})}.c2lnbmF0dXJl"


TOKEN = jwt(START_MS + 30 * DAY_MS)

Reply = Callable[[httpx.Request], httpx.Response]


def recorded(name: str, status: int = 200) -> Reply:
    return lambda _request: httpx.Response(status, content=(DATA / name).read_bytes())


def answer(status: int, body: object = None, **headers: str) -> Reply:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return lambda _request: httpx.Response(status, content=content, headers=headers)


def envelope(data: object = None, code: int | None = None, message: str = "m") -> Reply:
    return answer(
        200,
        {
            "responseCode": 0 if code is None else 1,
            "responseMessage": message,
            "errorCode": code,
            "data": data,
        },
    )


def fails_with(error: type[httpx.TransportError]) -> Reply:
    def raise_it(request: httpx.Request) -> httpx.Response:
        raise error("simulated", request=request)

    return raise_it


def transaction(**changes: object) -> dict[str, object]:
    data = json.loads((DATA / "check_paid.json").read_text())["data"]
    return {**data, **changes}


class FakeBakong:
    """Replies per path in order; the last reply repeats. Records every request."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.replies: dict[str, list[Reply]] = {}

    def on(self, path: str, *replies: Reply) -> None:
        self.replies[path] = list(replies)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        queue = self.replies.get(request.url.path)
        if not queue:
            return httpx.Response(404, text="no such route")
        reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return reply(request)

    def paths(self) -> list[str]:
        return [request.url.path.rsplit("/", 1)[-1] for request in self.requests]

    def body(self, index: int = -1) -> object:
        return json.loads(self.requests[index].content)


@pytest.fixture(autouse=True)
def _restore_structlog():
    yield
    structlog.reset_defaults()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START_MS)


@pytest.fixture
def sleep(clock: FakeClock) -> VirtualSleep:
    return VirtualSleep(clock)


@pytest.fixture
def bakong() -> FakeBakong:
    return FakeBakong()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_client(
    bakong: FakeBakong, clock: FakeClock, sleep: VirtualSleep, registry: CollectorRegistry
) -> Callable[..., BakongClient]:
    metrics = BakongMetrics(registry)  # one set per registry, shared by this test's clients

    def make(gate: BudgetGate | None = None, **overrides: object) -> BakongClient:
        values: dict[str, object] = {
            "bakong_url": "https://bakong.test",
            "bakong_token": SecretStr(TOKEN),
            "bakong_rate_limit_per_s": 1000.0,
            **overrides,
        }
        settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
        return BakongClient(
            settings=settings,
            clock=clock,
            transport=httpx.MockTransport(bakong),
            sleep=sleep,
            rng=random.Random(3),
            metrics=metrics,
            gate=gate,
        )

    return make


@pytest.fixture
def client(make_client: Callable[..., BakongClient]) -> BakongClient:
    return make_client()


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# Results -----------------------------------------------------------------------------------------


async def test_a_paid_md5_is_a_transaction_and_the_request_is_as_documented(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_md5", recorded("check_paid.json"))
    result = await client.check_md5(MD5.upper())
    assert isinstance(result, Paid)
    assert result.transaction.hash == PAID_HASH
    assert result.transaction.amount == Decimal("1.0")
    [request] = bakong.requests
    assert request.method == "POST"
    assert str(request.url) == "https://bakong.test/v1/check_transaction_by_md5"
    assert json.loads(request.content) == {"md5": MD5}
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("khqrpay/")


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("check_not_found.json", NotFound),
        ("check_static_qr.json", StaticQr),
        ("check_failed.json", Failed),
    ],
)
async def test_unpaid_results_are_distinct_types_with_the_message(
    client: BakongClient, bakong: FakeBakong, name: str, kind: type
) -> None:
    bakong.on("/v1/check_transaction_by_md5", recorded(name))
    result = await client.check_md5(MD5)
    assert type(result) is kind
    assert result.message == json.loads((DATA / name).read_text())["responseMessage"]


async def test_string_amounts_and_float_dates_come_through_the_client(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_md5", recorded("check_paid_string_amount_float_dates.json"))
    result = await client.check_md5(MD5)
    assert isinstance(result, Paid)
    assert result.transaction.amount == Decimal("9800")
    assert result.transaction.created_ms == 1605774370608


@pytest.mark.parametrize("missing", ["hash", "amount"])
async def test_a_success_without_hash_or_amount_is_a_bad_response_never_paid(
    client: BakongClient, bakong: FakeBakong, missing: str
) -> None:
    data = transaction()
    del data[missing]
    bakong.on("/v1/check_transaction_by_md5", envelope(data))
    with pytest.raises(BadResponse, match=f"data.{missing}"):
        await client.check_md5(MD5)
    assert len(bakong.requests) == 1  # a contract violation is not retried


# Errors ------------------------------------------------------------------------------------------


async def test_http_401_is_unauthorized_and_never_retried(
    client: BakongClient, bakong: FakeBakong, sleep: VirtualSleep
) -> None:
    bakong.on("/v1/check_transaction_by_md5", recorded("unauthorized.json", 401))
    with pytest.raises(Unauthorized) as error:
        await client.check_md5(MD5)
    assert error.value.http_status == 401
    assert len(bakong.requests) == 1
    assert sleep.waits == []


async def test_error_code_6_with_http_200_is_unauthorized_too(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_md5", recorded("unauthorized.json"))
    with pytest.raises(Unauthorized) as error:
        await client.check_md5(MD5)
    assert error.value.error_code == 6


@pytest.mark.parametrize(
    ("reply", "error_code"),
    [
        (recorded("token_expired_403.json", 403), 6),
        (answer(403, {"error": "invalid_token", "message": "Token has expired"}), None),
        (answer(403, {"status": 403, "message": "JWT revoked"}), None),
        (answer(403, b"", **{"WWW-Authenticate": 'Bearer error="invalid_token"'}), None),
    ],
)
async def test_a_403_naming_the_token_is_unauthorized_not_the_firewall(
    client: BakongClient, bakong: FakeBakong, reply: Reply, error_code: int | None
) -> None:
    bakong.on("/v1/check_transaction_by_md5", reply)
    with pytest.raises(Unauthorized) as refused:
        await client.check_md5(MD5)
    assert (refused.value.http_status, refused.value.error_code) == (403, error_code)
    assert len(bakong.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        recorded("blocked.html", 403),
        answer(403, {"timestamp": 1, "status": 403, "error": "Forbidden", "path": "/v1/x"}),
        answer(403, b""),
    ],
)
async def test_a_403_that_does_not_name_the_token_is_the_firewall_and_not_retried(
    client: BakongClient, bakong: FakeBakong, reply: Reply
) -> None:
    bakong.on("/v1/check_transaction_by_md5", reply)
    with pytest.raises(Blocked) as blocked:
        await client.check_md5(MD5)
    assert blocked.value.http_status == 403
    assert len(bakong.requests) == 1


async def test_a_token_refused_on_the_md5_list_is_not_taken_for_a_blocked_list(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_md5_list", recorded("token_expired_403.json", 403))
    with pytest.raises(Unauthorized):
        await client.check_md5_list([MD5])
    assert bakong.paths() == ["check_transaction_by_md5_list"]  # no fallback to single checks


async def test_unreadable_transactions_for_some_qrs_never_open_the_circuit_for_all(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_max_retries=0, bakong_breaker_failures=2)
    bakong.on("/v1/check_transaction_by_md5", envelope(transaction(amount="ten")))
    for _ in range(5):
        with pytest.raises(MalformedTransaction):
            await client.check_md5(MD5)
    assert client.circuit_state is CircuitState.CLOSED
    bakong.on("/v1/check_transaction_by_md5", recorded("check_not_found.json"))
    assert isinstance(await client.check_md5(MD5), NotFound)


async def test_a_success_without_the_optional_fields_is_paid_and_stamped_when_received(
    client: BakongClient, bakong: FakeBakong, clock: FakeClock
) -> None:
    minimal = {"hash": PAID_HASH, "amount": 1, "currency": "USD"}
    bakong.on("/v1/check_transaction_by_md5", envelope(minimal, message="Success"))
    result = await client.check_md5(MD5)
    assert isinstance(result, Paid)
    paid = result.transaction
    assert (paid.amount, paid.to_account_id, paid.created_ms) == (Decimal(1), None, None)
    assert paid.received_ms == clock.now_ms()


async def test_the_timeout_bounds_the_whole_answer_not_each_read(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_max_retries=0, bakong_timeout_s=0.2)

    class Trickle(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[override]
            for _ in range(40):  # each read is quick; all of them take 2 s
                await asyncio.sleep(0.05)
                yield b" "

    bakong.on("/v1/check_transaction_by_md5", lambda _r: httpx.Response(200, stream=Trickle()))
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"no answer within 0\.2s"):
        await client.check_md5(MD5)
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("timeout_s", [0, 61])
def test_the_client_timeout_stays_within_what_the_service_is_used_with(timeout_s: float) -> None:
    with pytest.raises(ValueError, match="bakong_timeout_s"):
        Settings(_env_file=None, bakong_timeout_s=timeout_s)  # type: ignore[call-arg]


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_retried_with_backoff_then_unavailable(
    make_client: Callable[..., BakongClient],
    bakong: FakeBakong,
    sleep: VirtualSleep,
    status: int,
) -> None:
    client = make_client(bakong_max_retries=3, bakong_breaker_failures=10)
    bakong.on("/v1/check_transaction_by_md5", answer(status, b"busy"))
    with pytest.raises(Unavailable) as error:
        await client.check_md5(MD5)
    assert error.value.http_status == status
    assert len(bakong.requests) == 4
    assert len(sleep.waits) == 3
    assert all(0 <= wait <= 0.5 * 2**n for n, wait in enumerate(sleep.waits))


@pytest.mark.parametrize(
    "failure",
    [
        fails_with(httpx.ReadTimeout),
        fails_with(httpx.ConnectTimeout),
        fails_with(httpx.ConnectError),
        fails_with(httpx.ReadError),
        fails_with(httpx.RemoteProtocolError),
        answer(503, b"<html>busy</html>"),
    ],
)
async def test_transient_failures_recover_on_a_retry(
    client: BakongClient, bakong: FakeBakong, sleep: VirtualSleep, failure: Reply
) -> None:
    bakong.on("/v1/check_transaction_by_md5", failure, failure, recorded("check_not_found.json"))
    assert isinstance(await client.check_md5(MD5), NotFound)
    assert len(bakong.requests) == 3
    assert len(sleep.waits) == 2


async def test_a_timeout_is_unavailable_with_the_configured_timeout_in_the_message(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_max_retries=0, bakong_timeout_s=12)
    bakong.on("/v1/check_transaction_by_md5", fails_with(httpx.ReadTimeout))
    with pytest.raises(Unavailable, match="no answer within 12s"):
        await client.check_md5(MD5)


async def test_rate_limiting_waits_for_retry_after_in_seconds(
    client: BakongClient, bakong: FakeBakong, sleep: VirtualSleep
) -> None:
    bakong.on(
        "/v1/check_transaction_by_md5",
        answer(429, b"slow down", **{"Retry-After": "3"}),
        recorded("check_paid.json"),
    )
    assert isinstance(await client.check_md5(MD5), Paid)
    assert sleep.waits == [3.0]


async def test_rate_limiting_waits_for_retry_after_as_an_http_date(
    client: BakongClient, bakong: FakeBakong, sleep: VirtualSleep, clock: FakeClock
) -> None:
    when = format_datetime(ms_to_datetime(clock.now_ms() + 5000), usegmt=True)
    bakong.on(
        "/v1/check_transaction_by_md5",
        answer(429, b"", **{"Retry-After": when}),
        recorded("check_paid.json"),
    )
    assert isinstance(await client.check_md5(MD5), Paid)
    assert sleep.waits == [pytest.approx(5.0)]


async def test_a_retry_after_beyond_the_backoff_cap_is_handed_to_the_caller(
    client: BakongClient, bakong: FakeBakong, sleep: VirtualSleep
) -> None:
    bakong.on("/v1/check_transaction_by_md5", answer(429, b"", **{"Retry-After": "3600"}))
    with pytest.raises(RateLimited) as error:
        await client.check_md5(MD5)
    assert error.value.retry_after_s == 3600
    assert len(bakong.requests) == 1
    assert sleep.waits == []


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("120", 120.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date_and_garbage_is_ignored(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now_ms=START_MS) == seconds  # a past date means now


async def test_a_garbled_retry_after_falls_back_to_the_backoff(
    client: BakongClient, bakong: FakeBakong, sleep: VirtualSleep
) -> None:
    bakong.on(
        "/v1/check_transaction_by_md5",
        answer(429, b"", **{"Retry-After": "later"}),
        recorded("check_paid.json"),
    )
    assert isinstance(await client.check_md5(MD5), Paid)
    assert len(sleep.waits) == 1
    assert 0 <= sleep.waits[0] <= 0.5


@pytest.mark.parametrize(
    "reply",
    [
        answer(200, b"<html>captive portal</html>"),
        answer(200, {"status": "ok"}),
        answer(200, [1, 2]),
        envelope("not an object"),
        envelope(transaction(amount=[1])),
        answer(302, b"", Location="https://elsewhere.test"),
        answer(404, b"not found"),
        answer(400, {"responseCode": 0, "errorCode": None, "data": transaction()}),
    ],
)
async def test_answers_that_are_not_the_contract_are_bad_responses(
    client: BakongClient, bakong: FakeBakong, reply: Reply
) -> None:
    bakong.on("/v1/check_transaction_by_md5", reply)
    with pytest.raises(BadResponse):
        await client.check_md5(MD5)
    assert len(bakong.requests) == 1


async def test_an_oversized_body_is_refused_while_reading(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_md5", answer(200, b" " * (2 << 20)))
    with pytest.raises(BadResponse, match="larger than 1 MiB"):
        await client.check_md5(MD5)


@pytest.mark.parametrize(
    ("code", "error"), [(5, Rejected), (4, Rejected), (9, Unavailable), (7, Unavailable)]
)
async def test_other_error_codes_are_typed_errors_never_results(
    make_client: Callable[..., BakongClient], bakong: FakeBakong, code: int, error: type
) -> None:
    client = make_client(bakong_max_retries=0)
    bakong.on(
        "/v1/check_transaction_by_md5", envelope(code=code, message="Missing required fields.")
    )
    with pytest.raises(error) as raised:
        await client.check_md5(MD5)
    assert raised.value.error_code == code


async def test_without_a_token_authenticated_calls_fail_before_sending(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_token=SecretStr(""))
    with pytest.raises(Unauthorized, match="no Bakong token configured"):
        await client.check_md5(MD5)
    assert bakong.requests == []
    bakong.on("/v1/generate_deeplink_by_qr", recorded("deeplink.json"))
    assert (await client.generate_deeplink(QR)).startswith("https://")


# Circuit breaker and rate limit ------------------------------------------------------------------


async def test_the_breaker_opens_after_repeated_failures_and_half_opens_later(
    make_client: Callable[..., BakongClient],
    bakong: FakeBakong,
    clock: FakeClock,
    registry: CollectorRegistry,
) -> None:
    client = make_client(bakong_max_retries=0, bakong_breaker_failures=3, bakong_breaker_reset_s=30)
    bakong.on("/v1/check_transaction_by_md5", answer(503, b""))
    for _ in range(3):
        with pytest.raises(Unavailable):
            await client.check_md5(MD5)
    assert client.circuit_state is CircuitState.OPEN
    assert metric(registry, "khqrpay_bakong_circuit_state") == 2
    with pytest.raises(CircuitOpen) as refused:
        await client.check_md5(MD5)
    assert refused.value.retry_in_s == 30
    assert len(bakong.requests) == 3  # refused locally, nothing sent
    clock.advance(seconds=30)
    bakong.on("/v1/check_transaction_by_md5", recorded("check_not_found.json"))
    assert isinstance(await client.check_md5(MD5), NotFound)
    assert client.circuit_state is CircuitState.CLOSED
    assert metric(registry, "khqrpay_bakong_circuit_state") == 0


async def test_an_open_circuit_is_not_retried_inside_a_call(
    make_client: Callable[..., BakongClient], bakong: FakeBakong, sleep: VirtualSleep
) -> None:
    client = make_client(bakong_max_retries=5, bakong_breaker_failures=2)
    bakong.on("/v1/check_transaction_by_md5", answer(500, b""))
    with pytest.raises(CircuitOpen):
        await client.check_md5(MD5)
    assert len(bakong.requests) == 2
    assert len(sleep.waits) == 2


async def test_results_and_unauthorized_do_not_count_against_the_service(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_max_retries=0, bakong_breaker_failures=2)
    bakong.on(
        "/v1/check_transaction_by_md5",
        answer(503, b""),
        recorded("unauthorized.json", 401),
        answer(503, b""),
        recorded("check_not_found.json"),
        answer(503, b""),
    )
    outcomes = []
    for _ in range(5):
        try:
            outcomes.append(type(await client.check_md5(MD5)).__name__)
        except BakongError as exc:
            outcomes.append(type(exc).__name__)
    assert outcomes == ["Unavailable", "Unauthorized", "Unavailable", "NotFound", "Unavailable"]
    assert client.circuit_state is CircuitState.CLOSED


async def test_requests_are_paced_by_the_client_side_rate_limit(
    make_client: Callable[..., BakongClient],
    bakong: FakeBakong,
    clock: FakeClock,
) -> None:
    client = make_client(bakong_rate_limit_per_s=2.0)
    sent_at: list[int] = []

    def stamp(request: httpx.Request) -> httpx.Response:
        sent_at.append(clock.now_ms() - START_MS)
        return recorded("check_not_found.json")(request)

    bakong.on("/v1/check_transaction_by_md5", stamp)
    for _ in range(6):
        await client.check_md5(MD5)
    assert sent_at == [0, 0, 500, 1000, 1500, 2000]


# Lists -------------------------------------------------------------------------------------------


def list_answer(key_field: str = "md5", status: str = "NOT_FOUND") -> Reply:
    def reply(request: httpx.Request) -> httpx.Response:
        keys = json.loads(request.content)
        items = [{key_field: key, "status": status, "message": "m", "data": None} for key in keys]
        return envelope(items)(request)

    return reply


def md5s(count: int) -> list[str]:
    return [f"{i:032x}" for i in range(count)]


async def test_md5_lists_are_sent_as_bare_arrays_in_chunks_of_at_most_50(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_md5_list", list_answer())
    keys = md5s(120)
    results = await client.check_md5_list([*keys, keys[0].upper()])  # a repeat is asked once
    assert list(results) == keys
    assert all(isinstance(result, NotFound) for result in results.values())
    assert [len(bakong.body(i)) for i in range(3)] == [50, 50, 20]  # type: ignore[arg-type]
    assert bakong.body(0) == keys[:50]
    assert await client.check_md5_list([]) == {}
    assert len(bakong.requests) == 3


async def test_the_recorded_bulk_answer_through_the_client(
    client: BakongClient, bakong: FakeBakong, registry: CollectorRegistry
) -> None:
    bakong.on("/v1/check_transaction_by_md5_list", recorded("md5_list_mixed.json"))
    keys = [f"0123456789abcdef0123456789abcd{i:02d}" for i in range(7)]
    results = await client.check_md5_list(keys)
    kinds = [type(results[key]).__name__ for key in keys]
    assert kinds == ["Paid", "Paid", "Paid", "NotFound", "StaticQr", "Failed", "Unavailable"]
    label = {"endpoint": "check_transaction_by_md5_list"}
    assert metric(registry, "khqrpay_bakong_list_items_total", outcome="paid", **label) == 3
    assert metric(registry, "khqrpay_bakong_list_items_total", outcome="unavailable", **label) == 1


async def test_a_blocked_md5_list_falls_back_to_single_checks_for_a_while(
    make_client: Callable[..., BakongClient], bakong: FakeBakong, clock: FakeClock
) -> None:
    client = make_client(bakong_list_fallback_s=600)
    bakong.on("/v1/check_transaction_by_md5_list", recorded("blocked.html", 403))
    bakong.on(
        "/v1/check_transaction_by_md5",
        lambda request: (
            recorded("check_paid.json")(request)
            if json.loads(request.content)["md5"] == md5s(3)[1]
            else recorded("check_not_found.json")(request)
        ),
    )
    results = await client.check_md5_list(md5s(3))
    assert [type(r).__name__ for r in results.values()] == ["NotFound", "Paid", "NotFound"]
    assert bakong.paths().count("check_transaction_by_md5_list") == 1
    assert bakong.paths().count("check_transaction_by_md5") == 3

    clock.advance(seconds=599)  # remembered: the list endpoint is not asked again yet
    await client.check_md5_list(md5s(2))
    assert bakong.paths().count("check_transaction_by_md5_list") == 1

    clock.advance(seconds=1)  # later it is tried again, and used when it works
    bakong.on("/v1/check_transaction_by_md5_list", list_answer())
    before = len(bakong.requests)
    await client.check_md5_list(md5s(2))
    assert bakong.paths()[before:] == ["check_transaction_by_md5_list"]


async def test_a_failed_chunk_gives_its_keys_the_error_while_others_answer(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_max_retries=0, bakong_breaker_failures=10)
    bakong.on("/v1/check_transaction_by_md5_list", list_answer(), answer(503, b""), list_answer())
    results = await client.check_md5_list(md5s(150))
    errors = [key for key, result in results.items() if isinstance(result, Unavailable)]
    assert errors == md5s(150)[50:100]
    assert all(isinstance(results[key], NotFound) for key in md5s(150)[:50] + md5s(150)[100:])


async def test_a_list_call_that_gets_no_answer_at_all_raises(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_max_retries=0, bakong_breaker_failures=10)
    bakong.on("/v1/check_transaction_by_md5_list", answer(503, b""))
    with pytest.raises(Unavailable):
        await client.check_md5_list(md5s(60))
    bakong.on("/v1/check_transaction_by_md5_list", recorded("unauthorized.json", 401))
    with pytest.raises(Unauthorized):
        await client.check_md5_list(md5s(60))
    assert len(bakong.requests) == 3  # Unauthorized stops at the first chunk


async def test_unauthorized_during_the_fallback_raises(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_md5_list", recorded("blocked.html", 403))
    bakong.on("/v1/check_transaction_by_md5", recorded("unauthorized.json", 401))
    with pytest.raises(Unauthorized):
        await client.check_md5_list(md5s(2))


async def test_hash_lists_use_their_endpoint_and_check_the_hashes(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_hash_list", recorded("hash_list.json"))
    results = await client.check_hash_list([PAID_HASH, "F" * 64])
    assert isinstance(results[PAID_HASH], Paid)
    assert isinstance(results["f" * 64], NotFound)
    assert bakong.body() == [PAID_HASH, "f" * 64]


# The other endpoints -----------------------------------------------------------------------------


async def test_check_by_hash_refuses_an_answer_for_another_hash(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_hash", recorded("check_paid.json"))
    assert isinstance(await client.check_hash(PAID_HASH), Paid)
    assert bakong.body() == {"hash": PAID_HASH}
    with pytest.raises(BadResponse, match="another hash"):
        await client.check_hash("a" * 64)


async def test_check_by_short_hash_sends_the_amount_as_an_exact_number(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_transaction_by_short_hash", recorded("check_paid.json"))
    result = await client.check_short_hash("8465D722", Decimal("1.50"), Currency.USD)
    assert isinstance(result, Paid)
    assert bakong.requests[-1].content == b'{"hash":"8465d722","amount":1.50,"currency":"USD"}'
    with pytest.raises(BadResponse, match="another hash"):
        await client.check_short_hash("00000000", Decimal("1"), Currency.USD)


@pytest.mark.parametrize(
    ("method", "path", "field"),
    [
        ("check_instruction_ref", "check_transaction_by_instruction_ref", "instructionRef"),
        ("check_external_ref", "check_transaction_by_external_ref", "externalRef"),
    ],
)
async def test_checks_by_reference(
    client: BakongClient, bakong: FakeBakong, method: str, path: str, field: str
) -> None:
    bakong.on(f"/v1/{path}", recorded("check_paid.json"))
    assert isinstance(await getattr(client, method)(" 100FT38906478429 "), Paid)
    assert bakong.body() == {field: "100FT38906478429"}


@pytest.mark.parametrize(
    ("name", "state"),
    [
        ("account_exists.json", AccountState.EXISTS),
        ("account_not_found.json", AccountState.NOT_FOUND),
        ("account_invalid.json", AccountState.INVALID),
    ],
)
async def test_account_checks(
    client: BakongClient, bakong: FakeBakong, name: str, state: AccountState
) -> None:
    bakong.on("/v1/check_bakong_account", recorded(name))
    status = await client.check_account("shop@devb")
    assert status.state is state
    assert status.account_id == "shop@devb"
    assert status.exists is (state is AccountState.EXISTS)
    assert bakong.body() == {"accountId": "shop@devb"}
    assert bakong.requests[-1].headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("details", "problems"),
    [
        ({"accountStatus": "ACTIVE", "canReceive": True, "frozen": False}, ()),
        ({"canReceive": False}, ("Bakong says it cannot receive payments (canReceive false)",)),
        ({"frozen": True, "canReceive": True}, ("the account is frozen",)),
        ({"accountStatus": "CLOSED"}, ("its status is CLOSED",)),
    ],
)
async def test_the_account_check_reads_whether_the_account_can_receive(
    client: BakongClient, bakong: FakeBakong, details: dict[str, object], problems: tuple[str]
) -> None:
    bakong.on("/v1/check_bakong_account", envelope(details, message="Account ID exists"))
    status = await client.check_account("shop@devb")
    assert status.exists
    assert status.receiving_problems() == problems


async def test_the_recorded_account_details_and_the_remarks_that_do_not_refuse(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_bakong_account", recorded("account_details.json"))
    status = await client.check_account("shop@devb")
    assert (status.account_status, status.can_receive, status.frozen) == ("ACTIVE", True, False)
    assert status.kyc_status == "FULL"
    assert status.receiving_problems() == ()
    assert status.remarks() == ("its KYC status is 'FULL'",)
    bakong.on("/v1/check_bakong_account", envelope({"accountStatus": "PENDING"}))
    odd = await client.check_account("shop@devb")
    assert odd.receiving_problems() == ()
    assert "does not document" in odd.remarks()[0]


async def test_account_details_of_the_wrong_type_are_a_bad_response(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/check_bakong_account", envelope({"canReceive": "yes"}))
    with pytest.raises(BadResponse, match="canReceive"):
        await client.check_account("shop@devb")


async def test_deep_links_send_the_qr_and_source_info_without_a_token(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/generate_deeplink_by_qr", recorded("deeplink.json"))
    source = DeeplinkSource("https://shop.test/icon.png", "Shop", "shopapp://paid")
    link = await client.generate_deeplink(QR, source)
    assert link == "https://bakong.page.link/NkVHZvNwz9oN2xcX9"
    assert bakong.body() == {
        "qr": QR,
        "sourceInfo": {
            "appIconUrl": "https://shop.test/icon.png",
            "appName": "Shop",
            "appDeepLinkCallback": "shopapp://paid",
        },
    }
    assert "Authorization" not in bakong.requests[-1].headers
    await client.generate_deeplink(QR)
    assert bakong.body() == {"qr": QR}
    bakong.on("/v1/generate_deeplink_by_qr", envelope({"shortLink": "javascript:alert(1)"}))
    with pytest.raises(BadResponse, match="shortLink"):
        await client.generate_deeplink(QR)


async def test_renew_token_returns_it_and_can_switch_to_it(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/renew_token", recorded("renew_token.json"))
    new_token = json.loads((DATA / "renew_token.json").read_text())["data"]["token"]
    assert await client.renew_token("owner@shop.test") == new_token
    assert bakong.body() == {"email": "owner@shop.test"}
    assert "Authorization" not in bakong.requests[-1].headers
    assert client.token_expires_at_ms() == START_MS + 30 * DAY_MS  # not switched
    thirty = "owner.of.the.shop@kampot.test"
    assert len(f"{thirty}h") == 30  # the Open API's longest e-mail is sent
    await client.renew_token(f" {thirty}h ")
    assert bakong.body() == {"email": f"{thirty}h"}
    with pytest.raises(BakongInputError, match="at most 30"):
        await client.renew_token(f"{thirty}hh")

    assert await client.renew_token("owner@shop.test", switch=True) == new_token
    assert client.token_expires_at_ms() == 1803427200000
    bakong.on("/v1/check_transaction_by_md5", recorded("check_not_found.json"))
    await client.check_md5(MD5)
    assert bakong.requests[-1].headers["Authorization"] == f"Bearer {new_token}"


async def test_renew_token_is_never_retried_and_maps_not_registered(
    client: BakongClient, bakong: FakeBakong
) -> None:
    bakong.on("/v1/renew_token", answer(503, b""))
    with pytest.raises(Unavailable):
        await client.renew_token("owner@shop.test")
    assert len(bakong.requests) == 1
    bakong.on("/v1/renew_token", recorded("renew_not_registered.json"))
    with pytest.raises(Rejected, match="Not registered yet") as error:
        await client.renew_token("owner@shop.test")
    assert error.value.error_code == 10


# Input validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda c: c.check_md5("xyz"), "md5"),
        (lambda c: c.check_md5(MD5 + "0"), "md5"),
        (lambda c: c.check_md5(123), "md5"),
        (lambda c: c.check_hash("ab" * 16), "hash"),
        (lambda c: c.check_short_hash("8465d72", Decimal(1), Currency.USD), "short_hash"),
        (lambda c: c.check_short_hash("8465d722", 1.5, Currency.USD), "amount"),
        (lambda c: c.check_short_hash("8465d722", Decimal("1.005"), Currency.USD), "amount"),
        (lambda c: c.check_short_hash("8465d722", Decimal("0"), Currency.USD), "amount"),
        (lambda c: c.check_short_hash("8465d722", Decimal(1), "USD"), "currency"),
        (lambda c: c.check_instruction_ref("  "), "instruction_ref"),
        (lambda c: c.check_external_ref("x" * 129), "external_ref"),
        (lambda c: c.check_md5_list(MD5), "md5s"),
        (lambda c: c.check_md5_list([MD5, "nope"]), "md5s"),
        (lambda c: c.check_hash_list(["a" * 63]), "hashes"),
        (lambda c: c.check_account("no-at-sign"), "account_id"),
        (lambda c: c.check_account("a" * 30 + "@devb"), "account_id"),
        (lambda c: c.generate_deeplink("hello"), "qr"),
        (lambda c: c.generate_deeplink("000201" + "1" * 600), "qr"),
        (lambda c: c.renew_token("not an email"), "email"),
        # The Open API takes an e-mail of at most 30 characters.
        (lambda c: c.renew_token("a.very.long.name@shop-example.com"), "email"),
    ],
)
async def test_invalid_input_is_refused_before_anything_is_sent(
    client: BakongClient, bakong: FakeBakong, call: Callable[[BakongClient], object], field: str
) -> None:
    with pytest.raises(BakongInputError) as error:
        await call(client)  # type: ignore[misc]
    assert error.value.field == field
    assert bakong.requests == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("ftp://icon", "Shop", "app://x"), "app_icon_url"),
        (("https://i.test/a.png", " ", "app://x"), "app_name"),
        (("https://i.test/a.png", "Shop", "no scheme"), "app_deeplink_callback"),
    ],
)
def test_deeplink_source_info_is_validated(args: tuple[str, str, str], field: str) -> None:
    with pytest.raises(BakongInputError) as error:
        DeeplinkSource(*args)
    assert error.value.field == field


def test_settings_the_client_cannot_work_with_are_refused(
    make_client: Callable[..., BakongClient],
) -> None:
    with pytest.raises(BakongInputError, match="bakong_url"):
        make_client(bakong_url="api-bakong.nbc.gov.kh")
    with pytest.raises(BakongInputError, match="bakong_backoff_max_s"):
        make_client(bakong_backoff_base_s=5, bakong_backoff_max_s=1)


async def test_a_loopback_base_url_with_a_path_prefix_is_honoured(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_url="http://127.0.0.1:8700/bakong")
    bakong.on("/bakong/v1/check_transaction_by_md5", recorded("check_not_found.json"))
    async with client:
        assert isinstance(await client.check_md5(MD5), NotFound)
    assert str(bakong.requests[0].url) == "http://127.0.0.1:8700/bakong/v1/check_transaction_by_md5"


# Token expiry ------------------------------------------------------------------------------------


async def test_expiry_is_warned_once_per_threshold_not_on_every_call(
    make_client: Callable[..., BakongClient], bakong: FakeBakong, clock: FakeClock
) -> None:
    client = make_client(
        bakong_token=SecretStr(jwt(START_MS + 5 * DAY_MS)), bakong_token_warn_days=7
    )
    bakong.on("/v1/check_transaction_by_md5", recorded("check_not_found.json"))
    with capture_logs() as logs:
        for _ in range(3):
            await client.check_md5(MD5)
        clock.advance(ms=4 * DAY_MS + 1)  # under a day left
        for _ in range(3):
            await client.check_md5(MD5)
        clock.advance(ms=DAY_MS)  # expired
        for _ in range(3):
            await client.check_md5(MD5)
    warnings = [(e["log_level"], e["event"]) for e in logs if "token" in e["event"]]
    assert warnings == [
        ("warning", "bakong token expires soon"),
        ("warning", "bakong token expires soon"),
        ("error", "bakong token expired"),
    ]
    assert client.token_expiring_soon() is True


def test_expiring_soon_compares_with_the_warn_days(
    make_client: Callable[..., BakongClient],
) -> None:
    client = make_client(bakong_token_warn_days=7)  # the token has 30 days
    assert client.token_expires_at_ms() == START_MS + 30 * DAY_MS
    assert client.token_expiring_soon(START_MS) is False
    assert client.token_expiring_soon(START_MS + 23 * DAY_MS) is True


def test_an_unreadable_token_expiry_is_warned_and_reported_as_unknown(
    make_client: Callable[..., BakongClient], registry: CollectorRegistry
) -> None:
    with capture_logs() as logs:
        client = make_client(bakong_token=SecretStr("opaque-token-without-claims"))
    assert client.token_expires_at_ms() is None
    assert client.token_expiring_soon() is False
    assert [e["event"] for e in logs] == ["bakong token expiry unreadable"]
    assert "opaque-token-without-claims" not in repr(logs)


# Secrets, logs and metrics -----------------------------------------------------------------------


RENEWED = json.loads((DATA / "renew_token.json").read_text())["data"]["token"]


async def renew_then_fail(client: BakongClient, bakong: FakeBakong) -> list[BakongError]:
    """Renew (and switch) the token, then meet 401, a connection error, 503s, an open circuit."""
    bakong.on("/v1/renew_token", recorded("renew_token.json"))
    bakong.on(
        "/v1/check_transaction_by_md5",
        recorded("unauthorized.json", 401),
        fails_with(httpx.ConnectError),
        answer(503, b""),
    )
    await client.renew_token("owner@shop.test", switch=True)
    errors: list[BakongError] = []
    for _ in range(3):
        try:
            await client.check_md5(MD5)
        except BakongError as exc:
            errors.append(exc)
    await client.aclose()
    assert [type(e).__name__ for e in errors] == ["Unauthorized", "Unavailable", "CircuitOpen"]
    return errors


async def test_the_token_never_appears_in_log_events_errors_or_reprs(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(bakong_max_retries=1, bakong_breaker_failures=2)
    with capture_logs() as logs:  # the raw events, before any redaction
        errors = await renew_then_fail(client, bakong)
    assert any(e["event"] == "bakong call" for e in logs)
    settings = Settings(_env_file=None, bakong_token=SecretStr(TOKEN))  # type: ignore[call-arg]
    texts = [repr(settings), str(settings), repr(client), str(client), repr(logs)]
    texts += [f"{e!s} {e!r} {e.__cause__!r} {e.__cause__!s}" for e in errors]
    for secret in (TOKEN, RENEWED):
        assert all(secret not in text for text in texts)


async def test_the_token_never_appears_in_rendered_log_output(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", json_output=True, stream=stream)
    await renew_then_fail(make_client(bakong_max_retries=1, bakong_breaker_failures=2), bakong)
    output = stream.getvalue()
    assert output.count("bakong call") == 4
    assert TOKEN not in output
    assert RENEWED not in output


async def test_every_call_is_logged_and_counted(
    client: BakongClient, bakong: FakeBakong, registry: CollectorRegistry
) -> None:
    bakong.on("/v1/check_transaction_by_md5", answer(503, b""), recorded("check_paid.json"))
    with capture_logs() as logs:
        await client.check_md5(MD5)
    retry, call = logs
    assert retry["event"] == "bakong attempt failed, retrying"
    assert retry["attempt"] == 1
    assert call["event"] == "bakong call"
    assert call["endpoint"] == "check_transaction_by_md5"
    assert call["key"] == MD5[:8]
    assert call["keys"] == 1
    assert call["outcome"] == "paid"
    assert call["attempts"] == 2
    assert call["latency_ms"] >= 0
    label = {"endpoint": "check_transaction_by_md5"}
    assert metric(registry, "khqrpay_bakong_calls_total", outcome="paid", **label) == 1
    assert metric(registry, "khqrpay_bakong_retries_total", error="unavailable", **label) == 1
    assert metric(registry, "khqrpay_bakong_call_seconds_count", **label) == 1
    assert (
        metric(registry, "khqrpay_bakong_token_expiry_timestamp_seconds")
        == (START_MS + 30 * DAY_MS) / 1000
    )


# The request budget ------------------------------------------------------------------------------


class BudgetGate:
    """A budget of `left` calls, recording who asked for how many and the list refusals."""

    def __init__(self, left: int) -> None:
        self.left = left
        self.asked: list[tuple[int, CallPriority]] = []
        self.list_refused_until: list[int] = []

    async def acquire(self, calls: int, *, priority: CallPriority) -> int:
        self.asked.append((calls, priority))
        granted = min(calls, self.left)
        self.left -= granted
        return granted

    async def list_refused(self, *, until_ms: int) -> None:
        self.list_refused_until.append(until_ms)


async def test_every_attempt_of_a_payment_check_takes_a_call_and_none_goes_out_without_one(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    gate = BudgetGate(left=3)
    client = make_client(gate=gate, bakong_max_retries=3, bakong_breaker_failures=10)
    bakong.on("/v1/check_transaction_by_md5_list", answer(503, b""), list_answer())
    await client.check_md5_list(md5s(2))  # a failed attempt and its retry: two calls
    assert len(bakong.requests) == 2
    bakong.on("/v1/check_transaction_by_hash", recorded("check_not_found.json"))
    with calling_as(CallPriority.STAFF):
        await client.check_hash("a" * 64)
    with pytest.raises(OverBudget):
        await client.check_md5(md5s(1)[0])
    assert len(bakong.requests) == 3  # the refused check sent nothing
    assert gate.asked == [
        (1, CallPriority.VERIFIER),
        (1, CallPriority.VERIFIER),
        (1, CallPriority.STAFF),
        (1, CallPriority.VERIFIER),
    ]


async def test_an_over_budget_list_call_gives_each_key_the_refusal_and_the_breaker_stays_shut(
    make_client: Callable[..., BakongClient], bakong: FakeBakong
) -> None:
    client = make_client(gate=BudgetGate(left=1), bakong_breaker_failures=1)
    bakong.on("/v1/check_transaction_by_md5_list", list_answer())
    results = await client.check_md5_list(md5s(60))  # two chunks, one call left
    assert [type(results[key]).__name__ for key in md5s(60)] == ["NotFound"] * 50 + [
        "OverBudget"
    ] * 10
    assert client.circuit_state is CircuitState.CLOSED


async def test_single_checks_take_the_chunks_calls_at_once_and_defer_the_keys_left_over(
    make_client: Callable[..., BakongClient], bakong: FakeBakong, clock: FakeClock
) -> None:
    gate = BudgetGate(left=4)
    client = make_client(gate=gate, bakong_list_fallback_s=600)
    bakong.on("/v1/check_transaction_by_md5_list", recorded("blocked.html", 403))
    bakong.on("/v1/check_transaction_by_md5", recorded("check_not_found.json"))
    with calling_as(CallPriority.CUSTOMER):
        results = await client.check_md5_list(md5s(5))
    # The refused list call took one; the three left went to the first three keys.
    assert bakong.paths().count("check_transaction_by_md5") == 3
    assert [type(results[key]).__name__ for key in md5s(5)] == ["NotFound"] * 3 + ["OverBudget"] * 2
    assert gate.asked == [(1, CallPriority.CUSTOMER), (5, CallPriority.CUSTOMER)]
    assert gate.list_refused_until == [clock.now_ms() + 600_000]
