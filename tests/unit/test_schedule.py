"""The verification schedule, rule by rule, with plain epoch-ms ints and a FakeClock."""

from __future__ import annotations

import dataclasses
import itertools
import os

import pytest

from khqrpay.clock import FakeClock
from khqrpay.orders.schedule import (
    MD5_LIST_LIMIT,
    Candidate,
    ErrorKind,
    NaiveSchedule,
    SchedulePolicy,
    Watch,
    plan_batches,
    ride_along_slots,
    rides_along,
)
from khqrpay.settings import Settings

S = 1_000
MIN = 60 * S
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_795_651_200_000

# The issue's defaults, spelled out so these tests do not depend on the environment.
POLICY = SchedulePolicy(
    initial_delay_ms=5 * S,
    fast_interval_ms=2 * S,
    watched_interval_ms=1 * S,
    fresh_window_ms=30 * S,
    hot_window_ms=15 * MIN,
    age_factor=0.1,
    max_interval_ms=30 * MIN,
    payment_window_ms=30 * DAY,
    final_grace_ms=60 * S,
    early_fraction=0.5,
    error_backoff_max_ms=60 * S,
    ride_along_after_ms=30 * S,
    sweep_interval_ms=100 * S,
)
END = T0 + 30 * DAY
FINAL = END + 60 * S


def next_check(now: int, *, hot_until: int | None = None, created: int = T0) -> int | None:
    return POLICY.next_check_ms(
        created_ms=created, now_ms=now, hot_until_ms=hot_until, window_end_ms=created + 30 * DAY
    )


# --- settings -----------------------------------------------------------------------------------


def test_from_settings_defaults_are_the_issues_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KHQRPAY_"):
            monkeypatch.delenv(name)
    assert Settings(_env_file=None).schedule_policy() == POLICY


def test_from_settings_reads_the_environment_in_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KHQRPAY_SCHEDULE_FAST_INTERVAL_S", "3.5")
    monkeypatch.setenv("KHQRPAY_SCHEDULE_WATCHED_INTERVAL_S", "0.75")
    monkeypatch.setenv("KHQRPAY_PAYMENT_WINDOW_S", "86400")
    monkeypatch.setenv("KHQRPAY_SCHEDULE_FINAL_GRACE_S", "0")
    monkeypatch.setenv("KHQRPAY_SCHEDULE_RIDE_ALONG_AFTER_S", "90")
    monkeypatch.setenv("KHQRPAY_SCHEDULE_SWEEP_INTERVAL_S", "75")
    policy = Settings(_env_file=None).schedule_policy()
    assert policy.fast_interval_ms == 3_500
    assert policy.watched_interval_ms == 750
    assert policy.payment_window_ms == DAY
    assert policy.final_grace_ms == 0
    assert policy.ride_along_after_ms == 90 * S
    assert policy.sweep_interval_ms == 75 * S


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"initial_delay_ms": -1}, "initial_delay_ms"),
        ({"fresh_window_ms": -1}, "fresh_window_ms"),
        ({"fast_interval_ms": 0}, "fast_interval_ms"),
        ({"watched_interval_ms": 0}, "watched_interval_ms"),
        ({"payment_window_ms": 0}, "payment_window_ms"),
        ({"max_interval_ms": 1_000}, "max_interval_ms"),
        ({"error_backoff_max_ms": 1_000}, "error_backoff_max_ms"),
        ({"age_factor": 0.0}, "age_factor"),
        ({"age_factor": float("inf")}, "age_factor"),
        ({"early_fraction": 1.0}, "early_fraction"),
        ({"early_fraction": -0.1}, "early_fraction"),
        ({"ride_along_after_ms": 0}, "ride_along_after_ms"),
        ({"sweep_interval_ms": 0}, "sweep_interval_ms"),
    ],
)
def test_inconsistent_policies_are_refused(change: dict[str, float], message: str) -> None:
    fields = {name: getattr(POLICY, name) for name in POLICY.__dataclass_fields__}
    with pytest.raises(ValueError, match=message):
        SchedulePolicy(**{**fields, **change})


def test_policy_is_immutable() -> None:
    with pytest.raises(AttributeError):
        POLICY.fast_interval_ms = 1  # type: ignore[misc]


# --- the regular schedule ------------------------------------------------------------------------


def test_first_check_waits_the_initial_delay() -> None:
    assert POLICY.first_check_ms(T0) == T0 + 5 * S
    assert POLICY.window_end_ms(T0) == END
    assert POLICY.final_check_ms(END) == FINAL


