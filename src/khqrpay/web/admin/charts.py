"""The dashboard's chart of payments per hour: bars in an SVG drawn on the server, stretched to
the width the page has (the hour labels and the scale are HTML around it, so text keeps its size
on a phone and on a desk). No script, nothing inline the CSP would refuse; CSS colours it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from khqrpay.services.console import HourCount
from khqrpay.web.i18n import local_time

# The SVG's own units: each hour a slot SLOT wide, the tallest bar HEIGHT high.
SLOT = 10
BAR = 7
HEIGHT = 100
LABEL_EVERY = 3  # hours between two labels (6 on a phone: CSS hides every other one)


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    height: float
    count: int
    hour: str  # "14:00"
    label: str | None  # the hour, under every LABEL_EVERY-th bar, the latest included


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bar_width: int
    scale_max: int
    bars: tuple[Bar, ...]
    total: int


def nice_ceiling(value: int) -> int:
    """The scale's top: 1, 2, 5, 10, 20, 50... at or above `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def hourly_chart(hours: Sequence[HourCount]) -> Chart:
    scale_max = nice_ceiling(max((hour.count for hour in hours), default=0))
    bars = []
    for index, hour in enumerate(hours):
        height = round(HEIGHT * hour.count / scale_max, 2)
        written = local_time(hour.start_ms, "HH:mm")
        bars.append(
            Bar(
                x=index * SLOT + (SLOT - BAR) / 2,
                y=HEIGHT - height,
                height=height,
                count=hour.count,
                hour=written,
                label=written if (len(hours) - 1 - index) % LABEL_EVERY == 0 else None,
            )
        )
    return Chart(
        width=len(hours) * SLOT,
        height=HEIGHT,
        bar_width=BAR,
        scale_max=scale_max,
        bars=tuple(bars),
        total=sum(hour.count for hour in hours),
    )
