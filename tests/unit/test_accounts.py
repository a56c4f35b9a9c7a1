"""Staff accounts' rules (pure): user names, passwords, roles, the login throttle."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khqrpay.accounts import (
    AccountError,
    LoginThrottle,
    Role,
    parse_role,
    validate_new_password,
    validate_user_name,
)

MINUTE_MS = 60_000


def test_user_names_are_stored_lower_case_and_fit_the_audit_trail() -> None:
    assert validate_user_name("  Dara.K ") == "dara.k"
    for bad in ("d", "-dara", "dara k", "dára", "x" * 33, ""):
        with pytest.raises(AccountError):
            validate_user_name(bad)


def test_a_password_is_long_enough_and_not_the_obvious_one() -> None:
    assert validate_new_password("kampot-pepper-7", user_name="sam") == "kampot-pepper-7"
    for bad in ("short", "x" * 257, "aaaaaaaaaaaa", "SamSamSam1"[:0] + "sam"):
        with pytest.raises(AccountError):
            validate_new_password(bad, user_name="sam")
    with pytest.raises(AccountError, match="too easy"):
        validate_new_password("olivia.lee1", user_name="OLIVIA.LEE1")


def test_roles_are_read_whatever_their_case() -> None:
    assert parse_role(" Owner ") is Role.OWNER
    with pytest.raises(AccountError, match="owner, staff"):
        parse_role("admin")


def test_five_failures_for_a_name_wait_until_the_oldest_leaves_the_window() -> None:
    throttle = LoginThrottle(per_name=5, per_address=20, window_ms=15 * MINUTE_MS)
    failures = [0, MINUTE_MS, 2 * MINUTE_MS, 3 * MINUTE_MS, 4 * MINUTE_MS]
    now = 5 * MINUTE_MS
    assert throttle.retry_after_ms(name_failures=failures[:4], address_failures=[], now_ms=now) == 0
    assert (
        throttle.retry_after_ms(name_failures=failures, address_failures=[], now_ms=now)
        == 10 * MINUTE_MS
    )
    # Once the oldest has left the window, one more try is allowed.
    assert (
        throttle.retry_after_ms(name_failures=failures, address_failures=[], now_ms=15 * MINUTE_MS)
        == 0
    )


@given(
    failures=st.lists(st.integers(min_value=0, max_value=10 * 60 * MINUTE_MS), max_size=40),
    now=st.integers(min_value=10 * 60 * MINUTE_MS, max_value=12 * 60 * MINUTE_MS),
)
def test_the_throttle_allows_a_try_exactly_when_fewer_than_the_limit_failed_lately(
    failures: list[int], now: int
) -> None:
    throttle = LoginThrottle(per_name=5, per_address=20)
    recent = [at for at in failures if now - at < throttle.window_ms]
    wait = throttle.retry_after_ms(name_failures=failures, address_failures=[], now_ms=now)
    assert (wait == 0) == (len(recent) < 5)
    assert 0 <= wait <= throttle.window_ms
    if wait:  # after the wait, the limit is no longer reached
        later = [at for at in failures if now + wait - at < throttle.window_ms]
        assert len(later) < 5
