"""Properties of the verification schedule that hold for every valid policy (Hypothesis)."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from khqrpay.orders.schedule import (
    MD5_LIST_LIMIT,
    Candidate,
    ErrorKind,
    SchedulePolicy,
    plan_batches,
    ride_along_slots,
)

T0 = 1_795_651_200_000


@st.composite
def policies(draw: st.DrawFn) -> SchedulePolicy:
    # Figures relative to the fast interval keep a payment's life to a few thousand checks.
    fast = draw(st.integers(1, 5_000))
    max_interval = draw(st.integers(fast, 100 * fast))
    return SchedulePolicy(
        initial_delay_ms=draw(st.integers(0, 10 * fast)),
        fast_interval_ms=fast,
        watched_interval_ms=draw(st.integers(max(1, fast // 4), 2 * fast)),
        fresh_window_ms=draw(st.integers(0, 50 * fast)),
        hot_window_ms=draw(st.integers(0, 50 * fast)),
        age_factor=draw(st.floats(0.01, 2.0)),
        max_interval_ms=max_interval,
        payment_window_ms=draw(st.integers(1, 200 * max_interval)),
        final_grace_ms=draw(st.integers(0, 10 * fast)),
        early_fraction=draw(st.floats(0.0, 0.99)),
        error_backoff_max_ms=draw(st.integers(fast, 100 * fast)),
        ride_along_after_ms=draw(st.integers(1, 2 * max_interval)),
        sweep_interval_ms=draw(st.integers(1, 2 * max_interval)),
    )


@given(policies(), st.integers(0, 10**10), st.integers(-(10**10), 10**10), st.booleans())
def test_next_check_is_after_now_and_never_past_the_final_check(
    policy: SchedulePolicy, age: int, hot_offset: int, has_hot: bool
) -> None:
    created = T0
    now = created + age
    end = policy.window_end_ms(created)
    final = policy.final_check_ms(end)
    hot_until = now + hot_offset if has_hot else None
    following = policy.next_check_ms(
        created_ms=created, now_ms=now, hot_until_ms=hot_until, window_end_ms=end
    )
    if now >= final:
        assert following is None
        return
    assert following is not None
    assert now < following <= final
    hot = hot_until is not None and now < hot_until
    if hot:
        assert following - now <= policy.hot_interval_ms <= policy.fast_interval_ms
    elif following > end:
        assert following == final  # past the end there is only the final check


@given(policies(), st.integers(0, 10**10), st.integers(0, 10**10))
def test_interval_never_shrinks_with_age_and_stays_in_bounds(
    policy: SchedulePolicy, first: int, second: int
) -> None:
    younger, older = sorted((first, second))
    young_interval = policy.interval_ms(age_ms=younger, hot=False)
    old_interval = policy.interval_ms(age_ms=older, hot=False)
    assert policy.fast_interval_ms <= young_interval <= old_interval <= policy.max_interval_ms
    hot_interval = min(policy.watched_interval_ms, policy.fast_interval_ms)
    assert policy.interval_ms(age_ms=older, hot=True) == hot_interval


# What happens before each check: whether a customer opens the page first (1 in 10), and where
# in its allowed range the visit and then the check fall (0: as early as allowed, 1: as late).
Moment = tuple[bool, float, float]
moments = st.tuples(st.integers(0, 9).map(lambda n: n == 9), st.floats(0, 1), st.floats(0, 1))


def _within(low: int, high: int, fraction: float) -> int:
    return low + math.floor((high - low) * fraction)


@given(policies(), st.lists(moments, min_size=1, max_size=16))
def test_a_payments_life_ends_with_exactly_one_final_check(
    policy: SchedulePolicy, plan: list[Moment]
) -> None:
    """Checks run anywhere in their [earliest, next] slot (batch filling), customers watch at random
    moments: the checks still only move forward, stay within the window plus grace, and the very
    last one is the final check, made once and never early.

    The moments are drawn up front and repeated over the payment's life: a draw per check made the
    amount of data depend on the life's length (thousands of checks), so examples overran
    Hypothesis' buffer and were cut short differently on replay."""
    created = T0
    end = policy.window_end_ms(created)
    final = policy.final_check_ms(end)
    next_ms = earliest = policy.first_check_ms(created)
    last: int | None = None
    hot_until: int | None = None
    checks: list[int] = []
    for watches, visit, check in itertools.cycle(plan):
        if watches:  # a customer opens the page before the check
            watched_at = _within(last if last is not None else created, next_ms, visit)
            watch = policy.watch(
                created_ms=created,
                now_ms=watched_at,
                last_checked_ms=last,
                next_check_ms=next_ms,
                earliest_check_ms=earliest,
            )
            assert watch.next_check_ms <= next_ms
            assert watch.next_check_ms >= watched_at
            assert watch.earliest_check_ms <= watch.next_check_ms
            hot_until, next_ms, earliest = (
                watch.hot_until_ms,
                watch.next_check_ms,
                watch.earliest_check_ms,
            )
        now = _within(earliest, next_ms, check)
        assert last is None or now >= last
        checks.append(now)
        following = policy.next_check_ms(
            created_ms=created, now_ms=now, hot_until_ms=hot_until, window_end_ms=end
        )
        if following is None:
            break
        if hot_until is None or now >= hot_until:
            assert following <= end or following == final  # regular checks stay in the window
        assert len(checks) < 20_000, "the schedule must end"
        last, next_ms = now, following
        earliest = policy.earliest_check_ms(
            checked_ms=now, next_check_ms=following, window_end_ms=end
        )
        assert now < earliest <= next_ms
    assert checks[-1] == final
    assert sum(1 for check in checks if check >= final) == 1
    assert all(check <= final for check in checks)


