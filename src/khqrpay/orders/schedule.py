"""When to ask Bakong about a pending KHQR payment: the age-aware verification schedule.

Pure policy: no I/O and no clock; every time is an epoch-millisecond int passed in. The worker
stores, per payment, `next_check_ms` (when it is due), `earliest_check_ms` (from when a Bakong call
made anyway may carry it early), `hot_until_ms` and `last_checked_ms`, and asks this module how to
move them after each check, error or customer visit.

The rules, each figure a setting:
- the first check comes `initial_delay` after creation (nobody pays faster);
- every `fast_interval` while the payment is fresh (younger than `fresh_window`), and every
  `watched_interval` (or `fast_interval` if shorter) while it is hot (a customer is watching: hot
  for `hot_window` after each visit, and the next check is pulled forward): a customer looking at
  the page waits about a second, and only watched payments cost the extra calls;
- afterwards the interval is `age_factor` × age, between `fast_interval` and `max_interval`;
- regular checks stay at or before the window end (hot ones keep their fast pace a little past it);
  then exactly one final check at window end + `final_grace` (a payment made just before the end
  settles in Bakong a little later), after which the payment expires;
- a Bakong call that must be made anyway (md5 list, up to 50 a call) first carries the payments
  whose next check is at most `early_fraction` of their interval away (such a check counts as
  their next one; final checks are never early), then fills its free places with ride-alongs:
  pending payments last checked at least `ride_along_after` ago, the longest ago first. A
  ride-along leaves its payment's schedule as it is, so the calls the schedule makes stay the
  same and only get fuller: a call costs the same with 1 md5 or 50, and the free places check old
  payments every minute or so instead of every half hour, at no extra request;
- the sweep: when no call goes out anyway and the longest-unchecked pending payment has waited
  `sweep_interval`, one call goes out full of ride-alongs (`sweep_due`). Every pending payment is
  then checked at least about every `sweep_interval` whatever its age, and the sweep adds calls
  only in the gaps the schedule's own calls leave (pending / (50 × interval) calls a second at
  most).

`NaiveSchedule` is the yardstick: the schedule shops described, every order on its own every 2 s.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

# Bakong's md5-list endpoint takes at most 50 md5s a call.
MD5_LIST_LIMIT = 50

PaymentId = TypeVar("PaymentId")


class ErrorKind(enum.Enum):
    """What went wrong talking to Bakong, without depending on the HTTP client's exception types."""

    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    BLOCKED = "blocked"
    BAD_RESPONSE = "bad_response"
    UNAUTHORIZED = "unauthorized"


@dataclass(frozen=True, slots=True)
class Watch:
    """A payment's schedule after a customer showed they are watching it."""

    hot_until_ms: int
    next_check_ms: int
    earliest_check_ms: int


@dataclass(frozen=True, slots=True)
class NextCheck:
    """A payment's schedule after a check: `next_check_ms` None means that was its final check
    (the payment expires, and `earliest_check_ms` is None too)."""

    next_check_ms: int | None
    earliest_check_ms: int | None
    consecutive_errors: int

    @property
    def final(self) -> bool:
        return self.next_check_ms is None


