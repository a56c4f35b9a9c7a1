"""The pay-later distribution: its shape, its inverse, and what sampling it actually gives."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khqrpay.simulator.paylater import DAY_S, HOUR_S, REPORTED_POINTS, PayLaterDistribution

DIST = PayLaterDistribution()
DRAWS = 10_000
# 5 standard errors of a binomial share: P(|Z| > 5) = 5.7e-7 per point, so with 4 points a
# correct sampler fails this check with probability below 2.3e-6 for any seed.
SIGMAS = 5.0


@pytest.mark.parametrize(("delay_s", "share"), REPORTED_POINTS)
def test_cdf_passes_through_the_reported_points(delay_s: float, share: float) -> None:
    assert DIST.cdf(delay_s) == pytest.approx(share)


def test_cdf_is_log_linear_between_points() -> None:
    # The geometric mean of 1 h and 1 day sits halfway between 30% and 50% in log time.
    assert DIST.cdf(math.sqrt(HOUR_S * DAY_S)) == pytest.approx(0.40)
    # Linear interpolation would put 40% at the arithmetic mean; log-linear puts more before it.
    assert DIST.cdf((HOUR_S + DAY_S) / 2) > 0.45


def test_cdf_below_the_earliest_delay_is_zero_and_beyond_the_last_point_is_flat() -> None:
    assert DIST.cdf(-5.0) == 0.0
    assert DIST.cdf(DIST.earliest_s) == 0.0
    assert DIST.cdf(30 * DAY_S) == pytest.approx(0.95)
    assert DIST.cdf(365 * DAY_S) == pytest.approx(0.95)
    assert DIST.never_share == pytest.approx(0.05)


@given(st.floats(min_value=0.0, max_value=0.95, exclude_max=True))
def test_quantile_inverts_cdf(share: float) -> None:
    delay = DIST.quantile(share)
    assert delay is not None
    assert DIST.earliest_s <= delay <= 30 * DAY_S
    assert DIST.cdf(delay) == pytest.approx(share, abs=1e-9)


@given(st.floats(min_value=0.95, max_value=1.0, exclude_max=True))
def test_shares_beyond_the_last_point_never_pay(share: float) -> None:
    assert DIST.quantile(share) is None


@given(st.floats(min_value=0, max_value=60 * DAY_S), st.floats(min_value=0, max_value=60 * DAY_S))
def test_cdf_is_non_decreasing(first: float, second: float) -> None:
    low, high = sorted((first, second))
    assert DIST.cdf(low) <= DIST.cdf(high)


@pytest.mark.parametrize("seed", [20261126, 1, 2, 3])
def test_sampled_shares_match_the_reported_pattern(seed: int) -> None:
    rng = random.Random(seed)
    draws = [DIST.sample_delay_s(rng) for _ in range(DRAWS)]
    for delay_s, share in REPORTED_POINTS:
        observed = sum(1 for d in draws if d is not None and d <= delay_s) / DRAWS
        tolerance = SIGMAS * math.sqrt(share * (1 - share) / DRAWS)
        assert abs(observed - share) <= tolerance, (delay_s, observed, share)
    never = sum(1 for d in draws if d is None) / DRAWS
    assert abs(never - 0.05) <= SIGMAS * math.sqrt(0.05 * 0.95 / DRAWS)


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [DIST.sample_delay_s(random.Random(7)) for _ in range(3)]
    again = [DIST.sample_delay_s(random.Random(7)) for _ in range(3)]
    other = [DIST.sample_delay_s(random.Random(8)) for _ in range(3)]
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("points", "earliest_s", "message"),
    [
        ((), 10.0, "at least one"),
        (((3600.0, 0.3),), 0.0, "earliest_s"),
        (((3600.0, 0.3),), float("nan"), "earliest_s"),
        (((3600.0, 0.3), (1800.0, 0.5)), 10.0, "delays must increase"),
        (((5.0, 0.3),), 10.0, "delays must increase"),
        (((3600.0, 0.5), (7200.0, 0.5)), 10.0, "shares must increase"),
        (((3600.0, 0.0),), 10.0, "shares must increase"),
        (((3600.0, 1.5),), 10.0, "at most 1"),
        (((float("inf"), 0.5),), 10.0, "finite"),
    ],
)
def test_invalid_shapes_are_refused(
    points: tuple[tuple[float, float], ...], earliest_s: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        PayLaterDistribution(points=points, earliest_s=earliest_s)


@pytest.mark.parametrize("share", [-0.1, 1.0, float("nan")])
def test_quantile_refuses_shares_outside_0_1(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        DIST.quantile(share)


def test_cdf_refuses_nan() -> None:
    with pytest.raises(ValueError, match="number"):
        DIST.cdf(float("nan"))
