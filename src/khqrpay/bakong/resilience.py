"""Retry with full-jitter backoff, a circuit breaker and a token-bucket rate limiter.

Generic over the exceptions they handle; time comes from an injected Clock and waits go through
an injected sleeper, so all three are tested without real waiting.
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

import tenacity

from khqrpay.clock import Clock

T = TypeVar("T")
Sleeper = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: a uniform wait in [0, min(max_s, base_s * 2^(n-1)))."""

    base_s: float
    max_s: float
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        if self.base_s <= 0 or self.max_s < self.base_s:
            raise ValueError("backoff needs 0 < base_s <= max_s")

    def delay_s(self, failed_attempts: int) -> float:
        ceiling = min(self.max_s, self.base_s * 2 ** (failed_attempts - 1))
        return self.rng.uniform(0, ceiling)


class RetryPolicy:
    """Run an operation, repeating it after transient errors only.

    A server-given wait (`retry_after`, e.g. HTTP Retry-After) replaces the jittered backoff; one
    longer than `backoff.max_s` is not waited out here but handed to the caller's own schedule.
    """

    def __init__(
        self,
        *,
        attempts: int,
        backoff: Backoff,
        is_transient: Callable[[BaseException], bool],
        retry_after_s: Callable[[BaseException], float | None],
        sleep: Sleeper,
    ) -> None:
        if attempts < 1:
            raise ValueError("at least one attempt")
        self.attempts = attempts
        self._backoff = backoff
        self._is_transient = is_transient
        self._retry_after_s = retry_after_s
        self._sleep = sleep

    def _should_retry(self, exc: BaseException) -> bool:
        if not self._is_transient(exc):
            return False
        server_wait = self._retry_after_s(exc)
        return server_wait is None or server_wait <= self._backoff.max_s

    def _wait_s(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        server_wait = None if exc is None else self._retry_after_s(exc)
        if server_wait is not None:
            return server_wait
        return self._backoff.delay_s(state.attempt_number)

    async def run(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        on_retry: Callable[[int, BaseException, float], None] | None = None,
    ) -> T:
        """`on_retry(failed_attempt, error, wait_s)` is told before each wait."""

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if on_retry is not None and exc is not None:
                on_retry(state.attempt_number, exc, state.upcoming_sleep)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self._wait_s,
            retry=tenacity.retry_if_exception(self._should_retry),
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        result: T = await retrying(operation)
        return result


class CircuitState(enum.Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitOpenError(Exception):
    """Raised by `CircuitBreaker.guard()` while open; callers translate it into their own error."""

    def __init__(self, retry_in_s: float) -> None:
        super().__init__(f"circuit open, next trial in {retry_in_s:.1f}s")
        self.retry_in_s = retry_in_s


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures → half-open once `reset_s` has
    passed (a single trial call goes through) → closed if the trial succeeds, open again if not.

    `counts_as_failure` decides which exceptions are the service's fault; other exceptions count
    as a working service. A cancelled call is neither.
    """

    def __init__(
        self,
        *,
        failure_threshold: int,
        reset_s: float,
        clock: Clock,
        counts_as_failure: Callable[[BaseException], bool],
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or reset_s <= 0:
            raise ValueError("a breaker needs failure_threshold >= 1 and reset_s > 0")
        self._threshold = failure_threshold
        self._reset_ms = round(reset_s * 1000)
        self._clock = clock
        self._counts_as_failure = counts_as_failure
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._failures = 0
        self._opened_ms = 0
        self._trial_running = False

    @property
    def state(self) -> CircuitState:
        return self._state

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)

    def guard(self) -> _Guarded:
        """Context manager around one call; raises CircuitOpenError instead while open."""
        if self._state is CircuitState.OPEN:
            remaining_ms = self._opened_ms + self._reset_ms - self._clock.now_ms()
            if remaining_ms > 0:
                raise CircuitOpenError(remaining_ms / 1000)
            self._set(CircuitState.HALF_OPEN)
        if self._state is CircuitState.HALF_OPEN:
            if self._trial_running:
                raise CircuitOpenError(0.0)
            self._trial_running = True
        return _Guarded(self)

    def _record(self, exc: BaseException | None) -> None:
        self._trial_running = False
        if exc is not None and self._counts_as_failure(exc):
            self._failures += 1
            if self._state is CircuitState.HALF_OPEN or self._failures >= self._threshold:
                self._opened_ms = self._clock.now_ms()
                self._set(CircuitState.OPEN)
        else:
            self._failures = 0
            self._set(CircuitState.CLOSED)

    def _abandon(self) -> None:
        self._trial_running = False


class _Guarded:
    __slots__ = ("_breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, Exception):
            self._breaker._abandon()  # cancellation or shutdown says nothing about the service
        else:
            self._breaker._record(exc)


class TokenBucket:
    """At most `rate_per_s` acquisitions a second on average, bursts of up to `burst`.

    Waiters are served one at a time in arrival order.
    """

    def __init__(
        self, *, rate_per_s: float, clock: Clock, sleep: Sleeper, burst: float | None = None
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self._rate = rate_per_s
        self._capacity = max(1.0, rate_per_s if burst is None else burst)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._updated_ms = clock.now_ms()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now_ms = self._clock.now_ms()
        elapsed_s = max(0, now_ms - self._updated_ms) / 1000
        self._tokens = min(self._capacity, self._tokens + elapsed_s * self._rate)
        self._updated_ms = now_ms

    async def acquire(self) -> float:
        """Take one token, waiting if needed; returns the seconds waited."""
        waited_s = 0.0
        async with self._lock:
            while True:
                self._refill()
                if self._tokens >= 1:
                    self._tokens -= 1
                    return waited_s
                # At least a millisecond: the clock counts whole milliseconds.
                wait_s = max(0.001, (1 - self._tokens) / self._rate)
                await self._sleep(wait_s)
                waited_s += wait_s