@given(policies(), st.integers(0, 10**9), st.integers(1, 10**9), st.integers(-(10**9), 10**9))
def test_earliest_check_is_within_the_fraction_and_never_early_past_the_end(
    policy: SchedulePolicy, checked_offset: int, gap: int, end_offset: int
) -> None:
    checked = T0 + checked_offset
    following = checked + gap
    end = following + end_offset
    earliest = policy.earliest_check_ms(
        checked_ms=checked, next_check_ms=following, window_end_ms=end
    )
    assert checked <= earliest <= following
    assert following - earliest <= policy.early_fraction * gap
    if following > end:
        assert earliest == following


@given(
    policies(),
    st.integers(0, 10**6),
    st.integers(0, 10**6),
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.integers(0, 10**6),
)
def test_watching_pulls_the_next_check_forward_but_not_too_close(
    policy: SchedulePolicy, now_offset: int, next_offset: int, last_back: int | None, slack: int
) -> None:
    now = T0 + now_offset
    next_ms = now + next_offset
    last = None if last_back is None else max(T0, now - last_back)
    watch = policy.watch(
        created_ms=T0,
        now_ms=now,
        last_checked_ms=last,
        next_check_ms=next_ms,
        earliest_check_ms=next_ms - min(slack, next_offset),
    )
    assert watch.hot_until_ms == now + policy.hot_window_ms
    assert now <= watch.next_check_ms <= next_ms
    assert watch.next_check_ms <= max(now + policy.hot_interval_ms, T0 + policy.initial_delay_ms)
    if last is not None:  # a reloading page never makes checks closer than the hot interval
        assert watch.next_check_ms >= min(next_ms, last + policy.hot_interval_ms)
    assert watch.earliest_check_ms <= watch.next_check_ms


@given(
    policies(),
    st.sampled_from(list(ErrorKind)),
    st.integers(1, 200),
    st.one_of(st.none(), st.floats(0, 10**5)),
)
def test_error_backoff_is_bounded_and_grows(
    policy: SchedulePolicy, kind: ErrorKind, errors: int, retry_after: float | None
) -> None:
    delay = policy.error_backoff_ms(kind, consecutive_errors=errors, retry_after_s=retry_after)
    if kind is ErrorKind.UNAUTHORIZED:
        assert delay is None
        return
    assert delay is not None
    assert delay >= policy.fast_interval_ms
    if kind is ErrorKind.RATE_LIMITED and retry_after is not None:
        assert delay >= retry_after * 1000
        return
    assert delay <= policy.error_backoff_max_ms
    following = policy.error_backoff_ms(kind, consecutive_errors=errors + 1)
    assert following is not None
    assert following >= delay


