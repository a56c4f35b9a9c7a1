"""Time as an injected dependency, so schedules and expiry are tested without sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """A source of the current time, in epoch milliseconds."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that only moves when told to; for tests and virtual-time benchmarks."""

    def __init__(self, start_ms: int = 1_795_651_200_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, *, ms: int = 0, seconds: float = 0) -> None:
        step = ms + round(seconds * 1000)
        if step < 0:
            raise ValueError("a clock never goes backwards")
        self._now_ms += step

    def set(self, now_ms: int) -> None:
        if now_ms < self._now_ms:
            raise ValueError("a clock never goes backwards")
        self._now_ms = now_ms


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_ms(moment: datetime) -> int:
    """An aware datetime to epoch milliseconds."""
    if moment.tzinfo is None:
        raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
    return round(moment.timestamp() * 1000)
