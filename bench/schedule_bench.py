"""Scheduler benchmark: Bakong requests and detection latency, our schedule against the naive one.

Virtual time (plain epoch-ms ints), event-driven: the verifier only wakes on a tick (every
`--tick-s`, default 1 s) at which some payment is due, so idle virtual time costs nothing.

Model (issue 4, "Measured"): `--orders` orders arrive uniformly over 30 days; each customer's
payment delay is drawn from `PayLaterDistribution` (5% never pay). Customers who pay within 15
minutes keep the payment page open from checkout (watching from creation); half of the later
payers open their order page within a minute after paying (watching from then; the service calls
`SchedulePolicy.watch`, pulling the next check forward). Bakong knows a payment once it is made.

Our schedule: `SchedulePolicy` from `Settings` (defaults, or `KHQRPAY_SCHEDULE_*` from the
environment), checks grouped by `plan_batches` into
md5-list calls of at most 50 (one call = one request). The naive schedule users described: every
pending order checked on its own (one request each) every 2 s from the age of 1 minute, until
detected or the same 30-day window ends; its counts are computed in closed form.

Detection latency: for watched payments, from the later of the payment and the moment the customer
starts watching; for all payments by age band, from the payment.

Run: .venv/bin/python bench/schedule_bench.py
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from khqrpay.orders.schedule import MD5_LIST_LIMIT, Candidate, SchedulePolicy, plan_batches
from khqrpay.settings import Settings
from khqrpay.simulator.paylater import PayLaterDistribution

START_MS = 1_795_651_200_000
SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
ARRIVAL_SPAN_MS = 30 * DAY_MS
WATCHING_PAYER_MS = 15 * MINUTE_MS
LATE_WATCH_SHARE = 0.5
LATE_WATCH_WITHIN_MS = MINUTE_MS
NAIVE_MIN_AGE_MS = MINUTE_MS
NAIVE_INTERVAL_MS = 2 * SECOND_MS
AGE_BANDS: tuple[tuple[str, int], ...] = (
    ("< 15 min", 15 * MINUTE_MS),
    ("15 min - 1 h", HOUR_MS),
    ("1 h - 1 day", DAY_MS),
    ("1 - 7 days", 7 * DAY_MS),
    ("7 - 30 days", 30 * DAY_MS + 1),
)
GOAL_RATIO = 500
GOAL_WATCHED_P95_MS = 2_000
GOAL_WALL_S = 60


@dataclass(slots=True)
class Order:
    """One order's payment as the simulation sees it (mutable simulation state, not domain)."""

    created_ms: int
    window_end_ms: int
    pay_ms: int | None
    watch_from_ms: int | None
    next_ms: int
    earliest_ms: int
    hot_until_ms: int | None = None
    last_checked_ms: int | None = None
    detected_ms: int | None = None
    expired: bool = False
    version: int = 0


@dataclass(slots=True)
class Outcome:
    """What one schedule did over the whole run."""

    requests: int = 0
    md5_checks: int = 0
    requests_by_day: Counter[int] = field(default_factory=Counter)
    latency_by_band: dict[str, list[int]] = field(default_factory=dict)
    watched_latency: list[int] = field(default_factory=list)
    detected: int = 0
    missed: int = 0
    expired: int = 0


def make_orders(count: int, seed: int, policy: SchedulePolicy) -> list[Order]:
    rng = random.Random(seed)
    distribution = PayLaterDistribution()
    orders = []
    for _ in range(count):
        created = START_MS + rng.randrange(ARRIVAL_SPAN_MS)
        delay_s = distribution.sample_delay_s(rng)
        pay = None if delay_s is None else created + round(delay_s * 1000)
        watch_from = None
        if pay is not None and pay - created <= WATCHING_PAYER_MS:
            watch_from = created
        elif pay is not None and rng.random() < LATE_WATCH_SHARE:
            watch_from = pay + rng.randrange(LATE_WATCH_WITHIN_MS)
        first = policy.first_check_ms(created)
        orders.append(
            Order(
                created_ms=created,
                window_end_ms=policy.window_end_ms(created),
                pay_ms=pay,
                watch_from_ms=watch_from,
                next_ms=first,
                earliest_ms=first,
            )
        )
    orders.sort(key=lambda order: order.created_ms)
    return orders


