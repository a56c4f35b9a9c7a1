"""Request-budget benchmark: the schedule within `KHQRPAY_BAKONG_MAX_CALLS_PER_MIN`, with the md5
list (50 QRs a call) and without it (Bakong refusing the list: one QR a call), side by side.

The model, the orders and the schedule are `bench/schedule_bench.py`'s (imported, same seeds): ours,
with ride-alongs. What this adds is the worker's claim under a budget, as `Verifier._claim` does
it: the calls left in the last minute (`CallBudget`, the verifier's share: all but the staff's
reserve) bound the QRs claimed, `per_call` a call; watched QRs first, then fresh ones, the
earliest due first, then the rest, the most overdue first; then early ones and ride-alongs fill
the free places of the calls (none with single checks). Calls are counted in one-second slots as
the database does (`khqrpay.orders.budget`), so no 60 s stretch holds more than the budget, nor
any 10 s more than its pace. A QR the budget cannot check yet stays due: deferred, never dropped,
and it expires only after its final check (so "missed", a payment made in the window and never
found, stays 0 by construction; counted).
Customers' "I have paid" presses and staff buttons are not modelled: their shares are kept apart.

Run: .venv/bin/python bench/budget_bench.py [--orders 1000,10000] [--calls-per-min 60]
"""

from __future__ import annotations

import argparse
import heapq
import time
from collections import deque

from khqrpay.orders.budget import (
    PACE_MS,
    SLOT_MS,
    WINDOW_MS,
    CallBudget,
    CallPriority,
    counted_since_ms,
    slot_of,
)
from khqrpay.orders.schedule import MD5_LIST_LIMIT, Candidate, SchedulePolicy, ride_along_slots
from khqrpay.settings import Settings

# The sibling script (the script's own directory is on the path when it runs).
from schedule_bench import (
    ARRIVAL_SPAN_MS,
    DAY_MS,
    Order,
    Outcome,
    ScheduleRun,
    make_orders,
    percentile,
    variants,
)


