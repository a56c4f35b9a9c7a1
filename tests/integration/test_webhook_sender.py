"""One webhook try over real HTTP (receivers on loopback): Standard Webhooks signatures that the
specification's verifier accepts, the guard against server-side request forgery (with a fake
resolver), the pinned connection, no redirects, one deadline per try."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from helpers.receivers import WebhookReceiver, serve
from khqrpay.clock import SystemClock
from khqrpay.outbound.addresses import IPAddress, refusal
from khqrpay.outbound.port import WebhookRequest
from khqrpay.outbound.webhook_http import HttpWebhookSender
from khqrpay.services.webhooks import new_secret

SECRET = new_secret()
BODY = json.dumps({"type": "order.completed", "data": {"order": {"id": 7, "total": "3.00"}}})


class FakeResolver:
    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        self.asked.append(host)
        return [ipaddress.ip_address(self.answers.pop(0))]


def _request(url: str, *, allow_private: bool = True) -> WebhookRequest:
    return WebhookRequest(
        endpoint_id=1,
        url=url,
        secret=SECRET,
        allow_private=allow_private,
        message_id="msg_2Zx9TestMessage",
        body=BODY,
    )


SenderFactory = Callable[..., HttpWebhookSender]


@pytest.fixture
async def make_sender() -> AsyncIterator[SenderFactory]:
    made: list[HttpWebhookSender] = []

    def make(**options: object) -> HttpWebhookSender:
        settings: dict[str, object] = {
            "clock": SystemClock(),
            "timeout_s": 5.0,
            "connections_per_endpoint": 2,
        }
        made.append(HttpWebhookSender(**(settings | options)))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for sender in made:
        await sender.aclose()


async def test_a_delivery_verifies_with_the_standard_webhooks_verifier(
    make_sender: SenderFactory,
) -> None:
    receiver = WebhookReceiver()
    with serve(receiver) as url:
        outcome = await make_sender().send(_request(f"{url}/hooks"))
    assert (outcome.delivered, outcome.status_code, outcome.error) == (True, 200, None)
    (got,) = receiver.requests
    assert Webhook(SECRET.reveal()).verify(got.body, got.headers) == json.loads(BODY)
    assert got.headers["webhook-id"] == "msg_2Zx9TestMessage"
    assert got.headers["content-type"] == "application/json"
    assert got.body.decode() == BODY
    # Another secret, or a body changed on the way, does not verify.
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret().reveal()).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET.reveal()).verify(got.body.replace(b"3.00", b"0.01"), got.headers)


async def test_tries_to_an_endpoint_reuse_its_connection(make_sender: SenderFactory) -> None:
    receiver = WebhookReceiver()
    sender = make_sender()
    with serve(receiver) as url:
        for _ in range(3):
            assert (await sender.send(_request(f"{url}/hooks"))).delivered
    assert len({request.client for request in receiver.requests}) == 1


async def test_a_host_resolving_to_a_private_address_is_never_connected_to(
    make_sender: SenderFactory,
) -> None:
    receiver = WebhookReceiver()
    with serve(receiver) as url:
        port = httpx.URL(url).port
        resolver = FakeResolver("127.0.0.1")
        sender = make_sender(resolver=resolver)
        outcome = await sender.send(
            _request(f"http://hooks.example.com:{port}/in", allow_private=False)
        )
    assert not outcome.delivered
    assert outcome.status_code is None
    assert outcome.error == "refused: hooks.example.com (127.0.0.1) is a loopback address"
    assert resolver.asked == ["hooks.example.com"]
    assert receiver.requests == []


def _public_except_127_0_0_2(address: IPAddress) -> str | None:
    """The real rules, with 127.0.0.2 standing for a public address (no test leaves this
    machine)."""
    return None if str(address) == "127.0.0.2" else refusal(address)


async def test_the_connection_goes_to_the_address_checked_though_dns_then_changes(
    make_sender: SenderFactory,
) -> None:
    public, decoy = WebhookReceiver(), WebhookReceiver()
    with serve(public, host="127.0.0.2") as url:
        port = httpx.URL(url).port
        assert port is not None
        with serve(decoy, host="127.0.0.1", port=port):
            # DNS answers the "public" address, then (rebinding) a loopback one.
            resolver = FakeResolver("127.0.0.2", "127.0.0.1")
            sender = make_sender(resolver=resolver, policy=_public_except_127_0_0_2)
            hook = f"http://hooks.example.com:{port}/in"
            first = await sender.send(_request(hook, allow_private=False))
            second = await sender.send(_request(hook, allow_private=False))
    assert first.delivered
    assert resolver.asked == ["hooks.example.com", "hooks.example.com"]  # once a try
    (got,) = public.requests
    assert got.headers["host"] == f"hooks.example.com:{port}"
    assert not second.delivered
    assert second.error == "refused: hooks.example.com (127.0.0.1) is a loopback address"
    assert decoy.requests == []


async def test_https_is_sent_to_the_checked_address_with_the_hosts_name_for_tls(
    make_sender: SenderFactory,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    sender = make_sender(
        resolver=FakeResolver("93.184.216.34"), transport=httpx.MockTransport(answer)
    )
    outcome = await sender.send(
        _request("https://hooks.example.com/in?shop=1", allow_private=False)
    )
    assert (outcome.delivered, outcome.status_code) == (True, 204)
    (request,) = seen
    assert str(request.url) == "https://93.184.216.34/in?shop=1"
    assert request.headers["host"] == "hooks.example.com"
    # The TLS server name (and so the certificate check) is the URL's host, not the address.
    assert request.extensions["sni_hostname"] == "hooks.example.com"


async def test_redirects_are_not_followed(make_sender: SenderFactory) -> None:
    target = WebhookReceiver()
    with serve(target) as target_url:
        redirecting = WebhookReceiver(status=307, redirect_to=f"{target_url}/elsewhere")
        with serve(redirecting) as url:
            outcome = await make_sender().send(_request(f"{url}/in"))
    assert (outcome.delivered, outcome.status_code) == (False, 307)
    assert outcome.error == "answered HTTP 307"
    assert len(redirecting.requests) == 1
    assert target.requests == []


async def test_a_slow_receiver_fails_the_try_at_the_timeout(make_sender: SenderFactory) -> None:
    receiver = WebhookReceiver(delay_s=3)
    with serve(receiver) as url:
        outcome = await make_sender(timeout_s=0.3).send(_request(f"{url}/in"))
    assert not outcome.delivered
    assert outcome.error == "no answer within 0.3 s"
    assert 250 <= outcome.duration_ms < 2000


async def test_a_refused_connection_is_a_failed_try(make_sender: SenderFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    outcome = await make_sender().send(_request(f"http://127.0.0.1:{port}/in"))
    assert (outcome.delivered, outcome.error, outcome.status_code) == (
        False,
        "could not connect",
        None,
    )


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "120", 120.0), (503, "5", 5.0), (503, "soon", None), (500, "5", None)],
)
async def test_a_receiver_asking_to_wait_is_heard(
    make_sender: SenderFactory, status: int, retry_after: str, expected: float | None
) -> None:
    receiver = WebhookReceiver(status=status, retry_after=retry_after)
    with serve(receiver) as url:
        outcome = await make_sender().send(_request(f"{url}/in"))
    assert (outcome.delivered, outcome.status_code) == (False, status)
    assert outcome.retry_after_s == expected
