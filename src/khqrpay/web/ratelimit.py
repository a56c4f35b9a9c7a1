"""Rate limits on what costs the shop something (an order, a Bakong call, a look-up), with the
`limits` library: a moving window per limit and key (a client address, an order, an API key).

Counts live in this process's memory: each web process keeps its own, so N processes allow up to
N times the configured rates. That bounds abuse well enough for a shop; a shared store (Redis)
would make them exact across processes.
"""

from __future__ import annotations

import enum
import math
import time

from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from khqrpay.settings import Settings


class Limit(enum.StrEnum):
    CHECKOUT = "checkout"
    PAID_PER_ORDER = "paid_per_order"
    PAID_PER_CLIENT = "paid_per_client"
    LOOKUP = "lookup"
    BANKING_APP = "banking_app"
    API_KEY = "api_key"
    API_BAKONG = "api_bakong"


class RateLimited(Exception):
    """Over a limit: try again in `retry_after_s`."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many requests: try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        configured = {
            Limit.CHECKOUT: settings.web_rate_checkout,
            Limit.PAID_PER_ORDER: settings.web_rate_paid_per_order,
            Limit.PAID_PER_CLIENT: settings.web_rate_paid_per_client,
            Limit.LOOKUP: settings.web_rate_lookup,
            Limit.BANKING_APP: settings.web_rate_banking_app,
            Limit.API_KEY: settings.web_rate_api_key,
            Limit.API_BAKONG: settings.web_rate_api_bakong,
        }
        self._items: dict[Limit, list[RateLimitItem]] = {
            limit: parse_many(text) for limit, text in configured.items()
        }
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def hit(self, limit: Limit, key: str) -> None:
        """Count one request for `key`; `RateLimited` when it is one too many."""
        for item in self._items[limit]:
            if not self._limiter.hit(item, limit.value, key):
                reset_at = self._limiter.get_window_stats(item, limit.value, key).reset_time
                # The library keeps wall-clock times; this only tells the client when to retry.
                raise RateLimited(max(1, math.ceil(reset_at - time.time())))


def client_address(request: Request) -> str:
    """Who is asking: the connection's address (behind a proxy, run uvicorn with
    `--proxy-headers` and `--forwarded-allow-ips` so that this is the customer's)."""
    return request.client.host if request.client else "unknown"
