"""When pay-later customers pay: the pattern shops reported, as a distribution to sample from.

Shops saw 30% of KHQR orders paid within an hour, 50% within a day, 80% within a week, 95% within
a month, and 5% never. Between those points the cumulative distribution is interpolated
**log-linearly in time** (linear in `log t`): payments thin out as orders age, so each decade of
time gets a similar share instead of, say, the first minutes of a day-long segment getting as many
payments as its last minutes. Below the first point the curve starts at `earliest_s` (nobody scans
and confirms a QR faster), so the first segment is log-linear too.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field

HOUR_S = 3600.0
DAY_S = 24 * HOUR_S

# (delay in seconds, share of orders paid by then), as reported by shops.
REPORTED_POINTS: tuple[tuple[float, float], ...] = (
    (HOUR_S, 0.30),
    (DAY_S, 0.50),
    (7 * DAY_S, 0.80),
    (30 * DAY_S, 0.95),
)


@dataclass(frozen=True, slots=True)
class PayLaterDistribution:
    """The delay from order creation to payment; beyond the last point the customer never pays."""

    points: tuple[tuple[float, float], ...] = REPORTED_POINTS
    earliest_s: float = 10.0
    # The curve's knots: `(earliest_s, 0)` followed by `points`; derived, kept for bisecting.
    _delays: tuple[float, ...] = field(init=False, repr=False, compare=False)
    _shares: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a pay-later distribution needs at least one (delay, share) point")
        if not (math.isfinite(self.earliest_s) and self.earliest_s > 0):
            raise ValueError("earliest_s must be a positive number of seconds")
        delays = (self.earliest_s, *(delay for delay, _ in self.points))
        shares = (0.0, *(share for _, share in self.points))
        if not all(math.isfinite(value) for value in (*delays, *shares)):
            raise ValueError("delays and shares must be finite numbers")
        if any(later <= earlier for earlier, later in itertools.pairwise(delays)):
            raise ValueError("delays must increase strictly, starting after earliest_s")
        if any(later <= earlier for earlier, later in itertools.pairwise(shares)):
            raise ValueError("shares must increase strictly from 0")
        if shares[-1] > 1:
            raise ValueError("a share is a probability: at most 1")
        object.__setattr__(self, "_delays", delays)
        object.__setattr__(self, "_shares", shares)

    @property
    def never_share(self) -> float:
        """The share of orders never paid."""
        return 1.0 - self._shares[-1]

    def cdf(self, delay_s: float) -> float:
        """The share of orders paid within `delay_s` seconds of creation."""
        if math.isnan(delay_s):
            raise ValueError("delay_s must be a number")
        if delay_s <= self._delays[0]:
            return 0.0
        if delay_s >= self._delays[-1]:
            return self._shares[-1]
        segment = bisect_right(self._delays, delay_s) - 1
        start, end = self._delays[segment], self._delays[segment + 1]
        low, high = self._shares[segment], self._shares[segment + 1]
        return low + (high - low) * math.log(delay_s / start) / math.log(end / start)

    def quantile(self, share: float) -> float | None:
        """The delay by which `share` of orders are paid; None when that share never pays."""
        if not 0.0 <= share < 1.0:
            raise ValueError("share must be in [0, 1)")
        if share >= self._shares[-1]:
            return None
        segment = bisect_right(self._shares, share) - 1
        start, end = self._delays[segment], self._delays[segment + 1]
        low, high = self._shares[segment], self._shares[segment + 1]
        return start * math.pow(end / start, (share - low) / (high - low))

    def sample_delay_s(self, rng: random.Random) -> float | None:
        """One customer's delay in seconds (inverse-CDF sampling), or None if they never pay."""
        return self.quantile(rng.random())