class BudgetRun(ScheduleRun):
    """`ScheduleRun` whose claim stays within the budget, `per_call` QRs a call."""

    def __init__(
        self,
        orders: list[Order],
        budget: CallBudget,
        policy: SchedulePolicy,
        *,
        per_call: int,
        tick_ms: int,
    ) -> None:
        (_, ours) = variants(policy)
        super().__init__(orders, ours, tick_ms)
        self.max_per_call = per_call
        self.budget = budget
        self.fresh_window_ms = ours.policy.fresh_window_ms
        self.slots: deque[list[int]] = deque()  # [slot start, calls], oldest first
        self.used = 0
        # Watched, then fresh payments by next check (the claim's first tiers); entries are
        # checked against the order's version and whether it is still watched, or fresh.
        self.watched: list[tuple[int, int, int]] = []
        self.fresh: list[tuple[int, int, int]] = []
        self.last_tick_ms = 0
        self.most_calls_in_a_minute = 0
        self.most_calls_in_10_s = 0
        self.calls_made: deque[int] = deque()

    def calls_left(self, now: int) -> int:
        since = counted_since_ms(now)
        while self.slots and self.slots[0][0] <= since:
            self.used -= self.slots.popleft()[1]
        recent_since = counted_since_ms(now, PACE_MS)
        recent = 0
        for slot_ms, calls in reversed(self.slots):  # the last 10 s: a few slots at the end
            if slot_ms <= recent_since:
                break
            recent += calls
        return self.budget.grant(
            self.budget.calls_per_min,
            used=self.used,
            recent=recent,
            priority=CallPriority.VERIFIER,
        )

    def next_wake(self, wake_ms: int) -> int:
        # A deferred QR is overdue: the verifier looks again at its next tick, not in the past.
        wake_ms = max(wake_ms, self.last_tick_ms + self.tick_ms)
        # Nothing can be asked before a counted slot stops counting, in the minute or the pace.
        while self.slots and not self.calls_left(wake_ms):
            freed = [
                slot_ms + window_ms + SLOT_MS
                for slot_ms, _ in self.slots
                for window_ms in (PACE_MS, WINDOW_MS)
                if slot_ms + window_ms + SLOT_MS > wake_ms
            ]
            wake_ms = -(-min(freed) // self.tick_ms) * self.tick_ms
        return wake_ms

    def is_watched(self, order: Order, now: int) -> bool:
        return order.hot_until_ms is not None and now < order.hot_until_ms

    def is_fresh(self, order: Order, now: int) -> bool:
        return order.created_ms > now - self.fresh_window_ms

    def schedule(self, index: int) -> None:
        super().schedule(index)  # an arrival (fresh) or a customer starting to watch (hot)
        order = self.orders[index]
        entry = (order.next_ms, index, order.version)
        heapq.heappush(self.watched if order.hot_until_ms is not None else self.fresh, entry)

    def reschedule(self, index: int, now_ms: int) -> None:
        order = self.orders[index]
        entry = (order.next_ms, index, order.version)
        if self.is_watched(order, now_ms):
            heapq.heappush(self.watched, entry)
        elif self.is_fresh(order, now_ms):
            heapq.heappush(self.fresh, entry)

    def claim(self, now: int, sweep: bool) -> tuple[list[Candidate[int]], list[int]]:
        calls_left = self.calls_left(now)
        capacity = calls_left * self.max_per_call
        if not capacity:
            return [], []
        orders, heappop = self.orders, heapq.heappop
        chosen: list[Candidate[int]] = []
        taken: set[int] = set()
        tiers = ((self.watched, self.is_watched), (self.fresh, self.is_fresh), (self.by_next, None))
        for heap, belongs in tiers:
            while heap and heap[0][0] <= now and len(chosen) < capacity:
                next_ms, index, version = heappop(heap)
                order = orders[index]
                if order.version != version or index in taken:
                    continue
                if belongs is not None and not belongs(order, now):
                    # No longer watched: a fresh one moves to the next tier; every one keeps its
                    # entry by next check.
                    if belongs == self.is_watched and self.is_fresh(order, now):
                        heapq.heappush(self.fresh, (next_ms, index, version))
                    continue
                chosen.append(Candidate(index, next_ms, order.earliest_ms, order.last_checked_ms))
                taken.add(index)
        # The rest of the due QRs stay in `by_next` (deferred); the free places are filled.
        # As the verifier: a sweep call only while a call is left for the due ones after it.
        sweep = sweep and not chosen and calls_left >= 2
        slots = ride_along_slots(len(chosen), sweep=sweep, max_per_call=self.max_per_call)
        early, riders = self.fill(now, slots, taken)
        return chosen + early, riders

    def fill(self, now: int, slots: int, taken: set[int]) -> tuple[list[Candidate[int]], list[int]]:
        """Early payments, then ride-alongs, into the free places, as the base claim ranks them."""
        orders, heappop, heappush = self.orders, heapq.heappop, heapq.heappush
        while self.by_earliest and self.by_earliest[0][0] <= now:
            _, index, version = heappop(self.by_earliest)
            if orders[index].version == version:
                heappush(self.early_by_next, (orders[index].next_ms, index, version))
        filled: list[Candidate[int]] = []
        while slots and self.early_by_next:
            next_ms, index, version = heappop(self.early_by_next)
            order = orders[index]
            if order.version == version and index not in taken and next_ms > now:
                filled.append(Candidate(index, next_ms, order.earliest_ms, order.last_checked_ms))
                taken.add(index)
                slots -= 1
        assert self.ride_along_after_ms is not None
        checked_before = now - self.ride_along_after_ms
        riders: list[int] = []
        while slots and self.checked and self.checked[0][0] <= checked_before:
            _, index, version = self.checked.popleft()
            order = orders[index]
            if order.check_version == version and index not in taken and order.earliest_ms > now:
                riders.append(index)
                slots -= 1
        return filled, riders

    def tick(self, now: int) -> None:
        assert now > self.last_tick_ms, "virtual time only goes forwards"
        self.last_tick_ms = now
        before = self.outcome.requests
        super().tick(now)
        calls = self.outcome.requests - before
        if calls:
            self.used += calls
            if self.slots and self.slots[-1][0] == slot_of(now):
                self.slots[-1][1] += calls
            else:
                self.slots.append([slot_of(now), calls])
            self.calls_made.extend([now] * calls)
            while self.calls_made[0] <= now - WINDOW_MS:
                self.calls_made.popleft()
            self.most_calls_in_a_minute = max(self.most_calls_in_a_minute, len(self.calls_made))
            in_10_s = sum(1 for at in self.calls_made if at > now - PACE_MS)
            self.most_calls_in_10_s = max(self.most_calls_in_10_s, in_10_s)


def row(name: str, orders: int, run: BudgetRun, outcome: Outcome, wall_s: float) -> str:
    days = ARRIVAL_SPAN_MS / DAY_MS
    return (
        f"| {name} | {orders:,} | {outcome.requests:,} | {outcome.requests / days:,.0f} | "
        f"{run.most_calls_in_a_minute} / {run.most_calls_in_10_s} | "
        f"{percentile(outcome.watched_latency, 0.95):,.1f} | "
        f"{percentile(outcome.all_latency, 0.50):,.1f} | "
        f"{percentile(outcome.all_latency, 0.95):,.1f} | "
        f"{percentile(outcome.all_latency, 0.99):,.1f} | {outcome.missed} | "
        f"{outcome.detected:,} | {wall_s:.0f} s |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", default="1000,10000", help="orders a month, comma-separated")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--tick-s", type=float, default=1.0)
    parser.add_argument("--calls-per-min", type=int, default=None)
    parser.add_argument("--modes", default="list,single")
    args = parser.parse_args()
    settings = Settings(_env_file=None)
    if args.calls_per_min is not None:
        settings = settings.model_copy(update={"bakong_max_calls_per_min": args.calls_per_min})
    budget, policy = settings.call_budget(), settings.schedule_policy()
    print(f"budget {budget} (the verifier's share: {budget.ceiling(CallPriority.VERIFIER)})")
    print(policy, "\n")
    print(
        "| mode | orders | requests | per day | most in 60 s / 10 s | watched p95 s | all p50 s "
        "| all p95 s | all p99 s | missed | detected | wall |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    missed = 0
    over_budget = False
    for count in (int(n) for n in args.orders.split(",")):
        for name, per_call in (("list", MD5_LIST_LIMIT), ("single", 1)):
            if name not in args.modes.split(","):
                continue
            orders = make_orders(count, args.seed, policy)
            run = BudgetRun(
                orders, budget, policy, per_call=per_call, tick_ms=round(args.tick_s * 1000)
            )
            started = time.perf_counter()
            outcome = run.run()
            print(row(name, count, run, outcome, time.perf_counter() - started), flush=True)
            missed += outcome.missed
            over_budget |= run.most_calls_in_a_minute > budget.ceiling(CallPriority.VERIFIER)
            over_budget |= run.most_calls_in_10_s > budget.pace(CallPriority.VERIFIER)
    print(f"\ngoals: missed == 0: {'met' if missed == 0 else 'NOT MET'}; ", end="")
    print(f"within the budget: {'NOT MET' if over_budget else 'met'}")
    return 1 if missed or over_budget else 0


if __name__ == "__main__":
    raise SystemExit(main())