@st.composite
def candidate_sets(draw: st.DrawFn) -> list[Candidate[int]]:
    count = draw(st.integers(0, 180))
    candidates = []
    for payment_id in range(count):
        next_ms = T0 + draw(st.integers(-5_000, 5_000))
        earliest_ms = next_ms - draw(st.integers(0, 5_000))
        last_ms = draw(st.one_of(st.none(), st.integers(T0 - 10_000, T0)))
        candidates.append(Candidate(payment_id, next_ms, earliest_ms, last_ms))
    return draw(st.permutations(candidates))


@given(
    candidate_sets(),
    st.integers(1, MD5_LIST_LIMIT),
    st.one_of(st.none(), st.integers(1, 6_000)),
    st.booleans(),
)
def test_plan_batches_checks_every_due_payment_and_fills_calls_only(
    candidates: list[Candidate[int]], max_per_call: int, ride_after: int | None, sweep: bool
) -> None:
    now = T0
    batches = plan_batches(
        candidates,
        now_ms=now,
        ride_along_after_ms=ride_after,
        sweep=sweep,
        max_per_call=max_per_call,
    )
    planned = [candidate for batch in batches for candidate in batch]
    due = [c for c in candidates if c.next_check_ms <= now]
    early = [c for c in candidates if c.earliest_check_ms <= now < c.next_check_ms]
    riders = [
        c
        for c in candidates
        if now < c.earliest_check_ms
        and ride_after is not None
        and c.last_checked_ms is not None
        and c.last_checked_ms <= now - ride_after
    ]
    assert len({c.payment_id for c in planned}) == len(planned)
    assert {c.payment_id for c in due} <= {c.payment_id for c in planned}
    assert all(c in due or c in early or c in riders for c in planned)
    assert all(1 <= len(batch) <= max_per_call for batch in batches)
    # The due ones make calls, and a due sweep one call when none is due and it has passengers.
    swept = sweep and not due and bool(early or riders)
    assert len(batches) == math.ceil(len(due) / max_per_call) + swept
    free_places = len(batches) * max_per_call - len(due)
    if batches:
        assert free_places == ride_along_slots(len(due), sweep=sweep, max_per_call=max_per_call)
    fill = planned[len(due) :]
    assert len(fill) == min(len(early) + len(riders), free_places)  # every call full, if it can be
    assert planned[: len(due)] == sorted(due, key=lambda c: c.next_check_ms)
    chosen_early = [c for c in fill if c in early]
    chosen_riders = [c for c in fill if c in riders]
    assert fill == chosen_early + chosen_riders  # early ones first
    assert chosen_early == sorted(chosen_early, key=lambda c: c.next_check_ms)
    assert [c.last_checked_ms for c in chosen_riders] == sorted(
        c.last_checked_ms for c in chosen_riders if c.last_checked_ms is not None
    )
    left_early = [c for c in early if c not in chosen_early]
    if left_early:
        assert not chosen_riders
    if left_early and chosen_early:
        assert max(c.next_check_ms for c in chosen_early) <= min(
            c.next_check_ms for c in left_early
        )
    left_riders = [c for c in riders if c not in chosen_riders]
    if chosen_riders and left_riders:
        assert max(c.last_checked_ms or 0 for c in chosen_riders) <= min(
            c.last_checked_ms or 0 for c in left_riders
        )


@given(st.integers(0, 10**6), st.integers(1, MD5_LIST_LIMIT))
def test_ride_alongs_fill_the_last_call_and_never_make_one(due: int, max_per_call: int) -> None:
    slots = ride_along_slots(due, max_per_call=max_per_call)
    assert 0 <= slots < max_per_call
    assert (due + slots) % max_per_call == 0
    assert math.ceil((due + slots) / max_per_call) == math.ceil(due / max_per_call)
    # A due sweep changes nothing when some payment is due, and makes one call when none is.
    swept = ride_along_slots(due, sweep=True, max_per_call=max_per_call)
    assert swept == (max_per_call if due == 0 else slots)
