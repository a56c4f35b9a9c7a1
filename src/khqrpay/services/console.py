"""What the staff console reads: the dashboard's figures, the order list with its filters and
search, and everything one order's page shows. Read-only; each answer is one snapshot.

Days and hours are Cambodia's (Asia/Phnom_Penh, UTC+7 all year).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from khqrpay.bakong.resilience import CircuitState
from khqrpay.clock import Clock, datetime_to_ms, ms_to_datetime
from khqrpay.db import CheckRound, Database, OrderQuery, OrderSearch
from khqrpay.money import Currency, Money
from khqrpay.orders.budget import CallBudget
from khqrpay.orders.model import (
    AttemptOutcome,
    EvidenceSource,
    Order,
    OrderError,
    OrderStatus,
    PaidTime,
    RecordedEvidence,
    normalize_phone,
)
from khqrpay.services.budget import BEHIND_MS, BudgetStatus, read_use
from khqrpay.services.orders import OrderDetails, read_order_details
from khqrpay.services.webhooks import dead_deliveries

CAMBODIA = ZoneInfo("Asia/Phnom_Penh")
_MINUTE_MS = 60_000
_HOUR_MS = 60 * _MINUTE_MS
_DAY_MS = 24 * _HOUR_MS

# The dashboard's age bands of pending payments, by upper bound (the last one is open).
PENDING_AGE_BANDS: tuple[tuple[str, int], ...] = (
    ("under_15m", 15 * _MINUTE_MS),
    ("under_1h", _HOUR_MS),
    ("under_1d", _DAY_MS),
    ("under_1w", 7 * _DAY_MS),
    ("older", 0),
)
HOURS_CHARTED = 24
ORDERS_PER_PAGE = 25
MAX_EXPORTED_ORDERS = 50_000


class BakongStatus(Protocol):
    """What the dashboard reads of this process's Bakong client (`BakongClient` has it)."""

    @property
    def circuit_state(self) -> CircuitState: ...

    def token_expires_at_ms(self) -> int | None: ...

    def list_fallback_until_ms(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class BakongHealth:
    """How Bakong has been answering: the last hour's check rounds, and the client's state."""

    last_answer_ms: int | None
    calls: int  # Bakong calls in the last hour
    checks: int  # QRs checked in them
    errors: int  # checks that got an error, not an answer
    token_refused: bool  # the token was refused, and nothing has been answered since
    firewall_blocked: bool  # the firewall refused calls, and nothing has been answered since
    circuit: CircuitState
    list_refused_until_ms: int | None
    token_expires_ms: int | None
    token_expires_soon: bool
    # The request budget all processes share, and the orders behind schedule (None: not given).
    budget: BudgetStatus | None = None

    @property
    def error_rate(self) -> float | None:
        return None if self.checks == 0 else self.errors / self.checks

    @property
    def qrs_per_call(self) -> float | None:
        return None if self.calls == 0 else self.checks / self.calls


@dataclass(frozen=True, slots=True)
class HourCount:
    start_ms: int
    count: int


@dataclass(frozen=True, slots=True)
class Dashboard:
    now_ms: int
    by_status: dict[OrderStatus, int]
    takings_today: list[Money]  # riel, dollars
    pending_by_age: dict[str, int]
    # How long after a payment the verifier recorded it, over the last day (None: none found).
    latency_p50_ms: int | None
    latency_p95_ms: int | None
    latency_count: int
    payments_per_hour: list[HourCount]
    bakong: BakongHealth
    # Webhook deliveries given up (to endpoints still in use): the owner may replay them.
    dead_deliveries: int


def start_of_day_ms(now_ms: int) -> int:
    """Midnight in Cambodia of the day `now_ms` falls in."""
    local = ms_to_datetime(now_ms).astimezone(CAMBODIA)
    return datetime_to_ms(datetime.combine(local.date(), time(), tzinfo=CAMBODIA))


def percentile(sorted_values: Sequence[int], share: float) -> int | None:
    """The nearest-rank percentile of already sorted values (None when there are none)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(share * len(sorted_values)))
    return sorted_values[rank - 1]


def dashboard(
    database: Database,
    *,
    bakong: BakongStatus,
    clock: Clock,
    token_warn_days: float,
    budget: CallBudget | None = None,
) -> Dashboard:
    """Every figure of the dashboard, read in one snapshot (with `budget`: how much of it the
    last minute used, and whether the schedule keeps up)."""
    now_ms = clock.now_ms()
    day_ago_ms = now_ms - _DAY_MS
    with database.read() as uow:
        by_status = uow.orders.count_by_status()
        taken = uow.orders.completed_totals(since_ms=start_of_day_ms(now_ms))
        pending = uow.payments.count_pending_by_age(now_ms=now_ms, bands=PENDING_AGE_BANDS)
        evidence = uow.evidence.recorded_since(day_ago_ms)
        rounds = uow.attempts.rounds_since(now_ms - _HOUR_MS)
        last_answer_ms = uow.attempts.last_answered_ms()
        budget_now = (
            None
            if budget is None
            else BudgetStatus(
                read_use(uow, budget, now_ms),
                uow.payments.count_orders_behind(due_before_ms=now_ms - BEHIND_MS),
            )
        )
        dead = dead_deliveries(uow)
    latencies = sorted(_detection_latencies(evidence))
    return Dashboard(
        now_ms=now_ms,
        by_status=by_status,
        takings_today=_in_each_currency(taken),
        pending_by_age=pending,
        latency_p50_ms=percentile(latencies, 0.50),
        latency_p95_ms=percentile(latencies, 0.95),
        latency_count=len(latencies),
        payments_per_hour=_per_hour(
            [e.evidence.paid_ms for e in evidence if e.evidence.paid_ms >= day_ago_ms], now_ms
        ),
        bakong=_health(rounds, last_answer_ms, bakong, now_ms, token_warn_days, budget=budget_now),
        dead_deliveries=dead,
    )


def _in_each_currency(totals: Sequence[Money]) -> list[Money]:
    """One total per currency, riel then dollars, nothing taken written as zero."""
    by_currency = {total.currency: total for total in totals}
    return [by_currency.get(currency, Money.from_minor(0, currency)) for currency in Currency]


def _detection_latencies(evidence: Sequence[RecordedEvidence]) -> list[int]:
    """The verifier's own finds whose paid time is Bakong's (not merely when we saw them)."""
    return [
        max(0, recorded.recorded_ms - recorded.evidence.paid_ms)
        for recorded in evidence
        if recorded.source is EvidenceSource.VERIFIER
        and recorded.evidence.paid_time is not PaidTime.SEEN
    ]


def _per_hour(paid_ms: Sequence[int], now_ms: int) -> list[HourCount]:
    """Counts per whole hour, the current hour last (Cambodia's hours start on UTC's)."""
    current = now_ms - now_ms % _HOUR_MS
    starts = [current - _HOUR_MS * back for back in reversed(range(HOURS_CHARTED))]
    counts = dict.fromkeys(starts, 0)
    for moment in paid_ms:
        start = moment - moment % _HOUR_MS
        if start in counts:
            counts[start] += 1
    return [HourCount(start, count) for start, count in counts.items()]


def _health(
    rounds: Sequence[CheckRound],
    last_answer_ms: int | None,
    bakong: BakongStatus,
    now_ms: int,
    token_warn_days: float,
    *,
    budget: BudgetStatus | None,
) -> BakongHealth:
    def refused_since_answer(outcome: AttemptOutcome) -> bool:
        refused = [r.at_ms for r in rounds if r.outcomes.get(outcome, 0) > 0]
        return bool(refused) and max(refused) > (last_answer_ms or 0)

    expires_ms = bakong.token_expires_at_ms()
    # This process's client, or any process's (the budget's record).
    fallback_until_ms = bakong.list_fallback_until_ms()
    if budget is not None and budget.use.single_checks:
        fallback_until_ms = max(fallback_until_ms or 0, budget.use.list_refused_until_ms or 0)
    return BakongHealth(
        last_answer_ms=last_answer_ms,
        calls=sum(r.calls for r in rounds),
        checks=sum(r.checks for r in rounds),
        errors=sum(r.errors for r in rounds),
        token_refused=refused_since_answer(AttemptOutcome.UNAUTHORIZED),
        firewall_blocked=refused_since_answer(AttemptOutcome.BLOCKED),
        circuit=bakong.circuit_state,
        list_refused_until_ms=fallback_until_ms,
        token_expires_ms=expires_ms,
        token_expires_soon=expires_ms is not None
        and expires_ms - now_ms <= round(token_warn_days * _DAY_MS),
        budget=budget,
    )


# The order list --------------------------------------------------------------------------------

_ORDER_NUMBER = re.compile(r"^(?:#|ord-?)?(\d{1,18})$", re.IGNORECASE)
_HEX = re.compile(r"^[0-9a-f]{8,64}$")
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_DIGITS = re.compile(r"\d+")
MIN_PHONE_DIGITS = 6


def read_search(text: str) -> OrderSearch | None:
    """What a search may mean: an order number (`12`, `#12`, the bill number `ORD-12`), an
    order's token, a phone number (or 6 digits or more of one), the start of a QR's md5 or of a
    Bakong hash or short hash (8 hex digits or more). None for an empty search."""
    cleaned = text.strip()
    if not cleaned:
        return None
    compact = re.sub(r"[\s().-]", "", cleaned)
    number = _ORDER_NUMBER.match(cleaned)
    phone = None
    with contextlib.suppress(OrderError):
        phone = normalize_phone(cleaned)
    digits = "".join(_DIGITS.findall(cleaned)) if compact.lstrip("+").isdigit() else ""
    lowered = cleaned.lower()
    return OrderSearch(
        ids=(int(number.group(1)),) if number else (),
        token=cleaned if _TOKEN.match(cleaned) else None,
        phone=phone,
        phone_digits=digits if len(digits) >= MIN_PHONE_DIGITS else None,
        hex_prefix=lowered if _HEX.match(lowered) else None,
    )


@dataclass(frozen=True, slots=True)
class OrderFilters:
    """The order list's filters as staff set them; dates are Cambodia's, both included."""

    status: OrderStatus | None = None
    refund_flagged: bool = False
    created_from: date | None = None
    created_to: date | None = None
    search: str = ""

    def query(self) -> OrderQuery:
        if self.created_from and self.created_to and self.created_from > self.created_to:
            raise OrderError("the first date is after the last one")
        return OrderQuery(
            status=self.status,
            refund_flagged=self.refund_flagged,
            created_from_ms=None if self.created_from is None else _midnight_ms(self.created_from),
            created_before_ms=None
            if self.created_to is None
            else _midnight_ms(self.created_to + timedelta(days=1)),
            search=read_search(self.search),
        )


def _midnight_ms(day: date) -> int:
    return datetime_to_ms(datetime.combine(day, time(), tzinfo=CAMBODIA))


@dataclass(frozen=True, slots=True)
class OrderPage:
    orders: list[Order]
    total: int
    page: int
    pages: int


def find_orders(
    database: Database, filters: OrderFilters, *, page: int = 1, per_page: int = ORDERS_PER_PAGE
) -> OrderPage:
    """One page of the orders the filters select, newest first."""
    if page < 1:
        raise OrderError("pages are numbered from 1")
    query = filters.query()
    with database.read() as uow:
        orders, total = uow.orders.query(query, limit=per_page, offset=(page - 1) * per_page)
    return OrderPage(orders, total, page, max(1, -(-total // per_page)))


def export_orders(database: Database, filters: OrderFilters) -> list[Order]:
    """Every order the filters select (up to MAX_EXPORTED_ORDERS), newest first, for a CSV."""
    with database.read() as uow:
        orders, _ = uow.orders.query(filters.query(), limit=MAX_EXPORTED_ORDERS)
    return orders


# One order ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaffOrderView:
    """Everything one order's page shows: the order's details and each line's stock now."""

    details: OrderDetails
    stock: dict[str, int]


def order_for_staff(database: Database, order_id: int) -> StaffOrderView:
    with database.read() as uow:
        details = read_order_details(uow, order_id)
        products = uow.products.by_skus(line.sku for line in details.lines)
    return StaffOrderView(details, {sku: product.stock for sku, product in products.items()})