def band_of(age_ms: int) -> str:
    return next(name for name, upper in AGE_BANDS if age_ms < upper)


def record_detection(outcome: Outcome, order: Order, at_ms: int) -> None:
    assert order.pay_ms is not None
    outcome.detected += 1
    latency = at_ms - order.pay_ms
    outcome.latency_by_band.setdefault(band_of(order.pay_ms - order.created_ms), []).append(latency)
    if order.watch_from_ms is not None:
        # Detected before the customer looked: they find it completed, no wait.
        outcome.watched_latency.append(max(0, at_ms - max(order.pay_ms, order.watch_from_ms)))


class TickBuckets:
    """A calendar queue: items filed under the first verifier tick at or after their time.

    Appending is O(1) whatever the number of pending payments; only the tick numbers go in a heap.
    """

    def __init__(self, tick_ms: int) -> None:
        self.tick_ms = tick_ms
        self.buckets: dict[int, list[tuple[int, int]]] = {}
        self.ticks: list[int] = []  # heap of the tick numbers that have a bucket

    def add(self, at_ms: int, item: tuple[int, int]) -> None:
        tick = -(-at_ms // self.tick_ms)
        bucket = self.buckets.get(tick)
        if bucket is None:
            self.buckets[tick] = [item]
            heapq.heappush(self.ticks, tick)
        else:
            bucket.append(item)

    def first_ms(self, live: Callable[[tuple[int, int]], bool]) -> int | None:
        """The first tick with a live item; buckets holding only dead items are dropped."""
        while self.ticks and not any(map(live, self.buckets[self.ticks[0]])):
            del self.buckets[heapq.heappop(self.ticks)]
        return self.ticks[0] * self.tick_ms if self.ticks else None

    def pop_through(self, now_ms: int) -> list[tuple[int, int]]:
        """Every item filed at or before `now_ms`, which must be on the tick grid."""
        items: list[tuple[int, int]] = []
        while self.ticks and self.ticks[0] * self.tick_ms <= now_ms:
            items.extend(self.buckets.pop(heapq.heappop(self.ticks)))
        return items


class OurScheduleRun:
    """Event-driven run of our schedule: arrivals, customers starting to watch, verifier ticks.

    Items are (order index, version); bumping an order's version (on every reschedule, detection
    or expiry) makes its older items stale, and stale items are skipped. `due` says when the
    verifier must wake; `becoming_eligible` feeds the heap of early-eligible payments, soonest due
    first, from which the worker's query takes as many as the calls can carry. The check loop is
    inlined in `tick`: it runs ~8 million times.
    """

    def __init__(self, orders: Sequence[Order], policy: SchedulePolicy, tick_ms: int) -> None:
        self.orders = orders
        self.policy = policy
        self.outcome = Outcome()
        self.due = TickBuckets(tick_ms)
        self.becoming_eligible = TickBuckets(tick_ms)
        self.eligible: list[tuple[int, int, int]] = []  # (next check, index, version)

    def run(self) -> Outcome:
        events: list[tuple[int, int, int]] = []  # (time, kind, order index); kind 0 arrive, 1 watch
        for index, order in enumerate(self.orders):
            events.append((order.created_ms, 0, index))
            if order.watch_from_ms is not None:
                events.append((order.watch_from_ms, 1, index))
        events.sort()
        orders = self.orders
        event_at = 0
        while True:
            wake = self.due.first_ms(self.live)
            if event_at < len(events) and (wake is None or events[event_at][0] <= wake):
                moment, kind, index = events[event_at]
                event_at += 1
                if kind == 0:
                    self.schedule(index)
                elif orders[index].detected_ms is None and not orders[index].expired:
                    self.watch(index, moment)
            elif wake is None:
                return self.outcome
            else:
                self.due.pop_through(wake)
                self.tick(wake)

    def live(self, item: tuple[int, int]) -> bool:
        index, version = item
        return self.orders[index].version == version

    def schedule(self, index: int) -> None:
        order = self.orders[index]
        order.version += 1
        self.due.add(order.next_ms, (index, order.version))
        self.becoming_eligible.add(order.earliest_ms, (index, order.version))

    def watch(self, index: int, now: int) -> None:
        order = self.orders[index]
        watch = self.policy.watch(
            created_ms=order.created_ms,
            now_ms=now,
            last_checked_ms=order.last_checked_ms,
            next_check_ms=order.next_ms,
            earliest_check_ms=order.earliest_ms,
        )
        order.hot_until_ms = watch.hot_until_ms
        order.next_ms = watch.next_check_ms
        order.earliest_ms = watch.earliest_check_ms
        self.schedule(index)

    def tick(self, now: int) -> None:
        """The worker wakes at `now`: fetch candidates, plan the calls, check, reschedule."""
        orders, eligible = self.orders, self.eligible
        heappop, heappush = heapq.heappop, heapq.heappush
        for index, version in self.becoming_eligible.pop_through(now):
            if orders[index].version == version:
                heappush(eligible, (orders[index].next_ms, index, version))
        # The worker's query: eligible payments, soonest due first, as many as the calls carry.
        candidates: list[Candidate[int]] = []
        due_count = 0
        while eligible:
            next_ms, index, version = eligible[0]
            if orders[index].version != version:
                heappop(eligible)
                continue
            if next_ms <= now:
                due_count += 1
            elif len(candidates) >= due_count + (-due_count % MD5_LIST_LIMIT):
                break
            heappop(eligible)
            candidates.append(Candidate(index, next_ms, orders[index].earliest_ms))
        batches = plan_batches(candidates, now_ms=now)
        assert sum(map(len, batches)) == len(candidates), "every fetched payment is checked"
        outcome = self.outcome
        outcome.requests += len(batches)
        outcome.requests_by_day[(now - START_MS) // DAY_MS] += len(batches)
        outcome.md5_checks += len(candidates)
        policy = self.policy
        for candidate in candidates:
            index = candidate.payment_id
            order = orders[index]
            if order.pay_ms is not None and order.pay_ms <= now:
                order.detected_ms = now
                order.version += 1
                record_detection(outcome, order, now)
                continue
            next_ms = policy.next_check_ms(
                created_ms=order.created_ms,
                now_ms=now,
                hot_until_ms=order.hot_until_ms,
                window_end_ms=order.window_end_ms,
            )
            if next_ms is None:
                order.expired = True
                order.version += 1
                outcome.expired += 1
                if order.pay_ms is not None and order.pay_ms <= order.window_end_ms:
                    outcome.missed += 1
                continue
            earliest_ms = policy.earliest_check_ms(
                checked_ms=now, next_check_ms=next_ms, window_end_ms=order.window_end_ms
            )
            order.last_checked_ms, order.next_ms, order.earliest_ms = now, next_ms, earliest_ms
            self.schedule(index)


def run_naive(orders: Sequence[Order], window_ms: int) -> Outcome:
    """Closed form: checks at ages 60 s, 62 s, ... until the first one at or after the payment,
    or the last one in the window; each check is one request, counted on the day it happens."""
    outcome = Outcome()
    for order in orders:
        first = order.created_ms + NAIVE_MIN_AGE_MS
        if order.pay_ms is None:
            checks = (window_ms - NAIVE_MIN_AGE_MS) // NAIVE_INTERVAL_MS + 1
            outcome.expired += 1
        else:
            checks = max(0, -(-(order.pay_ms - first) // NAIVE_INTERVAL_MS)) + 1
            record_detection(outcome, order, first + (checks - 1) * NAIVE_INTERVAL_MS)
        outcome.requests += checks
        outcome.md5_checks += checks
        end = first + checks * NAIVE_INTERVAL_MS  # just past the last check
        for day in range((first - START_MS) // DAY_MS, (end - 1 - START_MS) // DAY_MS + 1):
            day_start = max(first, START_MS + day * DAY_MS)
            day_end = min(end, START_MS + (day + 1) * DAY_MS)
            # Checks on the grid `first + k * interval` inside [day_start, day_end).
            outcome.requests_by_day[day] += -(-(day_end - first) // NAIVE_INTERVAL_MS) - -(
                -(day_start - first) // NAIVE_INTERVAL_MS
            )
    assert sum(outcome.requests_by_day.values()) == outcome.requests
    return outcome


def percentile(values: Sequence[int], share: float) -> float:
    """Nearest-rank percentile, in seconds."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1] / 1000


def latency_row(label: str, ours: Sequence[int], naive: Sequence[int]) -> str:
    def cells(values: Sequence[int]) -> str:
        if not values:
            return f"{'-':>8} {'-':>8} {'-':>8}"
        return " ".join(f"{percentile(values, q):8.1f}" for q in (0.50, 0.95, 0.99))

    return f"| {label:<26} | {len(ours):>6} | {cells(ours)} | {cells(naive)} |"


def report(
    ours: Outcome, naive: Outcome, orders: int, policy: SchedulePolicy, wall_s: float, sim_s: float
) -> bool:
    days = ARRIVAL_SPAN_MS / DAY_MS
    ratio = naive.requests / ours.requests
    watched_p95 = percentile(ours.watched_latency, 0.95)
    print(policy)
    print(f"{orders} orders arriving over {days:.0f} days; Bakong requests (one md5-list call = 1)")
    print(
        f"| {'schedule':<8} | {'requests':>13} | {'per day':>11} | {'peak day':>11} | "
        f"{'md5 checked':>13} | {'md5/request':>11} |"
    )
    for name, outcome in (("ours", ours), ("naive", naive)):
        peak = max(outcome.requests_by_day.values())
        print(
            f"| {name:<8} | {outcome.requests:>13,} | {outcome.requests / days:>11,.0f} | "
            f"{peak:>11,} | {outcome.md5_checks:>13,} | "
            f"{outcome.md5_checks / outcome.requests:>11.1f} |"
        )
    print(f"ratio naive/ours: {ratio:,.0f}x (goal >= {GOAL_RATIO}x); per day = total / {days:.0f}")
    print()
    print("detection latency, seconds: p50 p95 p99 (ours | naive)")
    print(f"| {'payments':<26} | {'count':>6} | {'ours':^26} | {'naive':^26} |")
    print(latency_row("watched", ours.watched_latency, naive.watched_latency))
    for name, _ in AGE_BANDS:
        row = latency_row(
            f"paid at age {name}",
            ours.latency_by_band.get(name, []),
            naive.latency_by_band.get(name, []),
        )
        print(row)
    all_ours = [v for values in ours.latency_by_band.values() for v in values]
    all_naive = [v for values in naive.latency_by_band.values() for v in values]
    print(latency_row("all payments", all_ours, all_naive))
    print()
    print(
        f"detected {ours.detected:,}, expired unpaid {ours.expired:,}, "
        f"missed {ours.missed} (paid in the window but not detected)"
    )
    print(f"wall time {wall_s:.1f} s (simulation {sim_s:.1f} s; goal < {GOAL_WALL_S} s)")
    goals = {
        f"ratio >= {GOAL_RATIO}x": ratio >= GOAL_RATIO,
        "watched p95 <= 2 s": watched_p95 * 1000 <= GOAL_WATCHED_P95_MS,
        "missed == 0": ours.missed == 0,
        f"wall < {GOAL_WALL_S} s": wall_s < GOAL_WALL_S,
    }
    print(
        "goals: "
        + ", ".join(f"{name}: {'met' if met else 'NOT MET'}" for name, met in goals.items())
    )
    return all(goals.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--tick-s", type=float, default=1.0, help="verifier wake-up period")
    args = parser.parse_args()
    started = time.perf_counter()
    policy = Settings(_env_file=None).schedule_policy()
    orders = make_orders(args.orders, args.seed, policy)
    naive = run_naive(orders, policy.payment_window_ms)
    sim_started = time.perf_counter()
    ours = OurScheduleRun(orders, policy, round(args.tick_s * 1000)).run()
    sim_s = time.perf_counter() - sim_started
    met = report(ours, naive, args.orders, policy, time.perf_counter() - started, sim_s)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
