from datetime import UTC, datetime

import pytest

from khqrpay.clock import FakeClock, SystemClock, datetime_to_ms, ms_to_datetime


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(1_000)
    assert clock.now_ms() == 1_000
    clock.advance(seconds=2.5)
    clock.advance(ms=5)
    assert clock.now_ms() == 3_505


def test_fake_clock_never_goes_backwards() -> None:
    clock = FakeClock(1_000)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(999)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(ms=-1)


def test_system_clock_is_near_now() -> None:
    now = datetime.now(UTC)
    assert abs(ms_to_datetime(SystemClock().now_ms()) - now).total_seconds() < 5


def test_datetime_conversions_round_trip_and_refuse_naive() -> None:
    assert datetime_to_ms(ms_to_datetime(1_795_651_200_000)) == 1_795_651_200_000
    with pytest.raises(ValueError, match="naive"):
        datetime_to_ms(datetime(2026, 1, 1))
