"""What the services ask of the outbound adapters, and what they answer. No HTTP in here."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from khqrpay.orders.notices import SigningSecret


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """One try: delivered or not, the answer's status code (None: no answer), how long it took.

    A failed try carries its reason; `retry_after_s` when the recipient asked us to wait (HTTP
    429 / 503 Retry-After, Telegram's retry_after); `permanent` when it refused the message for
    good (trying again cannot help)."""

    delivered: bool
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Stopwatch:
    """How long a try has taken so far, in whole milliseconds."""

    started: float = field(default_factory=time.perf_counter)

    def ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


@dataclass(frozen=True, slots=True)
class WebhookRequest:
    """One delivery to send: `message_id` is its `webhook-id`, `body` the exact JSON text."""

    endpoint_id: int
    url: str
    secret: SigningSecret
    allow_private: bool
    message_id: str
    body: str


class WebhookSender(Protocol):
    async def send(self, request: WebhookRequest) -> SendOutcome: ...


class AlertSender(Protocol):
    async def send(self, chat_id: str, text: str) -> SendOutcome: ...
