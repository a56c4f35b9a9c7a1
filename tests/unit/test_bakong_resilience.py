"""Retry, circuit breaker and rate limiter, in virtual time (FakeClock and a recording sleeper)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random

import pytest

from helpers.virtual_time import VirtualSleep
from khqrpay.bakong.resilience import (
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    RetryPolicy,
    TokenBucket,
)
from khqrpay.clock import FakeClock


class Transient(Exception):
    def __init__(self, retry_after_s: float | None = None) -> None:
        super().__init__("transient")
        self.retry_after_s = retry_after_s


class Permanent(Exception):
    pass


def policy(sleep: VirtualSleep, attempts: int = 4, seed: int = 1) -> RetryPolicy:
    return RetryPolicy(
        attempts=attempts,
        backoff=Backoff(base_s=0.5, max_s=10, rng=random.Random(seed)),
        is_transient=lambda exc: isinstance(exc, Transient),
        retry_after_s=lambda exc: exc.retry_after_s if isinstance(exc, Transient) else None,
        sleep=sleep,
    )


class Flaky:
    """Raises the given exceptions in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_full_jitter_stays_below_an_exponential_ceiling_that_is_capped() -> None:
    backoff = Backoff(base_s=0.5, max_s=10, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (6, 10.0), (12, 10.0)]:
        draws = [backoff.delay_s(attempt) for _ in range(2000)]
        assert all(0 <= d <= ceiling for d in draws)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(draws) < ceiling * 0.05
        assert max(draws) > ceiling * 0.95


def test_backoff_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=0, max_s=1)
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=2, max_s=1)


async def test_transient_errors_are_retried_with_growing_jittered_waits() -> None:
    sleep = VirtualSleep(FakeClock())
    operation = Flaky(Transient(), Transient(), Transient())
    seen: list[tuple[int, float]] = []
    result = await policy(sleep).run(operation, on_retry=lambda n, _e, w: seen.append((n, w)))
    assert result == "ok"
    assert operation.calls == 4
    assert [n for n, _ in seen] == [1, 2, 3]
    assert [w for _, w in seen] == sleep.waits
    for attempt, wait in enumerate(sleep.waits, start=1):
        assert 0 <= wait <= 0.5 * 2 ** (attempt - 1)


async def test_attempts_are_capped_and_the_last_error_is_raised() -> None:
    sleep = VirtualSleep(FakeClock())
    operation = Flaky(*[Transient() for _ in range(10)])
    with pytest.raises(Transient):
        await policy(sleep, attempts=3).run(operation)
    assert operation.calls == 3
    assert len(sleep.waits) == 2


async def test_permanent_errors_are_not_retried() -> None:
    sleep = VirtualSleep(FakeClock())
    operation = Flaky(Permanent())
    with pytest.raises(Permanent):
        await policy(sleep).run(operation)
    assert operation.calls == 1
    assert sleep.waits == []


async def test_a_server_given_wait_replaces_the_backoff() -> None:
    sleep = VirtualSleep(FakeClock())
    operation = Flaky(Transient(retry_after_s=7), Transient(retry_after_s=0))
    assert await policy(sleep).run(operation) == "ok"
    assert sleep.waits == [7, 0]


async def test_a_server_wait_longer_than_the_cap_goes_back_to_the_caller() -> None:
    sleep = VirtualSleep(FakeClock())
    operation = Flaky(Transient(retry_after_s=3600))
    with pytest.raises(Transient):
        await policy(sleep).run(operation)
    assert operation.calls == 1
    assert sleep.waits == []


def failing_breaker(clock: FakeClock, changes: list[CircuitState]) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3,
        reset_s=30,
        clock=clock,
        counts_as_failure=lambda exc: isinstance(exc, Transient),
        on_change=changes.append,
    )


def call(breaker: CircuitBreaker, error: Exception | None) -> None:
    # A CircuitOpenError from guard() is not suppressed: it would fail the test.
    with contextlib.suppress(Transient, Permanent), breaker.guard():
        if error is not None:
            raise error