@pytest.mark.parametrize(
    ("age_ms", "hot", "interval_ms"),
    [
        (0, False, 2 * S),
        (30 * S - 1, False, 2 * S),  # fresh
        (30 * S, False, 3 * S),  # 10% of the age from then on
        (MIN, False, 6 * S),
        (15 * MIN, False, 90 * S),
        (HOUR, False, 6 * MIN),
        (5 * HOUR, False, 30 * MIN),  # reaches the cap
        (20 * DAY, False, 30 * MIN),
        (20 * DAY, True, 1 * S),  # a watching customer makes any age the watched pace
        (0, True, 1 * S),  # fresh and watched: the watched pace, faster than fresh
    ],
)
def test_interval_by_age(age_ms: int, hot: bool, interval_ms: int) -> None:
    assert POLICY.interval_ms(age_ms=age_ms, hot=hot) == interval_ms


def test_a_watched_interval_longer_than_the_fast_one_is_the_fast_one() -> None:
    slow_watch = dataclasses.replace(POLICY, watched_interval_ms=5 * S)
    assert slow_watch.interval_ms(age_ms=0, hot=True) == 2 * S
    assert slow_watch.interval_ms(age_ms=20 * DAY, hot=True) == 2 * S


def test_interval_refuses_a_negative_age() -> None:
    with pytest.raises(ValueError, match="age_ms"):
        POLICY.interval_ms(age_ms=-1, hot=False)


def test_next_check_is_fast_while_fresh_then_grows_with_age() -> None:
    assert next_check(T0 + 5 * S) == T0 + 7 * S
    assert next_check(T0 + 25 * S) == T0 + 27 * S
    assert next_check(T0 + 50 * S) == T0 + 55 * S
    assert next_check(T0 + 14 * MIN) == T0 + 14 * MIN + 84 * S
    assert next_check(T0 + HOUR) == T0 + HOUR + 6 * MIN
    assert next_check(T0 + 2 * DAY) == T0 + 2 * DAY + 30 * MIN


def test_next_check_is_fast_while_hot_and_not_after() -> None:
    now = T0 + 2 * DAY
    assert next_check(now, hot_until=now + 1) == now + 1 * S
    assert next_check(now, hot_until=now) == now + 30 * MIN  # hot until is exclusive
    assert next_check(now, hot_until=now - HOUR) == now + 30 * MIN


def test_the_last_regular_check_is_followed_by_exactly_one_final_check() -> None:
    assert next_check(END - 30 * MIN) == END  # lands exactly on the end: still regular
    assert next_check(END) == FINAL
    assert next_check(END - MIN) == FINAL  # would overshoot the end: go to the final check
    assert (
        next_check(END - 29 * MIN - 30 * S) == FINAL
    )  # not END + 30 s: past the end, only the final
    assert next_check(END + 30 * S) == FINAL  # e.g. after an error retry past the end
    assert next_check(FINAL) is None
    assert next_check(FINAL + DAY) is None


def test_a_hot_payment_stays_fast_up_to_the_final_check() -> None:
    assert next_check(END - S, hot_until=END + HOUR) == END
    assert next_check(FINAL - S, hot_until=END + HOUR) == FINAL
    assert next_check(FINAL, hot_until=END + HOUR) is None


def test_next_check_refuses_impossible_times() -> None:
    with pytest.raises(ValueError, match="before the payment was created"):
        next_check(T0 - 1)
    with pytest.raises(ValueError, match="window_end_ms"):
        POLICY.next_check_ms(created_ms=T0, now_ms=T0, hot_until_ms=None, window_end_ms=T0 - 1)


def test_an_unpaid_payment_over_its_whole_window() -> None:
    """Walk a never-paid payment through 30 days on a FakeClock: the schedule's shape and cost."""
    clock = FakeClock(T0)
    checks = [POLICY.first_check_ms(T0)]
    while (following := next_check(checks[-1])) is not None:
        clock.set(following)
        checks.append(clock.now_ms())
    gaps = [later - earlier for earlier, later in itertools.pairwise(checks)]
    assert checks[0] == T0 + 5 * S
    fresh = [gap for check, gap in zip(checks, gaps, strict=False) if check - T0 < 30 * S]
    assert set(fresh) == {2 * S}
    assert len(fresh) == (30 * S - 5 * S) // (2 * S) + 1
    assert gaps[:-1] == sorted(gaps[:-1])  # regular gaps only grow with age
    assert max(gaps[:-1]) == 30 * MIN
    assert checks[-2] <= END < checks[-2] + 30 * MIN  # the last regular check, then ...
    assert checks[-1] == FINAL  # ... exactly one final check
    assert len(checks) < 2_000  # against ~1.3 million for a naive check every 2 s


