"""Scheduler benchmark: Bakong requests and detection latency of our schedule, whose calls are
filled with ride-alongs and which sweeps the longest-unchecked payments when no call goes out
anyway, against today's policy (before issue 9: 2-s pace while fresh or watched, only early
payments fill a call, no sweep) and the naive schedule.

Virtual time (plain epoch-ms ints), event-driven: the verifier only wakes on a tick (every
`--tick-s`, default 1 s) at which some payment is due or the sweep is, so idle virtual time costs
nothing.

Model (issue 4, "Measured"): `--orders` orders arrive uniformly over 30 days; each customer's
payment delay is drawn from `PayLaterDistribution` (5% never pay). Customers who pay within 15
minutes keep the payment page open from checkout (watching from creation); half of the later
payers open their order page within a minute after paying (watching from then; the service calls
`SchedulePolicy.watch`, pulling the next check forward). Bakong knows a payment once it is made.
The run goes on after the last order until every payment is found or expired.

Both schedules run the same code: `SchedulePolicy` from `Settings` (defaults, or
`KHQRPAY_SCHEDULE_*` from the environment; today's with its own pace, `today_policy`); at each tick
the claim takes the due payments and as many others as their md5-list calls (at most 50 md5s; one
call = one request) can carry, ranked as `plan_batches` ranks them (the worker's claim does the same
in SQL), and `plan_batches` groups them into calls. Ours fills the free places with ride-alongs
(payments last checked at least `ride_along_after` ago, the longest ago first, their schedule left
as it is) and, when none is due but the longest-unchecked payment has waited `sweep_interval`, makes
one call of them; today's policy, the baseline, has neither. The naive schedule (`NaiveSchedule`,
what users described and the demo compares with): every pending order checked on its own every 2 s
from the age of 1 minute, until detected or the same 30-day window ends; counted in closed form.

Detection latency: for watched payments, from the later of the payment and the moment the customer
starts watching; for all payments by age band, from the payment.

Run: .venv/bin/python bench/schedule_bench.py [--orders N] [--seed S] [--tick-s T]
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from khqrpay.orders.schedule import (
    MD5_LIST_LIMIT,
    Candidate,
    NaiveSchedule,
    SchedulePolicy,
    plan_batches,
    ride_along_slots,
)
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
NAIVE = NaiveSchedule()
AGE_BANDS: tuple[tuple[str, int], ...] = (
    ("< 15 min", 15 * MINUTE_MS),
    ("15 min - 1 h", HOUR_MS),
    ("1 h - 1 day", DAY_MS),
    ("1 - 7 days", 7 * DAY_MS),
    ("7 - 30 days", 30 * DAY_MS + 1),
)
GOAL_RATIO = 1_500
GOAL_ALL_P95_MS = 90_000
GOAL_WATCHED_P95_MS = 1_500


@dataclass(frozen=True, slots=True)
class Variant:
    """A schedule to simulate: the policy, after how long a payment may ride along (None: never,
    today's policy, where only early payments fill a call), and whether the sweep makes calls."""

    name: str
    policy: SchedulePolicy
    ride_along_after_ms: int | None
    sweep: bool


def today_policy(policy: SchedulePolicy) -> SchedulePolicy:
    """The policy before issue 9: every QR checked every 2 s while fresh (15 minutes) or
    watched (10 minutes after a visit); the rest of `policy` (the age factor, the window...) as
    configured."""
    return dataclasses.replace(
        policy,
        fast_interval_ms=2_000,
        watched_interval_ms=2_000,
        fresh_window_ms=15 * MINUTE_MS,
        hot_window_ms=10 * MINUTE_MS,
    )


def variants(policy: SchedulePolicy) -> tuple[Variant, Variant]:
    return (
        Variant("today", today_policy(policy), ride_along_after_ms=None, sweep=False),
        Variant("ours", policy, ride_along_after_ms=policy.ride_along_after_ms, sweep=True),
    )


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
    version: int = 0  # of its schedule: entries by next and by earliest check
    check_version: int = 0  # of its entry among the checked payments


@dataclass(slots=True)
class Outcome:
    """What one schedule did over the whole run."""

    requests: int = 0
    md5_checks: int = 0
    requests_by_day: Counter[int] = field(default_factory=Counter)
    # What woke the verifier for each request: a watched payment due, another due, the sweep.
    requests_by_wake: Counter[str] = field(default_factory=Counter)
    latency_by_band: dict[str, list[int]] = field(default_factory=dict)
    watched_latency: list[int] = field(default_factory=list)
    # Payments made while orders arrive, and after the last one (only old payments are due).
    busy_latency: list[int] = field(default_factory=list)
    quiet_latency: list[int] = field(default_factory=list)
    detected: int = 0
    missed: int = 0
    expired: int = 0

    @property
    def all_latency(self) -> list[int]:
        return [latency for values in self.latency_by_band.values() for latency in values]


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
    if order.pay_ms < START_MS + ARRIVAL_SPAN_MS:
        outcome.busy_latency.append(latency)
    else:
        outcome.quiet_latency.append(latency)
    if order.watch_from_ms is not None:
        # Detected before the customer looked: they find it completed, no wait.
        outcome.watched_latency.append(max(0, at_ms - max(order.pay_ms, order.watch_from_ms)))


class ScheduleRun:
    """Event-driven run of one variant: arrivals, customers starting to watch, verifier ticks.

    `by_next` holds every scheduled payment by its next check (when the verifier must wake, and the
    due ones); `by_earliest` those not early yet, which a claim moves to `early_by_next` once their
    earliest check has come; `checked` every checked payment in the order of its last check (the
    ride-alongs, the longest unchecked first). Entries carry the order's `version` (its schedule)
    or `check_version` (its last check); bumping one makes the older entries stale, skipped when
    met. The claim and the check loop run tens of millions of times: they are written for speed.
    `bench/budget_bench.py` runs the same model within a request budget: it overrides `claim`,
    `next_wake` and `reschedule`, and checks `max_per_call` md5s a call.
    """

    max_per_call = MD5_LIST_LIMIT

    def __init__(self, orders: Sequence[Order], variant: Variant, tick_ms: int) -> None:
        self.orders = orders
        self.policy = variant.policy
        self.ride_along_after_ms = variant.ride_along_after_ms
        self.sweeps = variant.sweep
        self.tick_ms = tick_ms
        self.last_tick_ms = 0
        self.outcome = Outcome()
        self.by_next: list[tuple[int, int, int]] = []
        self.by_earliest: list[tuple[int, int, int]] = []
        self.early_by_next: list[tuple[int, int, int]] = []
        self.checked: deque[tuple[int, int, int]] = deque()  # (last checked, index, version)

    def run(self) -> Outcome:
        events: list[tuple[int, int, int]] = []  # (time, kind, order index); kind 0 arrive, 1 watch
        for index, order in enumerate(self.orders):
            events.append((order.created_ms, 0, index))
            if order.watch_from_ms is not None:
                events.append((order.watch_from_ms, 1, index))
        events.sort()
        orders, by_next, tick_ms = self.orders, self.by_next, self.tick_ms
        event_at = 0
        while True:
            while by_next and orders[by_next[0][1]].version != by_next[0][2]:
                heapq.heappop(by_next)
            due_ms = by_next[0][0] if by_next else None
            oldest = self.oldest_checked_ms() if self.sweeps else None
            if oldest is not None:
                # The sweep's wake: on a later tick than the last (one that found no call to
                # make would otherwise wake again at the same moment).
                sweep_ms = max(oldest + self.policy.sweep_interval_ms, self.last_tick_ms + 1)
                due_ms = sweep_ms if due_ms is None else min(due_ms, sweep_ms)
            wake = None if due_ms is None else self.next_wake(-(-due_ms // tick_ms) * tick_ms)
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
                self.tick(wake)

    def oldest_checked_ms(self) -> int | None:
        """When the longest-unchecked pending payment was last checked (the sweep's query)."""
        checked, orders = self.checked, self.orders
        while checked and orders[checked[0][1]].check_version != checked[0][2]:
            checked.popleft()
        return checked[0][0] if checked else None

    def sweep_due(self, now: int) -> bool:
        return self.sweeps and self.policy.sweep_due(
            oldest_checked_ms=self.oldest_checked_ms(), now_ms=now
        )

    def next_wake(self, wake_ms: int) -> int:
        """When the verifier wakes, given that a payment is due at `wake_ms` (on a tick)."""
        return wake_ms

    def schedule(self, index: int) -> None:
        order = self.orders[index]
        order.version += 1
        heapq.heappush(self.by_next, (order.next_ms, index, order.version))
        heapq.heappush(self.by_earliest, (order.earliest_ms, index, order.version))

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

    def claim(self, now: int, sweep: bool) -> tuple[list[Candidate[int]], list[int]]:
        """The worker's claim: the due payments, then the early ones, the soonest due first, then
        ride-alongs, the longest unchecked first, as many as the calls carry (with `sweep`, a
        whole call even without a due payment). The ride-alongs come apart, as bare indexes:
        there are tens of millions of them, and their schedule is not read."""
        orders, by_next, by_earliest = self.orders, self.by_next, self.by_earliest
        early_by_next, checked = self.early_by_next, self.checked
        heappop, heappush = heapq.heappop, heapq.heappush
        while by_earliest and by_earliest[0][0] <= now:
            _, index, version = heappop(by_earliest)
            if orders[index].version == version:
                heappush(early_by_next, (orders[index].next_ms, index, version))
        chosen: list[Candidate[int]] = []
        taken: set[int] = set()
        while by_next and by_next[0][0] <= now:
            next_ms, index, version = heappop(by_next)
            order = orders[index]
            if order.version == version:
                chosen.append(Candidate(index, next_ms, order.earliest_ms, order.last_checked_ms))
                taken.add(index)
        slots = ride_along_slots(len(chosen), sweep=sweep)
        while slots and early_by_next:
            next_ms, index, version = heappop(early_by_next)
            order = orders[index]
            if order.version == version and index not in taken:
                chosen.append(Candidate(index, next_ms, order.earliest_ms, order.last_checked_ms))
                taken.add(index)
                slots -= 1
        riders: list[int] = []
        if self.ride_along_after_ms is None:
            return chosen, riders
        checked_before = now - self.ride_along_after_ms
        while slots and checked and checked[0][0] <= checked_before:
            _, index, version = checked.popleft()
            if orders[index].check_version == version and index not in taken:
                riders.append(index)  # not early: the early ones are all taken above
                slots -= 1
        return chosen, riders

    def tick(self, now: int) -> None:
        """The worker wakes at `now`: claim, plan the calls, check, reschedule."""
        self.last_tick_ms = now
        sweep = self.sweep_due(now)
        candidates, riders = self.claim(now, sweep)
        # The due and early ones as `plan_batches` groups them; the ride-alongs take the free
        # places it leaves (a whole call when a sweep is due and none is due).
        batches = plan_batches(
            candidates,
            now_ms=now,
            ride_along_after_ms=self.ride_along_after_ms,
            sweep=sweep,
            max_per_call=self.max_per_call,
        )
        assert sum(map(len, batches)) == len(candidates), "every claimed payment is checked"
        due = sum(candidate.next_check_ms <= now for candidate in candidates)
        free = ride_along_slots(due, sweep=sweep, max_per_call=self.max_per_call)
        assert len(candidates) - due + len(riders) <= free, "ride-alongs never make a call"
        calls = len(batches) or (1 if riders else 0)
        outcome = self.outcome
        outcome.requests += calls
        outcome.requests_by_day[(now - START_MS) // DAY_MS] += calls
        outcome.requests_by_wake[self.woken_by(candidates, now) if due else "sweep"] += calls
        outcome.md5_checks += len(candidates) + len(riders)
        orders, policy, checked = self.orders, self.policy, self.checked
        by_next, by_earliest, heappush = self.by_next, self.by_earliest, heapq.heappush
        for candidate in candidates:
            index = candidate.payment_id
            order = orders[index]
            if self.found(order, now):
                continue
            next_ms = policy.next_check_ms(
                created_ms=order.created_ms,
                now_ms=now,
                hot_until_ms=order.hot_until_ms,
                window_end_ms=order.window_end_ms,
            )
            order.version += 1
            if next_ms is None:
                order.expired = True
                outcome.expired += 1
                if order.pay_ms is not None and order.pay_ms <= order.window_end_ms:
                    outcome.missed += 1
                continue
            earliest_ms = policy.earliest_check_ms(
                checked_ms=now, next_check_ms=next_ms, window_end_ms=order.window_end_ms
            )
            order.next_ms, order.earliest_ms = next_ms, earliest_ms
            checked.append((now, index, order.check_version))
            heappush(by_next, (next_ms, index, order.version))
            heappush(by_earliest, (earliest_ms, index, order.version))
            self.reschedule(index, now)
        for index in riders:  # their schedule stays as it is
            order = orders[index]
            if not self.found(order, now):
                checked.append((now, index, order.check_version))

    def woken_by(self, candidates: Sequence[Candidate[int]], now: int) -> str:
        """`watched` if a due payment is hot (a customer looks), else `due`."""
        orders = self.orders
        for candidate in candidates:
            hot_until_ms = orders[candidate.payment_id].hot_until_ms
            if candidate.next_check_ms <= now and hot_until_ms is not None and hot_until_ms > now:
                return "watched"
        return "due"

    def found(self, order: Order, now: int) -> bool:
        """Check one payment at `now`: whether it was found paid (recorded), else it was just
        checked."""
        order.check_version += 1
        if order.pay_ms is not None and order.pay_ms <= now:
            order.version += 1
            order.detected_ms = now
            record_detection(self.outcome, order, now)
            return True
        order.last_checked_ms = now
        return False

    def reschedule(self, index: int, now_ms: int) -> None:
        """After a check at `now_ms` moved the payment's schedule (a hook: nothing here)."""


def run_naive(orders: Sequence[Order], window_ms: int) -> Outcome:
    """`NaiveSchedule` in closed form: checks until the one that finds the payment, or the last
    one in the window; each check is one request, counted on the day it happens."""
    outcome = Outcome()
    for order in orders:
        created, end = order.created_ms, order.created_ms + window_ms
        found = (
            None
            if order.pay_ms is None
            else NAIVE.found_ms(created_ms=created, paid_ms=order.pay_ms)
        )
        if found is None or found > end:
            last = end
            outcome.expired += 1
        else:
            last = found
            record_detection(outcome, order, found)
        checks = NAIVE.checks(created_ms=created, until_ms=last)
        outcome.requests += checks
        outcome.md5_checks += checks
        for day in range((created - START_MS) // DAY_MS, (last - START_MS) // DAY_MS + 1):
            day_start = START_MS + day * DAY_MS
            day_last = min(last, day_start + DAY_MS - 1)
            outcome.requests_by_day[day] += NAIVE.checks(
                created_ms=created, until_ms=day_last
            ) - NAIVE.checks(created_ms=created, until_ms=day_start - 1)
    assert sum(outcome.requests_by_day.values()) == outcome.requests
    return outcome


def percentile(values: Sequence[int], share: float) -> float:
    """Nearest-rank percentile, in seconds."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1] / 1000


def latency_cells(values: Sequence[int]) -> str:
    if not values:
        return " - | - | - "
    return " | ".join(f"{percentile(values, q):,.1f}" for q in (0.50, 0.95, 0.99))


def report(
    outcomes: dict[str, Outcome], naive: Outcome, orders: int, policy: SchedulePolicy
) -> dict[str, bool]:
    """Print the tables (markdown) and return the goals, each met or not."""
    days = ARRIVAL_SPAN_MS / DAY_MS
    today, ours = outcomes.get("today", outcomes["ours"]), outcomes["ours"]
    print(policy)
    print(f"\n{orders:,} orders arriving over {days:.0f} days; one md5-list call = 1 request\n")
    print("| schedule | requests | per day | peak day | md5s checked | md5s per request |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, outcome in (*outcomes.items(), ("naive", naive)):
        print(
            f"| {name} | {outcome.requests:,} | {outcome.requests / days:,.0f} | "
            f"{max(outcome.requests_by_day.values()):,} | {outcome.md5_checks:,} | "
            f"{outcome.md5_checks / outcome.requests:.1f} |"
        )
    print(
        f"\nratio naive/today: {naive.requests / today.requests:,.0f}x, "
        f"naive/ours: {naive.requests / ours.requests:,.0f}x"
    )
    print("\ndetection latency in seconds, p50 | p95 | p99\n")
    header = " | ".join(f"{name} p50 | {name} p95 | {name} p99" for name in (*outcomes, "naive"))
    print(f"| payments | count | {header} |")
    print("|---|---:|" + "---:|" * 3 * (len(outcomes) + 1))

    def row(label: str, pick: Callable[[Outcome], Sequence[int]]) -> None:
        cells = " | ".join(latency_cells(pick(o)) for o in (*outcomes.values(), naive))
        print(f"| {label} | {len(pick(ours)):,} | {cells} |")

    row("**watched**", lambda o: o.watched_latency)
    for name, _ in AGE_BANDS:
        row(f"paid at age {name}", lambda o, band=name: o.latency_by_band.get(band, []))
    row("**all payments**", lambda o: o.all_latency)
    row("paid while orders arrive", lambda o: o.busy_latency)
    row("paid after the last order", lambda o: o.quiet_latency)
    print()
    for name, outcome in outcomes.items():
        print(
            f"{name}: detected {outcome.detected:,}, expired unpaid {outcome.expired:,}, "
            f"missed {outcome.missed} (paid in the window but not detected)"
        )
    for name, outcome in outcomes.items():
        woken = outcome.requests_by_wake
        print(
            f"{name}: requests woken by a watched payment due {woken['watched']:,}, another "
            f"due {woken['due']:,}, the sweep alone {woken['sweep']:,}"
        )
    return {
        "requests <= today's": ours.requests <= today.requests,
        f"naive/ours >= {GOAL_RATIO:,}x": naive.requests >= GOAL_RATIO * ours.requests,
        "all payments p95 <= 90 s": percentile(ours.all_latency, 0.95) * 1000 <= GOAL_ALL_P95_MS,
        "watched p95 <= 1.5 s": percentile(ours.watched_latency, 0.95) * 1000
        <= GOAL_WATCHED_P95_MS,
        "missed == 0": ours.missed == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--tick-s", type=float, default=1.0, help="verifier wake-up period")
    parser.add_argument("--schedules", default="today,ours")
    args = parser.parse_args()
    started = time.perf_counter()
    policy = Settings(_env_file=None).schedule_policy()
    naive = run_naive(make_orders(args.orders, args.seed, policy), policy.payment_window_ms)
    outcomes: dict[str, Outcome] = {}
    wall: dict[str, float] = {}
    for variant in variants(policy):
        if variant.name not in args.schedules.split(","):
            continue
        orders = make_orders(args.orders, args.seed, variant.policy)
        run_started = time.perf_counter()
        outcomes[variant.name] = ScheduleRun(orders, variant, round(args.tick_s * 1000)).run()
        wall[variant.name] = time.perf_counter() - run_started
    goals = report(outcomes, naive, args.orders, policy)
    print(
        f"wall time {time.perf_counter() - started:.1f} s ("
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in wall.items())
        + ")"
    )
    print("goals: " + ", ".join(f"{g}: {'met' if ok else 'NOT MET'}" for g, ok in goals.items()))
    return 0 if all(goals.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
