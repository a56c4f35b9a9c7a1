"""The Bakong request budget on the database, shared by every process: the gate every
payment-check call passes (`khqrpay.bakong.budget.CallGate`), and what the verifier plans with.

Each grant is one short write transaction: lock the budget, count the last minute's calls, add the
granted ones (`khqrpay.orders.budget` does the arithmetic); the verifier does the same inside the
transaction of its claim (`lock_use`, `spend`), so it claims exactly what its calls can carry. No
transaction is held across a Bakong call: the calls are taken first, then made.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.db.retry import run_retried
from khqrpay.orders.budget import PACE_MS, CallBudget, CallPriority, counted_since_ms, slot_of
from khqrpay.orders.schedule import MD5_LIST_LIMIT

# A QR whose check is this late is behind schedule (what staff, logs and metrics are told).
BEHIND_MS = 30_000


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """The budget at one moment: its limit, the calls of the last minute (`recent` of them in
    the last 10 s), and whether Bakong refuses the md5 list (every QR is then a call of its
    own)."""

    at_ms: int
    budget: CallBudget
    used: int
    list_refused_until_ms: int | None
    recent: int = 0

    @property
    def single_checks(self) -> bool:
        return self.list_refused_until_ms is not None and self.list_refused_until_ms > self.at_ms

    @property
    def per_call(self) -> int:
        """QRs one call checks: 50 with the md5 list, 1 with single checks."""
        return 1 if self.single_checks else MD5_LIST_LIMIT

    def md5s_affordable(self, priority: CallPriority) -> int:
        return self.budget.md5s_affordable(
            used=self.used, recent=self.recent, per_call=self.per_call, priority=priority
        )

    def grant(self, calls: int, priority: CallPriority) -> int:
        return self.budget.grant(calls, used=self.used, recent=self.recent, priority=priority)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """The budget and the orders with a QR behind schedule: what staff, `khqrpay doctor`, the
    worker's log and metrics say."""

    use: BudgetUse
    behind_orders: int

    def describe(self) -> str:
        limit = self.use.budget.calls_per_min
        behind = f"{self.behind_orders} order{'' if self.behind_orders == 1 else 's'}"
        if self.use.single_checks:
            return (
                f"md5 list refused by Bakong: checking one QR per call, within {limit} calls a "
                f"minute; {behind} {'is' if self.behind_orders == 1 else 'are'} behind schedule"
            )
        return (
            f"checking with the md5 list (50 QRs a call), within {limit} calls a minute "
            f"({self.use.used} used in the last minute); {behind} behind schedule"
        )


def lock_use(uow: UnitOfWork, budget: CallBudget, now_ms: int) -> BudgetUse:
    """The budget, locked until `uow` ends: no other process takes a call meanwhile."""
    refused_until_ms = uow.budget.lock()
    return _use(uow, budget, now_ms, refused_until_ms)


def spend(uow: UnitOfWork, use: BudgetUse, calls: int) -> None:
    """Count `calls` made now, in the transaction that locked `use`."""
    if calls:
        uow.budget.add_calls(slot_of(use.at_ms), calls, prune_before_ms=counted_since_ms(use.at_ms))


def read_use(uow: UnitOfWork, budget: CallBudget, now_ms: int) -> BudgetUse:
    return _use(uow, budget, now_ms, uow.budget.list_refused_until_ms())


def _use(
    uow: UnitOfWork, budget: CallBudget, now_ms: int, refused_until_ms: int | None
) -> BudgetUse:
    used = uow.budget.calls_since(counted_since_ms(now_ms))
    recent = uow.budget.calls_since(counted_since_ms(now_ms, PACE_MS)) if used else 0
    return BudgetUse(now_ms, budget, used, refused_until_ms, recent)


def budget_status(database: Database, budget: CallBudget, *, now_ms: int) -> BudgetStatus:
    """The budget and how far behind the checks are, in one snapshot."""
    with database.read() as uow:
        return BudgetStatus(
            read_use(uow, budget, now_ms),
            uow.payments.count_orders_behind(due_before_ms=now_ms - BEHIND_MS),
        )


class SharedCallBudget:
    """`budget` shared through `database` by every process; implements the client's gate."""

    def __init__(self, database: Database, budget: CallBudget, clock: Clock) -> None:
        self._database = database
        self.budget = budget
        self._clock = clock

    async def acquire(self, calls: int, *, priority: CallPriority) -> int:
        return await asyncio.to_thread(self.take, calls, priority=priority)

    async def list_refused(self, *, until_ms: int) -> None:
        await asyncio.to_thread(self._note_list_refused, until_ms)

    def take(self, calls: int, *, priority: CallPriority) -> int:
        """Take up to `calls` calls now; how many were granted."""
        if calls <= 0:
            return 0

        def grant() -> int:
            with self._database.write() as uow:
                use = lock_use(uow, self.budget, self._clock.now_ms())
                granted = use.grant(calls, priority)
                spend(uow, use, granted)
                return granted

        return run_retried(grant)

    def _note_list_refused(self, until_ms: int) -> None:
        def note() -> None:
            with self._database.write() as uow:
                uow.budget.set_list_refused_until(until_ms)

        run_retried(note)
