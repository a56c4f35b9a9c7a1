"""The Bakong request budget on the database, shared by every process: the gate every
payment-check call passes (`khqrpay.bakong.budget.CallGate`), and what the verifier plans with.

Each grant is one short write transaction: lock the budget, count the last minute's calls, add the
granted ones (`khqrpay.orders.budget` does the arithmetic). No transaction is held across a
Bakong call: the calls are taken first, then made.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.db.retry import run_retried
from khqrpay.orders.budget import CallBudget, CallPriority, counted_since_ms, slot_of
from khqrpay.orders.schedule import MD5_LIST_LIMIT


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """The budget at one moment: its limit, the calls of the last minute, and whether Bakong
    refuses the md5 list (every QR is then a call of its own)."""

    at_ms: int
    budget: CallBudget
    used: int
    list_refused_until_ms: int | None

    @property
    def single_checks(self) -> bool:
        return self.list_refused_until_ms is not None and self.list_refused_until_ms > self.at_ms

    @property
    def per_call(self) -> int:
        """QRs one call checks: 50 with the md5 list, 1 with single checks."""
        return 1 if self.single_checks else MD5_LIST_LIMIT

    def md5s_affordable(self, priority: CallPriority) -> int:
        return self.budget.md5s_affordable(
            used=self.used, per_call=self.per_call, priority=priority
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
            now_ms = self._clock.now_ms()
            with self._database.write() as uow:
                uow.budget.lock()
                since_ms = counted_since_ms(now_ms)
                used = uow.budget.calls_since(since_ms)
                granted = self.budget.grant(calls, used=used, priority=priority)
                if granted:
                    uow.budget.add_calls(slot_of(now_ms), granted, prune_before_ms=since_ms)
                return granted

        return run_retried(grant)

    def use(self) -> BudgetUse:
        """The budget now (a read: the figures may move right after)."""
        now_ms = self._clock.now_ms()
        with self._database.read() as uow:
            used = uow.budget.calls_since(counted_since_ms(now_ms))
            refused_until_ms = uow.budget.list_refused_until_ms()
        return BudgetUse(now_ms, self.budget, used, refused_until_ms)

    def _note_list_refused(self, until_ms: int) -> None:
        def note() -> None:
            with self._database.write() as uow:
                uow.budget.set_list_refused_until(until_ms)

        run_retried(note)
