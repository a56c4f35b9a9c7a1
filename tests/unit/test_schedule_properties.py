"""Properties of the verification schedule that hold for every valid policy (Hypothesis)."""

from __future__ import annotations

import math

from hypothesis import given, settings
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
        fresh_window_ms=draw(st.integers(0, 50 * fast)),
        hot_window_ms=draw(st.integers(0, 50 * fast)),
        age_factor=draw(st.floats(0.01, 2.0)),
        max_interval_ms=max_interval,
        payment_window_ms=draw(st.integers(1, 200 * max_interval)),
        final_grace_ms=draw(st.integers(0, 10 * fast)),
        early_fraction=draw(st.floats(0.0, 0.99)),
        error_backoff_max_ms=draw(st.integers(fast, 100 * fast)),
        ride_along_after_ms=draw(st.integers(1, 2 * max_interval)),
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
        assert following - now <= policy.fast_interval_ms
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
    assert policy.interval_ms(age_ms=older, hot=True) == policy.fast_interval_ms


# A life takes up to a few thousand checks: its time says more about the machine's load than the
# code, so no deadline.
@settings(deadline=None)
@given(policies(), st.data())
def test_a_payments_life_ends_with_exactly_one_final_check(
    policy: SchedulePolicy, data: st.DataObject
) -> None:
    """Checks run anywhere in their [earliest, next] slot (ride-alongs and early checks), customers
    watch at random moments: the due check only moves forward, regular checks stay within the
    window, ride-alongs leave the due check where it is, and the very last check is the final
    check, made once, at its time."""
    created = T0
    end = policy.window_end_ms(created)
    final = policy.final_check_ms(end)
    next_ms = earliest = policy.first_check_ms(created)
    last: int | None = None
    hot_until: int | None = None
    checks: list[int] = []
    rides_in_a_row = 0
    while True:
        if data.draw(st.integers(0, 9)) == 0:  # a customer opens the page before the check
            watched_at = data.draw(st.integers(last if last is not None else created, next_ms))
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
        # Two ride-alongs between due checks at most, or a life could take millions of checks.
        now = next_ms if rides_in_a_row >= 2 else data.draw(st.integers(earliest, next_ms))
        assert last is None or now >= last
        checks.append(now)
        following = policy.next_check_ms(
            created_ms=created,
            now_ms=now,
            hot_until_ms=hot_until,
            window_end_ms=end,
            due_ms=next_ms,
        )
        if following is None:
            break
        rode_along = following == next_ms and now < next_ms
        rides_in_a_row = rides_in_a_row + 1 if rode_along else 0
        if not rode_along:
            assert following > now
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


@given(
    policies(),
    st.integers(0, 10**9),
    st.integers(1, 10**9),
    st.integers(0, 10**9),
    st.one_of(st.none(), st.integers(0, 10**9)),
)
def test_a_ride_along_leaves_the_due_check_and_any_other_check_moves_on(
    policy: SchedulePolicy, age: int, ahead: int, window: int, hot_for: int | None
) -> None:
    created = T0
    now = created + age
    due = now + ahead
    end = max(created + window, due - policy.final_grace_ms)
    hot_until = None if hot_for is None else now + hot_for
    common = {"created_ms": created, "now_ms": now, "hot_until_ms": hot_until, "window_end_ms": end}
    moved_on = policy.next_check_ms(**common)
    following = policy.next_check_ms(**common, due_ms=due)
    hot = hot_until is not None and now < hot_until
    early_window = math.floor(policy.interval_ms(age_ms=age, hot=hot) * policy.early_fraction)
    if now >= policy.final_check_ms(end):
        assert following is None
    elif now < due - early_window:
        assert following == due  # a ride-along: the due check stays
    else:
        assert following == moved_on  # the due check, made early


@given(policies(), st.integers(0, 10**9), st.integers(1, 10**9), st.integers(-(10**9), 10**9))
def test_earliest_check_comes_after_the_ride_along_gap_or_the_early_fraction_whichever_is_sooner(
    policy: SchedulePolicy, checked_offset: int, gap: int, end_offset: int
) -> None:
    checked = T0 + checked_offset
    following = checked + gap
    end = following + end_offset
    earliest = policy.earliest_check_ms(
        checked_ms=checked, next_check_ms=following, window_end_ms=end
    )
    assert checked < earliest <= following
    if following > end:
        assert earliest == following  # past the window end: never early
        return
    assert earliest <= checked + policy.ride_along_after_ms
    slack = max(policy.early_fraction * gap, gap - policy.ride_along_after_ms)
    assert following - earliest <= slack
    if policy.ride_along_after_ms >= gap:  # today's policy: the early fraction alone
        assert following - earliest <= policy.early_fraction * gap


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
    assert watch.next_check_ms <= max(now + policy.fast_interval_ms, T0 + policy.initial_delay_ms)
    if last is not None:  # a reloading page never makes checks closer than the fast interval
        assert watch.next_check_ms >= min(next_ms, last + policy.fast_interval_ms)
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
        candidates.append(Candidate(payment_id, next_ms, next_ms - draw(st.integers(0, 5_000))))
    return draw(st.permutations(candidates))


@given(candidate_sets(), st.integers(1, MD5_LIST_LIMIT), st.integers(0, 6_000))
def test_plan_batches_checks_every_due_payment_and_fills_calls_most_overdue_first(
    candidates: list[Candidate[int]], max_per_call: int, soon_ms: int
) -> None:
    now = T0
    batches = plan_batches(candidates, now_ms=now, soon_ms=soon_ms, max_per_call=max_per_call)
    planned = [candidate for batch in batches for candidate in batch]
    due = [c for c in candidates if c.next_check_ms <= now]
    riders = [c for c in candidates if c.earliest_check_ms <= now < c.next_check_ms]
    assert len({c.payment_id for c in planned}) == len(planned)
    assert {c.payment_id for c in due} <= {c.payment_id for c in planned}
    assert all(c.earliest_check_ms <= now for c in planned)
    assert all(1 <= len(batch) <= max_per_call for batch in batches)
    assert len(batches) == math.ceil(len(due) / max_per_call)
    chosen = [c for c in planned if c.next_check_ms > now]
    free_places = len(batches) * max_per_call - len(due)
    assert free_places == ride_along_slots(len(due), max_per_call=max_per_call)
    assert len(chosen) == min(len(riders), free_places)  # every call full, if riders suffice
    assert planned[: len(due)] == sorted(due, key=lambda c: c.next_check_ms)

    def rank(candidate: Candidate[int]) -> tuple[int, int]:
        if candidate.next_check_ms <= now + soon_ms:
            return (0, candidate.next_check_ms)
        return (1, candidate.earliest_check_ms)

    left_out = [c for c in riders if c not in chosen]
    if chosen and left_out:
        assert max(map(rank, chosen)) <= min(map(rank, left_out))
    assert [rank(c) for c in chosen] == sorted(rank(c) for c in chosen)


@given(st.integers(0, 10**6), st.integers(1, MD5_LIST_LIMIT))
def test_ride_alongs_fill_the_last_call_and_never_make_one(due: int, max_per_call: int) -> None:
    slots = ride_along_slots(due, max_per_call=max_per_call)
    assert 0 <= slots < max_per_call
    assert (due + slots) % max_per_call == 0
    assert math.ceil((due + slots) / max_per_call) == math.ceil(due / max_per_call)
