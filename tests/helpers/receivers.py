"""What webhooks and Telegram alerts are sent to in tests: real HTTP servers on loopback
(`khqrpay.serving.serve_in_thread`), recording what arrives.

- `WebhookReceiver`: answers every POST with `status` (503 while "down") after `delay_s`, or
  with a redirect; records the headers and body of each request.
- `FakeBotApi`: the two Bot API methods the alerts use (`getMe`, `sendMessage`), recording each
  message; it can answer 429 with a `retry_after`, 403 for chats that removed the bot, 401 for a
  token it does not know.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from khqrpay.serving import serve_in_thread

Scope = dict[str, Any]


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(
    send: Any, status: int, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


@dataclass(frozen=True)
class Request:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered
    at: float  # time.monotonic() when it arrived
    client: tuple[str, int] | None = None  # the sender's address and port

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    status: int = 200
    delay_s: float = 0.0
    redirect_to: str | None = None
    retry_after: str | None = None
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await _body(receive)
        arrived = time.monotonic()
        with self._lock:
            self.in_flight += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = self.status
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
            with self._lock:
                client = scope.get("client")
                self.requests.append(
                    Request(
                        dict(headers),
                        body,
                        status,
                        arrived,
                        None if client is None else tuple(client),
                    )
                )
            answer: list[tuple[bytes, bytes]] = []
            if self.redirect_to is not None:
                answer.append((b"location", self.redirect_to.encode()))
            if self.retry_after is not None:
                answer.append((b"retry-after", self.retry_after.encode()))
            await _answer(send, status, b"{}", answer)
        finally:
            with self._lock:
                self.in_flight -= 1

    def taken(self) -> list[Request]:
        """The requests it answered with a 2xx."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]


@contextlib.contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """`app` on `host` (port 0: a free one); its base URL."""
    with serve_in_thread(app, name=f"test-{type(app).__name__}", host=host, port=port) as url:
        yield url


@dataclass
class SentMessage:
    chat_id: str
    text: str


@dataclass
class FakeBotApi:
    token: str
    # Answer the next N sendMessage calls with 429 and this retry_after.
    flood_retry_after: int = 0
    flood_calls: int = 0
    forbidden_chats: set[str] = field(default_factory=set)
    sent: list[SentMessage] = field(default_factory=list)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        raw = await _body(receive)
        path: str = scope["path"]
        prefix = f"/bot{self.token}/"
        if not path.startswith(prefix):
            await _reply(send, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        method = path[len(prefix) :]
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode()
        params: dict[str, Any] = (
            json.loads(raw) if "json" in content_type else dict(parse_qsl(raw.decode()))
        )
        with self._lock:
            self.calls += 1
            flooded = self.flood_calls > 0
            if flooded:
                self.flood_calls -= 1
        if method == "getMe":
            bot = {"id": 1, "is_bot": True, "first_name": "shop", "username": "shop_bot"}
            await _reply(send, 200, {"ok": True, "result": bot})
        elif method != "sendMessage":
            await _reply(send, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
        elif flooded:
            retry = self.flood_retry_after
            await _reply(
                send,
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {retry}",
                    "parameters": {"retry_after": retry},
                },
            )
        elif str(params["chat_id"]) in self.forbidden_chats:
            await _reply(
                send,
                403,
                {
                    "ok": False,
                    "error_code": 403,
                    "description": "Forbidden: bot was kicked from the group chat",
                },
            )
        else:
            chat_id, text = str(params["chat_id"]), str(params["text"])
            with self._lock:
                self.sent.append(SentMessage(chat_id, text))
                number = len(self.sent)
            chat = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else 7, "type": "group"}
            message = {"message_id": number, "date": 1, "chat": chat, "text": text}
            await _reply(send, 200, {"ok": True, "result": message})

    def texts(self, chat_id: str) -> list[str]:
        with self._lock:
            return [m.text for m in self.sent if m.chat_id == chat_id]


async def _reply(send: Any, status: int, payload: dict[str, Any]) -> None:
    await _answer(send, status, json.dumps(payload).encode())
