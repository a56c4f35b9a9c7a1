"""The dashboard's chart of payments per hour, as the geometry of an SVG drawn on the server (the
template draws it; CSS colours it): no script, nothing inline the CSP would refuse."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from khqrpay.services.console import HourCount
from khqrpay.web.i18n import local_time

WIDTH = 720
HEIGHT = 200
# Room for the hour labels under the bars and the scale to the left.
LEFT = 28
BOTTOM = 22
TOP = 8
GAP = 3
LABEL_EVERY = 3  # hours between two labels


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    count: int
    hour: str  # "14:00"
    label: str | None  # the hour, written under every LABEL_EVERY-th bar


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    left: int
    baseline: float
    top: float
    scale_max: int
    bars: tuple[Bar, ...]
    total: int


def _nice_ceiling(value: int) -> int:
    """The scale's top: 1, 2, 5, 10, 20, 50... at or above `value` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def hourly_chart(hours: Sequence[HourCount]) -> Chart:
    scale_max = _nice_ceiling(max((hour.count for hour in hours), default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = TOP + plot_height
    slot = (WIDTH - LEFT) / max(1, len(hours))
    bars = []
    for index, hour in enumerate(hours):
        height = plot_height * hour.count / scale_max
        written = local_time(hour.start_ms, "HH:mm")
        bars.append(
            Bar(
                x=round(LEFT + index * slot + GAP / 2, 1),
                y=round(baseline - height, 1),
                width=round(slot - GAP, 1),
                height=round(height, 1),
                count=hour.count,
                hour=written,
                label=written if (len(hours) - 1 - index) % LABEL_EVERY == 0 else None,
            )
        )
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        baseline=baseline,
        top=TOP,
        scale_max=scale_max,
        bars=tuple(bars),
        total=sum(hour.count for hour in hours),
    )