def test_the_breaker_opens_after_consecutive_failures_and_half_opens_after_the_reset() -> None:
    clock, changes = FakeClock(), []
    breaker = failing_breaker(clock, changes)
    call(breaker, Transient())
    call(breaker, Transient())
    assert breaker.state is CircuitState.CLOSED
    call(breaker, Transient())
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError) as refused:
        breaker.guard()
    assert refused.value.retry_in_s == 30
    clock.advance(seconds=29.5)
    with pytest.raises(CircuitOpenError) as refused:
        breaker.guard()
    assert refused.value.retry_in_s == pytest.approx(0.5)
    clock.advance(seconds=0.5)
    trial = breaker.guard()
    assert breaker.state is CircuitState.HALF_OPEN
    with pytest.raises(CircuitOpenError):
        breaker.guard()  # only one trial at a time
    with trial:
        pass
    assert breaker.state is CircuitState.CLOSED
    assert changes == [CircuitState.OPEN, CircuitState.HALF_OPEN, CircuitState.CLOSED]


def test_a_failed_trial_opens_the_breaker_again_for_a_full_reset_period() -> None:
    clock, changes = FakeClock(), []
    breaker = failing_breaker(clock, changes)
    for _ in range(3):
        call(breaker, Transient())
    clock.advance(seconds=31)
    call(breaker, Transient())
    assert breaker.state is CircuitState.OPEN
    clock.advance(seconds=29)
    with pytest.raises(CircuitOpenError):
        breaker.guard()
    clock.advance(seconds=1)
    call(breaker, None)
    assert breaker.state is CircuitState.CLOSED


def test_a_success_or_a_non_failure_error_resets_the_count() -> None:
    clock, changes = FakeClock(), []
    breaker = failing_breaker(clock, changes)
    for error in [Transient(), Transient(), None, Transient(), Transient(), Permanent()]:
        call(breaker, error)
    call(breaker, Transient())
    call(breaker, Transient())
    assert breaker.state is CircuitState.CLOSED
    assert changes == []


async def test_a_cancelled_trial_frees_the_half_open_slot_without_a_verdict() -> None:
    clock, changes = FakeClock(), []
    breaker = failing_breaker(clock, changes)
    for _ in range(3):
        call(breaker, Transient())
    clock.advance(seconds=30)

    async def hang() -> None:
        with breaker.guard():
            await asyncio.Event().wait()

    task = asyncio.create_task(hang())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CircuitState.HALF_OPEN
    call(breaker, None)  # the next caller may run the trial
    assert breaker.state is CircuitState.CLOSED


async def test_the_token_bucket_allows_a_burst_then_paces_to_the_rate() -> None:
    clock = FakeClock()
    sleep = VirtualSleep(clock)
    bucket = TokenBucket(rate_per_s=5, clock=clock, sleep=sleep)
    start = clock.now_ms()
    stamps = []
    for _ in range(15):
        await bucket.acquire()
        stamps.append(clock.now_ms() - start)
    assert stamps[:5] == [0] * 5  # the burst
    gaps = [b - a for a, b in itertools.pairwise(stamps[4:])]
    assert all(gap == 200 for gap in gaps)  # then one every 1/5 s
    assert stamps[-1] == 2000


async def test_the_token_bucket_refills_while_idle_and_serves_concurrent_waiters() -> None:
    clock = FakeClock()
    sleep = VirtualSleep(clock)
    bucket = TokenBucket(rate_per_s=2, clock=clock, sleep=sleep, burst=1)
    assert await bucket.acquire() == 0
    clock.advance(seconds=10)  # idle: refills only up to the burst
    waits = await asyncio.gather(*(bucket.acquire() for _ in range(4)))
    assert sorted(waits) == [0, 0.5, 0.5, 0.5]
    assert sum(sleep.waits) == pytest.approx(1.5)


def test_the_token_bucket_refuses_a_non_positive_rate() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(rate_per_s=0, clock=clock, sleep=VirtualSleep(clock))