# --- earliest check (batch filling) --------------------------------------------------------------


def test_earliest_check_is_a_fraction_of_the_interval_early() -> None:
    now = T0 + 2 * DAY
    assert (
        POLICY.earliest_check_ms(checked_ms=now, next_check_ms=now + 30 * MIN, window_end_ms=END)
        == now + 15 * MIN
    )
    assert POLICY.earliest_check_ms(
        checked_ms=now, next_check_ms=now + 2 * S, window_end_ms=END
    ) == (now + S)


def test_checks_past_the_window_end_are_never_early() -> None:
    assert POLICY.earliest_check_ms(
        checked_ms=END - MIN, next_check_ms=FINAL, window_end_ms=END
    ) == (FINAL)


def test_earliest_check_refuses_a_next_check_in_the_past() -> None:
    with pytest.raises(ValueError, match="next_check_ms"):
        POLICY.earliest_check_ms(checked_ms=T0 + S, next_check_ms=T0, window_end_ms=END)


# --- a customer watching ------------------------------------------------------------------------


def watch(now: int, *, last: int | None, next_ms: int, earliest: int | None = None) -> Watch:
    return POLICY.watch(
        created_ms=T0,
        now_ms=now,
        last_checked_ms=last,
        next_check_ms=next_ms,
        earliest_check_ms=next_ms if earliest is None else earliest,
    )


def test_watching_makes_the_payment_hot_and_checks_now() -> None:
    now = T0 + 3 * DAY
    result = watch(now, last=now - 20 * MIN, next_ms=now + 10 * MIN, earliest=now - MIN)
    assert result.hot_until_ms == now + 15 * MIN
    assert result.next_check_ms == now
    assert result.earliest_check_ms == now - MIN  # already eligible: stays so


def test_watching_right_after_a_check_waits_one_watched_interval() -> None:
    now = T0 + 3 * DAY
    result = watch(now, last=now - 300, next_ms=now + 30 * MIN, earliest=now + 15 * MIN)
    assert result.next_check_ms == now + 700
    assert result.earliest_check_ms == now + 700


def test_watching_never_delays_a_check_or_precedes_the_first_one() -> None:
    assert watch(T0, last=None, next_ms=T0 + 5 * S).next_check_ms == T0 + 5 * S
    assert watch(T0 + 10 * S, last=T0 + 9 * S, next_ms=T0 + 10 * S).next_check_ms == T0 + 10 * S


def test_watch_refuses_impossible_input() -> None:
    with pytest.raises(ValueError, match="before it was created"):
        watch(T0 - 1, last=None, next_ms=T0 + 5 * S)
    with pytest.raises(ValueError, match="earliest_check_ms"):
        watch(T0 + MIN, last=None, next_ms=T0 + 5 * S, earliest=T0 + 6 * S)


# --- Bakong errors ------------------------------------------------------------------------------


def test_unauthorized_stops_checking() -> None:
    assert POLICY.error_backoff_ms(ErrorKind.UNAUTHORIZED, consecutive_errors=1) is None


def test_rate_limits_honour_retry_after() -> None:
    backoff = POLICY.error_backoff_ms
    assert backoff(ErrorKind.RATE_LIMITED, consecutive_errors=1, retry_after_s=7.2) == 7_200
    assert backoff(ErrorKind.RATE_LIMITED, consecutive_errors=9, retry_after_s=600) == 600 * S
    assert backoff(ErrorKind.RATE_LIMITED, consecutive_errors=1, retry_after_s=0.0001) == 2 * S
    assert backoff(ErrorKind.RATE_LIMITED, consecutive_errors=3) == 8 * S  # no header: exponential


@pytest.mark.parametrize("kind", [ErrorKind.UNAVAILABLE, ErrorKind.BLOCKED, ErrorKind.BAD_RESPONSE])
def test_other_errors_back_off_exponentially_up_to_the_cap(kind: ErrorKind) -> None:
    delays = [POLICY.error_backoff_ms(kind, consecutive_errors=n) for n in range(1, 9)]
    assert delays == [2 * S, 4 * S, 8 * S, 16 * S, 32 * S, 60 * S, 60 * S, 60 * S]
    assert POLICY.error_backoff_ms(kind, consecutive_errors=10**9) == 60 * S


