"""Webhook deliveries over HTTP: signed per Standard Webhooks, pinned to a checked address.

Each try: the URL and its host's address are checked (`addresses`), the body is signed with the
endpoint's secret (`webhook-id`, `webhook-timestamp`, `webhook-signature` headers; the
`standardwebhooks` package signs), and the POST goes to the checked address with the URL's host
in the `Host` header and, for https, as the TLS server name (certificates are checked against
it). Redirects are not followed; proxies from the environment are not used (they would connect
elsewhere). A try has one deadline for all of it, so a receiver that trickles its answer cannot
hold a delivery slot longer. Every endpoint has its own connection pool: a dead one cannot take
another's connections. A short answer is read to its end, so that its connection is kept for the
next try (without that, every try opened a new connection, and a TLS session for https).
"""

from __future__ import annotations

import asyncio
import math

import httpx
from standardwebhooks.webhooks import Webhook

from khqrpay.clock import Clock, ms_to_datetime
from khqrpay.outbound.addresses import (
    AddressPolicy,
    AddressRefused,
    IPAddress,
    Resolver,
    SystemResolver,
    WebhookUrl,
    checked_address,
    parse_webhook_url,
    refusal,
)
from khqrpay.outbound.port import SendOutcome, Stopwatch, WebhookRequest

USER_AGENT = "khqrpay-webhooks/0.1"
# A Retry-After longer than this is read as this (the retry window bounds it anyway).
MAX_RETRY_AFTER_S = 24 * 3600.0
# An answer's body up to this long is read (and dropped) to keep its connection; a longer one
# is not worth the reading: its connection is closed.
KEEP_ALIVE_MAX_BODY = 64 * 1024


def sign(request: WebhookRequest, *, now_ms: int) -> dict[str, str]:
    """The Standard Webhooks headers of one try of `request`, made at `now_ms`."""
    signature = Webhook(request.secret.reveal()).sign(
        msg_id=request.message_id, timestamp=ms_to_datetime(now_ms), data=request.body
    )
    return {
        "webhook-id": request.message_id,
        "webhook-timestamp": str(now_ms // 1000),
        "webhook-signature": signature,
    }


async def _read_short(response: httpx.Response) -> None:
    """Read an answer's body to its end if it is short (`KEEP_ALIVE_MAX_BODY`)."""
    if response.is_stream_consumed:
        return  # answered from memory (a test's transport): nothing to read
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read > KEEP_ALIVE_MAX_BODY:
            return


def retry_after_s(response: httpx.Response) -> float | None:
    """A 429 or 503's Retry-After in seconds (the delay form; a date is ignored)."""
    if response.status_code not in (429, 503):
        return None
    try:
        seconds = float(response.headers.get("retry-after", ""))
    except ValueError:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else None


def _describe(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, AddressRefused):
        return f"refused: {exc}"
    if isinstance(exc, httpx.ConnectError):
        return "could not connect"
    if isinstance(exc, OSError):
        return f"could not resolve the host: {exc.strerror or exc}"
    return f"failed: {type(exc).__name__}"


class HttpWebhookSender:
    """Sends webhook deliveries; `aclose()` (or `async with`) closes every endpoint's pool.
    `resolver`, `policy` and `transport` replace the system's resolver, the address rules and
    the network in tests."""

    def __init__(
        self,
        *,
        clock: Clock,
        timeout_s: float,
        connections_per_endpoint: int,
        resolver: Resolver | None = None,
        policy: AddressPolicy = refusal,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._clock = clock
        self._timeout_s = timeout_s
        self._limits = httpx.Limits(
            max_connections=connections_per_endpoint,
            max_keepalive_connections=connections_per_endpoint,
        )
        self._resolver = resolver or SystemResolver()
        self._policy = policy
        self._transport = transport
        self._clients: dict[int, httpx.AsyncClient] = {}

    async def __aenter__(self) -> HttpWebhookSender:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()

    def _client(self, endpoint_id: int) -> httpx.AsyncClient:
        client = self._clients.get(endpoint_id)
        if client is None:
            client = httpx.AsyncClient(
                timeout=self._timeout_s,
                limits=self._limits,
                follow_redirects=False,
                trust_env=False,
                transport=self._transport,
            )
            self._clients[endpoint_id] = client
        return client

    async def send(self, request: WebhookRequest) -> SendOutcome:
        stopwatch = Stopwatch()
        try:
            async with asyncio.timeout(self._timeout_s):
                url = parse_webhook_url(request.url)
                address = await checked_address(
                    url,
                    resolver=self._resolver,
                    allow_private=request.allow_private,
                    policy=self._policy,
                )
                response = await self._post(request, url, address)
        except (TimeoutError, httpx.HTTPError, OSError, AddressRefused) as exc:
            error = _describe(exc, self._timeout_s)
            return SendOutcome(delivered=False, duration_ms=stopwatch.ms(), error=error)
        code = response.status_code
        if 200 <= code < 300:
            return SendOutcome(delivered=True, duration_ms=stopwatch.ms(), status_code=code)
        return SendOutcome(
            delivered=False,
            duration_ms=stopwatch.ms(),
            status_code=code,
            error=f"answered HTTP {code}",
            retry_after_s=retry_after_s(response),
        )

    async def _post(
        self, request: WebhookRequest, url: WebhookUrl, address: IPAddress
    ) -> httpx.Response:
        original = httpx.URL(url.url)
        headers = {
            "host": original.netloc.decode("ascii"),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **sign(request, now_ms=self._clock.now_ms()),
        }
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        pinned = original.copy_with(host=str(address))
        client = self._client(request.endpoint_id)
        # Only the answer's status matters; its body is read to keep the connection (see above).
        async with client.stream(
            "POST",
            pinned,
            content=request.body.encode("utf-8"),
            headers=headers,
            extensions=extensions,
        ) as response:
            await _read_short(response)
            return response
