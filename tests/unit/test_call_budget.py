"""The request budget's arithmetic (`khqrpay.orders.budget`): who may use how much, the pace, and
that counting in one-second slots never lets any 60 s stretch hold more than the budget (nor any
10 s stretch more than the pace)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khqrpay.orders.budget import (
    PACE_MS,
    SLOT_MS,
    WINDOW_MS,
    CallBudget,
    CallPriority,
    counted_since_ms,
    slot_of,
)


def test_staff_may_use_it_all_the_verifier_all_but_the_reserve_customers_half_of_that() -> None:
    budget = CallBudget(calls_per_min=60, staff_reserved=6)
    assert budget.ceiling(CallPriority.STAFF) == 60
    assert budget.ceiling(CallPriority.VERIFIER) == 54
    assert budget.ceiling(CallPriority.CUSTOMER) == 27
    # Paced: a sixth of each share in any 10 s (rounded up), staff never held back.
    assert budget.pace(CallPriority.STAFF) == 60
    assert budget.pace(CallPriority.VERIFIER) == 9
    assert budget.pace(CallPriority.CUSTOMER) == 5
    assert CallBudget(calls_per_min=3, staff_reserved=1).pace(CallPriority.CUSTOMER) == 1


@pytest.mark.parametrize(
    ("priority", "used", "recent", "asked", "granted"),
    [
        (CallPriority.VERIFIER, 0, 0, 20, 9),  # the pace: 9 in any 10 s
        (CallPriority.VERIFIER, 40, 5, 10, 4),
        (CallPriority.VERIFIER, 50, 0, 10, 4),
        (CallPriority.VERIFIER, 54, 0, 1, 0),
        (CallPriority.STAFF, 54, 9, 10, 6),  # the reserve: a staff click is never refused for them
        (CallPriority.STAFF, 60, 0, 1, 0),
        (CallPriority.CUSTOMER, 26, 0, 5, 1),
        (CallPriority.CUSTOMER, 10, 5, 1, 0),
        (CallPriority.CUSTOMER, 27, 0, 1, 0),  # presses are deferred long before the verifier is
        (CallPriority.CUSTOMER, 70, 0, 1, 0),  # more used than allowed (a smaller budget now)
    ],
)
def test_grant_gives_what_is_left_under_the_callers_ceiling_and_pace(
    priority: CallPriority, used: int, recent: int, asked: int, granted: int
) -> None:
    budget = CallBudget(calls_per_min=60, staff_reserved=6)
    assert budget.grant(asked, used=used, recent=recent, priority=priority) == granted


def test_a_call_checks_50_qrs_with_the_list_and_one_without() -> None:
    budget = CallBudget(calls_per_min=60, staff_reserved=6)
    verifier = CallPriority.VERIFIER
    assert budget.md5s_affordable(used=50, recent=0, per_call=50, priority=verifier) == 200
    assert budget.md5s_affordable(used=50, recent=0, per_call=1, priority=verifier) == 4
    assert budget.md5s_affordable(used=20, recent=9, per_call=50, priority=verifier) == 0
    assert budget.md5s_affordable(used=54, recent=0, per_call=50, priority=verifier) == 0


@pytest.mark.parametrize(
    ("calls", "reserved"), [(0, 0), (10, 10), (10, -1)], ids=["no calls", "all reserved", "neg"]
)
def test_a_budget_that_cannot_work_is_refused(calls: int, reserved: int) -> None:
    with pytest.raises(ValueError, match=r"calls_per_min|staff_reserved"):
        CallBudget(calls_per_min=calls, staff_reserved=reserved)


def test_negative_asks_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        CallBudget(calls_per_min=5, staff_reserved=0).grant(
            -1, used=0, recent=0, priority=CallPriority.STAFF
        )


def test_a_call_counts_for_a_minute_after_its_slot_ends() -> None:
    made_ms = 1_000_000_400
    assert slot_of(made_ms) == 1_000_000_000
    # Counted while its slot starts after counted_since_ms(now): up to 61 s after the slot began.
    assert slot_of(made_ms) > counted_since_ms(made_ms + WINDOW_MS + SLOT_MS - 401)
    assert not slot_of(made_ms) > counted_since_ms(made_ms + WINDOW_MS + SLOT_MS - 400)


@settings(max_examples=200, deadline=None)
@given(
    limit=st.integers(min_value=1, max_value=30),
    asks=st.lists(
        st.tuples(
            # Gaps near the windows: where one that forgets calls too soon lets one more in.
            st.one_of(
                st.integers(0, 1_500), st.integers(8_500, 11_500), st.integers(58_500, 61_500)
            ),
            st.integers(min_value=1, max_value=8),
        ),
        min_size=1,
        max_size=150,
    ),
)
def test_no_60_second_stretch_ever_holds_more_than_the_budget(
    limit: int, asks: list[tuple[int, int]]
) -> None:
    """Processes asking at any moments, granted as the database does it: count the slots still
    counting, grant, add to the slot. Then every 60 s stretch, aligned or not, is checked, and
    every 10 s stretch against the pace."""
    budget = CallBudget(calls_per_min=limit, staff_reserved=0)
    slots: Counter[int] = Counter()
    made: list[int] = []
    now_ms = 0

    def counted(window_ms: int) -> int:
        since_ms = counted_since_ms(now_ms, window_ms)
        return sum(calls for slot, calls in slots.items() if slot > since_ms)

    for gap_ms, asked in asks:
        now_ms += gap_ms
        granted = budget.grant(
            asked,
            used=counted(WINDOW_MS),
            recent=counted(PACE_MS),
            priority=CallPriority.VERIFIER,
        )
        slots[slot_of(now_ms)] += granted
        made += [now_ms] * granted
    for start_ms in made:
        assert sum(start_ms <= at < start_ms + WINDOW_MS for at in made) <= limit
        assert sum(start_ms <= at < start_ms + PACE_MS for at in made) <= budget.pace(
            CallPriority.VERIFIER
        )