@pytest.mark.parametrize(
    ("consecutive", "retry_after", "message"),
    [
        (0, None, "consecutive_errors"),
        (1, -1.0, "retry_after_s"),
        (1, float("nan"), "retry_after_s"),
        (1, float("inf"), "retry_after_s"),
    ],
)
def test_backoff_refuses_bad_input(
    consecutive: int, retry_after: float | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        POLICY.error_backoff_ms(
            ErrorKind.RATE_LIMITED, consecutive_errors=consecutive, retry_after_s=retry_after
        )


# --- batch planning -----------------------------------------------------------------------------

RIDE_AFTER = 60 * S


def due(payment_id: int, next_ms: int) -> Candidate[int]:
    return Candidate(payment_id, next_ms, next_ms)


def early(payment_id: int, next_ms: int, earliest_ms: int) -> Candidate[int]:
    return Candidate(payment_id, next_ms, earliest_ms)


def rider(payment_id: int, last_checked_ms: int | None) -> Candidate[int]:
    return Candidate(payment_id, T0 + 20 * MIN, T0 + 10 * MIN, last_checked_ms)


def plan(
    candidates: list[Candidate[int]],
    *,
    ride_along_after_ms: int | None = RIDE_AFTER,
    sweep: bool = False,
    max_per_call: int = MD5_LIST_LIMIT,
) -> list[tuple[Candidate[int], ...]]:
    return plan_batches(
        candidates,
        now_ms=T0,
        ride_along_after_ms=ride_along_after_ms,
        sweep=sweep,
        max_per_call=max_per_call,
    )


def ids(batches: list[tuple[Candidate[int], ...]]) -> list[list[int]]:
    return [[candidate.payment_id for candidate in batch] for batch in batches]


def test_no_due_payment_means_no_call() -> None:
    assert plan([early(1, T0 + S, T0 - S), rider(2, T0 - HOUR)]) == []
    assert plan([]) == []


def test_a_call_made_anyway_carries_early_payments_soonest_first_then_ride_alongs() -> None:
    candidates = [
        early(10, T0 + 900, T0 - 100),
        due(1, T0),
        early(11, T0 + 100, T0),
        early(12, T0 + 50, T0 + 1),  # not early yet, and checked too recently to ride along
        rider(20, T0 - 2 * MIN),
        rider(21, T0 - 5 * MIN),  # checked the longest ago
        rider(22, T0 - RIDE_AFTER + 1),  # checked less than a minute ago
        rider(23, None),  # never checked: its first check comes on time
        due(2, T0 - 500),
    ]
    assert ids(plan(candidates)) == [[2, 1, 11, 10, 21, 20]]


def test_without_ride_alongs_only_early_payments_fill_the_call() -> None:
    candidates = [due(1, T0), early(10, T0 + 900, T0 - 100), rider(21, T0 - 5 * MIN)]
    assert ids(plan(candidates, ride_along_after_ms=None)) == [[1, 10]]
    with pytest.raises(ValueError, match="ride_along_after_ms"):
        plan(candidates, ride_along_after_ms=0)


def test_ride_along_slots_are_the_free_places_of_the_calls_the_due_ones_need() -> None:
    assert ride_along_slots(0) == 0  # ride-alongs never cause a call
    assert ride_along_slots(1) == 49
    assert ride_along_slots(50) == 0
    assert ride_along_slots(51) == 49
    assert ride_along_slots(7, max_per_call=3) == 2
    with pytest.raises(ValueError, match="due_count"):
        ride_along_slots(-1)
    with pytest.raises(ValueError, match="max_per_call"):
        ride_along_slots(1, max_per_call=MD5_LIST_LIMIT + 1)


def test_every_due_payment_is_checked_and_every_call_is_filled() -> None:
    overdue = [due(i, T0 - i) for i in range(120)]
    spare = [early(1_000 + i, T0 + i + 1, T0) for i in range(10)]
    riders = [rider(2_000 + i, T0 - HOUR + i * S) for i in range(100)]
    batches = plan([*riders, *spare, *overdue])
    assert [len(batch) for batch in batches] == [50, 50, 50]
    assert ids(batches)[0][:3] == [119, 118, 117]  # most overdue first
    assert ids(batches)[2][20:30] == list(range(1_000, 1_010))  # then the early ones
    assert ids(batches)[2][30:] == list(range(2_000, 2_020))  # then the longest unchecked


def test_a_sweep_is_due_once_the_longest_unchecked_payment_has_waited_its_interval() -> None:
    assert not POLICY.sweep_due(oldest_checked_ms=None, now_ms=T0)  # nothing checked yet
    assert not POLICY.sweep_due(oldest_checked_ms=T0 - 100 * S + 1, now_ms=T0)
    assert POLICY.sweep_due(oldest_checked_ms=T0 - 100 * S, now_ms=T0)
    assert POLICY.sweep_due(oldest_checked_ms=T0 - DAY, now_ms=T0)


def test_a_due_sweep_makes_one_full_call_of_early_payments_then_the_longest_unchecked() -> None:
    riders = [rider(2_000 + i, T0 - HOUR + i * S) for i in range(60)]
    candidates = [*riders, early(10, T0 + 900, T0 - 100), rider(23, None)]
    assert plan(candidates) == []  # no sweep due: no call
    assert ids(plan(candidates, sweep=True)) == [[10, *range(2_000, 2_049)]]
    assert ids(plan(candidates, sweep=True, max_per_call=1)) == [[10]]  # single checks


def test_a_sweep_adds_no_call_to_the_calls_made_anyway_nor_one_with_nothing_to_carry() -> None:
    candidates = [due(1, T0), *(rider(2_000 + i, T0 - HOUR + i * S) for i in range(80))]
    assert plan(candidates, sweep=True) == plan(candidates)
    assert ids(plan(candidates, sweep=True)) == [[1, *range(2_000, 2_049)]]
    assert plan([rider(22, T0 - RIDE_AFTER + 1), rider(23, None)], sweep=True) == []
    assert ride_along_slots(0, sweep=True) == MD5_LIST_LIMIT
    assert ride_along_slots(0, sweep=True, max_per_call=1) == 1
    assert ride_along_slots(1, sweep=True) == 49


def test_a_ride_along_leaves_the_schedule_and_an_early_check_counts_as_the_next() -> None:
    assert rides_along(earliest_check_ms=T0 + 1, now_ms=T0)
    assert not rides_along(earliest_check_ms=T0, now_ms=T0)
    assert not rides_along(earliest_check_ms=None, now_ms=T0)


def test_max_per_call_is_bounded_by_bakong() -> None:
    assert [len(b) for b in plan([due(i, T0) for i in range(7)], max_per_call=3)] == [3, 3, 1]
    for bad in (0, MD5_LIST_LIMIT + 1):
        with pytest.raises(ValueError, match="max_per_call"):
            plan([due(1, T0)], max_per_call=bad)


def test_a_payment_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        plan([due(1, T0), early(1, T0 + 5, T0)])


def test_a_candidate_cannot_be_eligible_after_it_is_due() -> None:
    with pytest.raises(ValueError, match="earliest_check_ms"):
        Candidate(1, T0, T0 + 1)


# --- the naive schedule (the yardstick) -----------------------------------------------------------

NAIVE = NaiveSchedule()


def test_the_naive_schedule_checks_every_2_s_from_the_age_of_one_minute() -> None:
    assert NAIVE.checks(created_ms=0, until_ms=59_999) == 0
    assert NAIVE.checks(created_ms=0, until_ms=60_000) == 1
    assert NAIVE.checks(created_ms=0, until_ms=61_999) == 1
    assert NAIVE.checks(created_ms=0, until_ms=62_000) == 2
    assert NAIVE.checks(created_ms=0, until_ms=HOUR) == (HOUR - MIN) // (2 * S) + 1


@pytest.mark.parametrize(
    ("paid_ms", "found_after_ms"),
    [(1_000, 59_000), (60_000, 0), (60_001, 1_999), (62_000, 0), (3_600_500, 1_500)],
)
def test_the_naive_schedule_finds_a_payment_at_its_next_check(
    paid_ms: int, found_after_ms: int
) -> None:
    assert NAIVE.detection_ms(created_ms=0, paid_ms=paid_ms) == found_after_ms
    assert NAIVE.found_ms(created_ms=T0, paid_ms=T0 + paid_ms) == T0 + paid_ms + found_after_ms


def test_a_naive_schedule_needs_a_positive_interval_and_no_negative_age() -> None:
    with pytest.raises(ValueError, match="interval_ms"):
        NaiveSchedule(interval_ms=0)
    with pytest.raises(ValueError, match="min_age_ms"):
        NaiveSchedule(min_age_ms=-1)
