"""The request budget's arithmetic (`khqrpay.orders.budget`): who may use how much, and that
counting in one-second slots never lets any 60 s stretch hold more than the budget."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from khqrpay.orders.budget import (
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


@pytest.mark.parametrize(
    ("priority", "used", "asked", "granted"),
    [
        (CallPriority.VERIFIER, 0, 10, 10),
        (CallPriority.VERIFIER, 50, 10, 4),
        (CallPriority.VERIFIER, 54, 1, 0),
        (CallPriority.STAFF, 54, 10, 6),  # the reserve: a staff click is never refused for them
        (CallPriority.STAFF, 60, 1, 0),
        (CallPriority.CUSTOMER, 26, 5, 1),
        (CallPriority.CUSTOMER, 27, 1, 0),  # presses are deferred long before the verifier is
        (CallPriority.CUSTOMER, 70, 1, 0),  # more used than allowed (a smaller budget now)
    ],
)
def test_grant_gives_what_is_left_under_the_callers_ceiling(
    priority: CallPriority, used: int, asked: int, granted: int
) -> None:
    budget = CallBudget(calls_per_min=60, staff_reserved=6)
    assert budget.grant(asked, used=used, priority=priority) == granted


def test_a_call_checks_50_qrs_with_the_list_and_one_without() -> None:
    budget = CallBudget(calls_per_min=60, staff_reserved=6)
    assert budget.md5s_affordable(used=50, per_call=50, priority=CallPriority.VERIFIER) == 200
    assert budget.md5s_affordable(used=50, per_call=1, priority=CallPriority.VERIFIER) == 4
    assert budget.md5s_affordable(used=54, per_call=50, priority=CallPriority.VERIFIER) == 0


@pytest.mark.parametrize(
    ("calls", "reserved"), [(0, 0), (10, 10), (10, -1)], ids=["no calls", "all reserved", "neg"]
)
def test_a_budget_that_cannot_work_is_refused(calls: int, reserved: int) -> None:
    with pytest.raises(ValueError, match=r"calls_per_min|staff_reserved"):
        CallBudget(calls_per_min=calls, staff_reserved=reserved)


def test_negative_asks_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        CallBudget(calls_per_min=5, staff_reserved=0).grant(-1, used=0, priority=CallPriority.STAFF)


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
            # Gaps near a minute: where a window that forgets calls too soon lets one more in.
            st.one_of(st.integers(0, 1_500), st.integers(58_500, 61_500)),
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
    counting, grant, add to the slot. Then every 60 s stretch, aligned or not, is checked."""
    budget = CallBudget(calls_per_min=limit, staff_reserved=0)
    slots: Counter[int] = Counter()
    made: list[int] = []
    now_ms = 0
    for gap_ms, asked in asks:
        now_ms += gap_ms
        since_ms = counted_since_ms(now_ms)
        used = sum(calls for slot, calls in slots.items() if slot > since_ms)
        granted = budget.grant(asked, used=used, priority=CallPriority.STAFF)
        slots[slot_of(now_ms)] += granted
        made += [now_ms] * granted
    for start_ms in made:
        assert sum(start_ms <= at < start_ms + WINDOW_MS for at in made) <= limit
