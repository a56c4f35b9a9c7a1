"""What the demo shows, read through the services: each order's status, checks and payment, the
totals, and what the naive schedule would have cost (its arithmetic is the pure core's)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from khqrpay.db import Database
from khqrpay.money import Money
from khqrpay.orders.model import OrderStatus
from khqrpay.orders.schedule import NaiveSchedule
from khqrpay.services.orders import list_orders, order_details

# The naive schedule shops described, to compare ours with (the schedule bench counts with it too).
NAIVE_SCHEDULE = NaiveSchedule()


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: int
    total: Money
    status: OrderStatus
    created_ms: int
    updated_ms: int
    checks: int
    refund_flag: bool
    review_reason: str | None
    # The first payment found: when Bakong says it was made, and when the engine recorded it.
    paid_ms: int | None
    found_ms: int | None

    @property
    def detection_ms(self) -> int | None:
        if self.paid_ms is None or self.found_ms is None:
            return None
        return max(0, self.found_ms - self.paid_ms)


def read_order(database: Database, order_id: int) -> OrderRow:
    details = order_details(database, order_id)
    order = details.order
    first = min(details.evidence, key=lambda recorded: recorded.recorded_ms, default=None)
    return OrderRow(
        id=order.id,
        total=order.total,
        status=order.status,
        created_ms=order.created_ms,
        updated_ms=order.updated_ms,
        # Every check, the one that found the payment included.
        checks=sum(payment.check_count for payment in details.payments),
        refund_flag=order.refund_flag,
        review_reason=order.review_reason,
        paid_ms=None if first is None else first.evidence.paid_ms,
        found_ms=None if first is None else first.recorded_ms,
    )


def read_orders(database: Database, *, since_ms: int = 0) -> tuple[OrderRow, ...]:
    """Every order made from `since_ms` on, with its checks and first payment."""
    orders = sorted(
        (order for order in list_orders(database) if order.created_ms >= since_ms),
        key=lambda order: order.id,
    )
    return tuple(read_order(database, order.id) for order in orders)


@dataclass(frozen=True, slots=True)
class Snapshot:
    at_ms: int
    elapsed_s: float
    orders: tuple[OrderRow, ...]
    bakong_calls: int
    qr_checks: int

    def count(self, status: OrderStatus) -> int:
        return sum(1 for row in self.orders if row.status is status)

    @property
    def refund_flags(self) -> int:
        return sum(1 for row in self.orders if row.refund_flag)

    @property
    def naive_requests(self) -> int:
        def end_ms(row: OrderRow) -> int:
            if row.found_ms is not None:
                return row.found_ms
            return self.at_ms if row.status is OrderStatus.PENDING else row.updated_ms

        return sum(
            NAIVE_SCHEDULE.checks(created_ms=row.created_ms, until_ms=end_ms(row))
            for row in self.orders
        )

    @property
    def detections_s(self) -> list[float]:
        return [row.detection_ms / 1000 for row in self.orders if row.detection_ms is not None]

    @property
    def naive_detections_s(self) -> list[float]:
        return [
            NAIVE_SCHEDULE.detection_ms(created_ms=row.created_ms, paid_ms=row.paid_ms) / 1000
            for row in self.orders
            if row.paid_ms is not None
        ]

    def totals_line(self) -> str:
        return (
            f"pending {self.count(OrderStatus.PENDING)} · "
            f"completed {self.count(OrderStatus.COMPLETED)} · "
            f"needs review {self.count(OrderStatus.NEEDS_REVIEW)} · "
            f"expired {self.count(OrderStatus.EXPIRED)} · "
            f"refund flags ⚑ {self.refund_flags}"
        )

    def bakong_line(self) -> str:
        return (
            f"Bakong calls {self.bakong_calls:,} (QR codes checked in them: {self.qr_checks:,}) · "
            f"the naive schedule (every order on its own every 2 s from 1 min) "
            f"would have made {self.naive_requests:,}"
        )

    def detection_line(self) -> str:
        found = self.detections_s
        if not found:
            return "no payment found yet"
        naive = self.naive_detections_s
        return (
            f"payment → found: median {statistics.median(found):.1f} s, "
            f"slowest {max(found):.1f} s ({len(found)} payment{'' if len(found) == 1 else 's'}); "
            f"the naive schedule: median {statistics.median(naive):.1f} s, "
            f"slowest {max(naive):.1f} s"
        )