@dataclass(frozen=True, slots=True)
class Candidate(Generic[PaymentId]):
    """A payment the worker could check now: due, early, or a ride-along (`plan_batches`)."""

    payment_id: PaymentId
    next_check_ms: int
    earliest_check_ms: int
    last_checked_ms: int | None = None

    def __post_init__(self) -> None:
        if self.earliest_check_ms > self.next_check_ms:
            raise ValueError("earliest_check_ms must not be after next_check_ms")


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    """The schedule's figures in integer milliseconds (age factor and early fraction are ratios).

    Built by `Settings.schedule_policy()`; the settings hold the defaults and document each figure.
    """

    initial_delay_ms: int
    fast_interval_ms: int
    watched_interval_ms: int
    fresh_window_ms: int
    hot_window_ms: int
    age_factor: float
    max_interval_ms: int
    payment_window_ms: int
    final_grace_ms: int
    early_fraction: float
    error_backoff_max_ms: int
    ride_along_after_ms: int
    sweep_interval_ms: int

    def __post_init__(self) -> None:
        for name in ("initial_delay_ms", "fresh_window_ms", "hot_window_ms", "final_grace_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in (
            "fast_interval_ms",
            "watched_interval_ms",
            "payment_window_ms",
            "error_backoff_max_ms",
            "ride_along_after_ms",
            "sweep_interval_ms",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_interval_ms < self.fast_interval_ms:
            raise ValueError("max_interval_ms must not be shorter than fast_interval_ms")
        if self.error_backoff_max_ms < self.fast_interval_ms:
            raise ValueError("error_backoff_max_ms must not be shorter than fast_interval_ms")
        if not (math.isfinite(self.age_factor) and self.age_factor > 0):
            raise ValueError("age_factor must be a positive number")
        if not (math.isfinite(self.early_fraction) and 0 <= self.early_fraction < 1):
            raise ValueError("early_fraction must be in [0, 1)")

    @property
    def hot_interval_ms(self) -> int:
        """The gap between two checks while a customer is watching."""
        return min(self.watched_interval_ms, self.fast_interval_ms)

    def window_end_ms(self, created_ms: int) -> int:
        """When a payment created at `created_ms` stops being payable (the QR's tag 99 expiry)."""
        return created_ms + self.payment_window_ms

    def final_check_ms(self, window_end_ms: int) -> int:
        """The last check: the window end plus Bakong's settlement grace."""
        return window_end_ms + self.final_grace_ms

    def first_check_ms(self, created_ms: int) -> int:
        """The first check: `initial_delay` after creation (never after the final check)."""
        return min(
            created_ms + self.initial_delay_ms,
            self.final_check_ms(self.window_end_ms(created_ms)),
        )

    def interval_ms(self, *, age_ms: int, hot: bool) -> int:
        """The gap between two checks of a payment `age_ms` old."""
        if age_ms < 0:
            raise ValueError("age_ms must not be negative")
        if hot:
            return self.hot_interval_ms
        if age_ms < self.fresh_window_ms:
            return self.fast_interval_ms
        proportional = round(age_ms * self.age_factor)
        return max(self.fast_interval_ms, min(self.max_interval_ms, proportional))

    def next_check_ms(
        self, *, created_ms: int, now_ms: int, hot_until_ms: int | None, window_end_ms: int
    ) -> int | None:
        """After a not-paid answer at `now_ms`: when to check next, or None to expire the payment.

        Regular checks never go past the window end; the one after the last regular check is the
        final check at window end + grace, and after it there is none. A hot payment keeps its
        hot interval up to the final check: its customer is watching right now.
        """
        if now_ms < created_ms:
            raise ValueError("a check cannot happen before the payment was created")
        if window_end_ms < created_ms:
            raise ValueError("window_end_ms must not be before created_ms")
        final_ms = self.final_check_ms(window_end_ms)
        if now_ms >= final_ms:
            return None
        hot = hot_until_ms is not None and now_ms < hot_until_ms
        candidate = now_ms + self.interval_ms(age_ms=now_ms - created_ms, hot=hot)
        if hot:
            return min(candidate, final_ms)
        return final_ms if candidate > window_end_ms else candidate

    def earliest_check_ms(self, *, checked_ms: int, next_check_ms: int, window_end_ms: int) -> int:
        """From when a call made anyway may carry this payment: `early_fraction` of its interval
        before `next_check_ms`. Checks after the window end are never early: an early final check
        could miss a payment made in the window's last minutes."""
        if next_check_ms < checked_ms:
            raise ValueError("next_check_ms must not be before checked_ms")
        if next_check_ms > window_end_ms:
            return next_check_ms
        slack = math.floor((next_check_ms - checked_ms) * self.early_fraction)
        return next_check_ms - slack

    def watch(
        self,
        *,
        created_ms: int,
        now_ms: int,
        last_checked_ms: int | None,
        next_check_ms: int,
        earliest_check_ms: int,
    ) -> Watch:
        """A customer is watching (payment or order page open, "I have paid" pressed).

        Hot for the next `hot_window`, and the next check is pulled forward to now, but never
        sooner than one hot interval after the last check (a page reloaded in a loop must not
        hammer Bakong) nor before the first check.
        """
        if now_ms < created_ms:
            raise ValueError("a customer cannot watch a payment before it was created")
        if earliest_check_ms > next_check_ms:
            raise ValueError("earliest_check_ms must not be after next_check_ms")
        pulled = max(now_ms, created_ms + self.initial_delay_ms)
        if last_checked_ms is not None:
            pulled = max(pulled, last_checked_ms + self.hot_interval_ms)
        next_ms = min(next_check_ms, pulled)
        return Watch(
            hot_until_ms=now_ms + self.hot_window_ms,
            next_check_ms=next_ms,
            earliest_check_ms=min(earliest_check_ms, next_ms),
        )

    def sweep_due(self, *, oldest_checked_ms: int | None, now_ms: int) -> bool:
        """Whether a sweep call should go out at `now_ms`, given when the longest-unchecked
        pending payment was last checked (None: no pending payment was ever checked)."""
        return (
            oldest_checked_ms is not None and oldest_checked_ms <= now_ms - self.sweep_interval_ms
        )

    def error_backoff_ms(
        self, kind: ErrorKind, *, consecutive_errors: int, retry_after_s: float | None = None
    ) -> int | None:
        """How long to wait before retrying a check that failed with a Bakong error.

        None for UNAUTHORIZED: stop checking; the caller raises an alert (a token problem must be
        loud). Rate limits honour Retry-After; other errors back off exponentially from the fast
        interval, doubling per consecutive error up to `error_backoff_max`. The retry repeats the
        failed check, so it is never early and an error never expires a payment.
        """
        if consecutive_errors < 1:
            raise ValueError("consecutive_errors counts this error too: at least 1")
        if retry_after_s is not None and not (math.isfinite(retry_after_s) and retry_after_s >= 0):
            raise ValueError("retry_after_s must be a non-negative number of seconds")
        if kind is ErrorKind.UNAUTHORIZED:
            return None
        if kind is ErrorKind.RATE_LIMITED and retry_after_s is not None:
            return max(self.fast_interval_ms, math.ceil(retry_after_s * 1000))
        # Capping the exponent keeps the number small however long an outage lasts.
        doublings = min(consecutive_errors - 1, 32)
        return min(self.error_backoff_max_ms, self.fast_interval_ms << doublings)


def ride_along_slots(
    due_count: int, *, sweep: bool = False, max_per_call: int = MD5_LIST_LIMIT
) -> int:
    """How many ride-alongs the calls that `due_count` due payments need can carry: the free
    places of their last call. Without a due payment, a whole call if a sweep is due
    (`SchedulePolicy.sweep_due`), else none: only the sweep makes a call for ride-alongs."""
    if due_count < 0:
        raise ValueError("due_count must not be negative")
    if not 1 <= max_per_call <= MD5_LIST_LIMIT:
        raise ValueError(f"max_per_call must be between 1 and {MD5_LIST_LIMIT}")
    if due_count == 0 and sweep:
        return max_per_call
    return -due_count % max_per_call


def rides_along(*, earliest_check_ms: int | None, now_ms: int) -> bool:
    """Whether a check at `now_ms` is a ride-along: made before the payment's earliest check. It
    leaves the payment's schedule as it is (its own checks stay where they were), so ride-alongs
    never take away nor add a call of the schedule's own."""
    return earliest_check_ms is not None and now_ms < earliest_check_ms


def plan_batches(
    candidates: Iterable[Candidate[PaymentId]],
    *,
    now_ms: int,
    ride_along_after_ms: int | None,
    sweep: bool = False,
    max_per_call: int = MD5_LIST_LIMIT,
) -> list[tuple[Candidate[PaymentId], ...]]:
    """Split the checks to make at `now_ms` into md5-list calls.

    Every due candidate (`next_check_ms <= now_ms`) is checked, the most overdue first. The calls
    this needs are filled up to `max_per_call` (`ride_along_slots`): first with early candidates
    (`earliest_check_ms <= now_ms`), the soonest due first, whose check counts as their next one;
    then with ride-alongs, candidates last checked at least `ride_along_after_ms` ago (None: no
    ride-alongs, the policy before every call was filled), the longest ago first (ties in no
    particular order). Neither causes a call, except with `sweep` (the sweep is due): without a due
    candidate, one call then carries the early ones and ride-alongs. Candidates that are none of
    these are ignored. The claim fetches in this order, so it needs no more candidates than the
    calls carry.
    """
    if not 1 <= max_per_call <= MD5_LIST_LIMIT:
        raise ValueError(f"max_per_call must be between 1 and {MD5_LIST_LIMIT}")
    if ride_along_after_ms is not None and ride_along_after_ms <= 0:
        raise ValueError("ride_along_after_ms must be positive")
    due: list[Candidate[PaymentId]] = []
    early: list[Candidate[PaymentId]] = []
    riders: list[tuple[int, Candidate[PaymentId]]] = []
    seen: set[PaymentId] = set()
    for candidate in candidates:
        if candidate.payment_id in seen:
            raise ValueError(f"payment {candidate.payment_id!r} is listed twice")
        seen.add(candidate.payment_id)
        last = candidate.last_checked_ms
        if candidate.next_check_ms <= now_ms:
            due.append(candidate)
        elif candidate.earliest_check_ms <= now_ms:
            early.append(candidate)
        elif (
            ride_along_after_ms is not None
            and last is not None
            and last <= now_ms - ride_along_after_ms
        ):
            riders.append((last, candidate))
    due.sort(key=lambda c: c.next_check_ms)
    early.sort(key=lambda c: c.next_check_ms)
    riders.sort(key=lambda rider: rider[0])
    fill = [*early, *(candidate for _, candidate in riders)]
    chosen = due + fill[: ride_along_slots(len(due), sweep=sweep, max_per_call=max_per_call)]
    return [tuple(chosen[i : i + max_per_call]) for i in range(0, len(chosen), max_per_call)]


@dataclass(frozen=True, slots=True)
class NaiveSchedule:
    """The schedule shops described, kept as the yardstick ours is measured against: every pending
    order checked on its own, one request per check, every `interval_ms` from the age of
    `min_age_ms` until its payment is found. The demo's comparison and the schedule bench both
    count with it."""

    min_age_ms: int = 60_000
    interval_ms: int = 2_000

    def __post_init__(self) -> None:
        if self.min_age_ms < 0:
            raise ValueError("min_age_ms must not be negative")
        if self.interval_ms <= 0:
            raise ValueError("interval_ms must be positive")

    def checks(self, *, created_ms: int, until_ms: int) -> int:
        """The checks (= requests) made for an order created at `created_ms`, up to and including
        `until_ms`: the first at exactly `min_age_ms`."""
        first_ms = created_ms + self.min_age_ms
        if until_ms < first_ms:
            return 0
        return (until_ms - first_ms) // self.interval_ms + 1

    def found_ms(self, *, created_ms: int, paid_ms: int) -> int:
        """When a payment made at `paid_ms` is found: at the first check at or after it."""
        first_ms = created_ms + self.min_age_ms
        if paid_ms <= first_ms:
            return first_ms
        checks_after_first = -(-(paid_ms - first_ms) // self.interval_ms)  # rounded up
        return first_ms + checks_after_first * self.interval_ms

    def detection_ms(self, *, created_ms: int, paid_ms: int) -> int:
        """How long after the payment it is found."""
        return self.found_ms(created_ms=created_ms, paid_ms=paid_ms) - paid_ms
