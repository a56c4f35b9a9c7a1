"""Driving the web app over real HTTP in tests: a customer's browser (cookies, CSRF tokens,
forms), an API client, and reading Server-Sent Events."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from khqrpay.bootstrap import App
from khqrpay.orders.model import KhqrPayment, Order
from khqrpay.simulator.server import RunningSimulator

# A form's hidden field, or the page's meta tag (pages without a form carry one for scripts).
CSRF_FIELD = re.compile(r'name="csrf(?:token" value|-token" content)="([^"]+)"')


class Browser:
    """A customer's browser: keeps its cookies (session, CSRF, language), posts forms with the
    page's CSRF token, never follows redirects by itself (tests look at them)."""

    def __init__(self, base_url: str, *, language: str = "en") -> None:
        self.http = httpx.Client(
            base_url=base_url, timeout=10, headers={"accept-language": language}
        )
        self._csrf: str | None = None

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.get(path, **kwargs)
        found = (
            CSRF_FIELD.search(response.text)
            if "html" in response.headers.get("content-type", "")
            else None
        )
        if found:
            self._csrf = found.group(1)
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        if self._csrf is None:
            self.get("/")
        assert self._csrf is not None, "no CSRF token on the shop's front page"
        return self.http.post(path, data={"csrftoken": self._csrf, **(data or {})}, **kwargs)

    def add(self, sku: str, times: int = 1) -> None:
        for _ in range(times):
            response = self.post("/cart/add", {"sku": sku})
            assert response.status_code == 303, response.text

    def checkout(self, currency: str = "USD", **fields: str) -> str:
        """Check out the cart's `currency` lines; the new order's token."""
        response = self.post("/checkout", {"currency": currency, **fields})
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert location.startswith("/pay/"), location
        return location.removeprefix("/pay/")

    def close(self) -> None:
        self.http.close()


def api_client(base_url: str, key: str | None) -> httpx.Client:
    headers = {} if key is None else {"authorization": f"Bearer {key}"}
    return httpx.Client(base_url=base_url, headers=headers, timeout=10)


@dataclass
class SseEvent:
    id: str | None
    data: dict[str, Any]


@dataclass
class EventStream:
    """Server-Sent Events read in a background thread (as a browser's EventSource would)."""

    events: list[SseEvent] = field(default_factory=list)
    status: int | None = None
    opened: threading.Event = field(default_factory=threading.Event)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> SseEvent:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such event within {timeout} s: {self.events}")
                self._changed.wait(left)

    def _add(self, event: SseEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()


@contextmanager
def event_stream(
    client: httpx.Client, path: str, *, headers: dict[str, str] | None = None
) -> Iterator[EventStream]:
    """Follow `path` until the block ends; the stream's events as they arrive."""
    stream = EventStream()
    opened: list[httpx.Response] = []

    def read() -> None:
        try:
            with client.stream("GET", path, headers=headers, timeout=None) as response:
                opened.append(response)
                stream.status = response.status_code
                stream.opened.set()
                event_id: str | None = None
                for line in response.iter_lines():
                    if line.startswith("id:"):
                        event_id = line[3:].strip()
                    elif line.startswith("data:"):
                        stream._add(SseEvent(event_id, json.loads(line[5:].strip())))
        except (httpx.HTTPError, OSError, ValueError):
            pass  # closed by the test, or the server stopped
        finally:
            stream.opened.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert stream.opened.wait(10), "the stream did not open"
    assert stream.status == 200, f"the stream answered {stream.status}"
    try:
        yield stream
    finally:
        for response in opened:
            response.close()
        # A read blocked on the socket ends when the server stops; no need to wait for it here.
        reader.join(0.2)


@dataclass
class Web:
    """The web app served on a loopback port, its parts, and the simulator it asks."""

    url: str
    app: App
    simulator: RunningSimulator

    def browser(self, language: str = "en") -> Browser:
        return Browser(self.url, language=language)

    def pay(self, qr: str, **overrides: Any) -> None:
        """Pay a QR in the simulated banking app."""
        body = {"qr": qr, **{k: str(v) for k, v in overrides.items()}}
        response = httpx.post(f"{self.simulator.url}/_sim/pay", json=body, timeout=5)
        assert response.status_code == 201, response.text

    def order(self, token: str) -> Order:
        with self.app.database.read() as uow:
            return uow.orders.by_token(token)

    def payments(self, token: str) -> list[KhqrPayment]:
        with self.app.database.read() as uow:
            return uow.payments.for_order(uow.orders.by_token(token).id)
