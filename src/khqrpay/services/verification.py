"""The verifier: claim due payments → check them with Bakong → apply each answer.

- Claim: one short write transaction leases the payments that are due (plus those close enough
  to ride along in an md5-list call, `plan_batches`; with none due, one call of the longest
  unchecked when the sweep is due), `FOR UPDATE SKIP LOCKED` on PostgreSQL so
  workers never claim the same rows; on SQLite the write transaction (`BEGIN IMMEDIATE`) excludes
  the other writers. A lease ends by itself, so a worker killed mid-batch loses nothing.
- Check and apply: the stateless `PaymentChecker` (the same path Verify Instantly takes), each
  call's answers applied in one transaction as soon as that call returns (with those of the calls
  that returned while the previous apply ran), with this verifier's leases released as each QR is
  rescheduled.
- What is the verifier's own: its worker id and leases, and the pause of every Bakong call when
  Bakong asks for one (token refused, rate limited, circuit open).
- The request budget (`SharedCallBudget`, shared by every process): in the claim's transaction
  the budget is locked, the cycle claims no more QRs than the calls left this minute can check
  (50 a call with the md5 list, 1 when Bakong refuses it), watched and fresh QRs first, then the
  most overdue, and takes exactly the calls its plan makes. A QR the budget had no call for after
  all (the list refused during the call: one call per QR) is handed back untouched: deferred,
  never dropped, and never expired without its final check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from functools import partial

from khqrpay.bakong.budget import calling_as, prepaid
from khqrpay.bakong.errors import OverBudget
from khqrpay.bakong.port import BakongPort
from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.orders.budget import CallPriority
from khqrpay.orders.model import EvidenceSource, KhqrPayment, validate_actor
from khqrpay.orders.schedule import MD5_LIST_LIMIT, Candidate, SchedulePolicy, plan_batches
from khqrpay.services.budget import BudgetUse, SharedCallBudget, lock_use, spend
from khqrpay.services.checking import (
    CheckedQr,
    CheckRecord,
    CheckRun,
    CheckTarget,
    PaymentChecker,
    ask_hedged,
    refused_by_budget,
)
from khqrpay.settings import Settings


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one verifier cycle did (the worker turns it into metrics)."""

    now_ms: int
    batch_sizes: tuple[int, ...] = ()
    records: tuple[CheckRecord, ...] = ()
    paused: bool = False
    abandoned: bool = False
    # The budget as the cycle planned with it (None: no budget), and the QRs it could not check
    # after all (handed back to be claimed again, first, when the budget allows).
    budget: BudgetUse | None = None
    deferred: int = 0
    # Calls asked a second time because Bakong was slow while a customer watched.
    hedged: int = 0

    @property
    def claimed(self) -> int:
        return sum(self.batch_sizes)


class Verifier:
    """Claims, checks and applies; one per worker. `worker_id` names its leases and audit."""

    def __init__(
        self,
        *,
        database: Database,
        client: BakongPort,
        settings: Settings,
        clock: Clock,
        worker_id: str,
        budget: SharedCallBudget | None = None,
    ) -> None:
        self._database = database
        self._client = client
        self._budget = budget
        self._clock = clock
        self._checker = PaymentChecker.configured(database, client, settings, clock)
        self._worker_id = worker_id
        self._actor = validate_actor(f"worker:{worker_id}")
        self._batch_size = settings.worker_batch_size
        self._lease_ms = round(settings.worker_lease_s * 1000)
        self._hedge_after_s = self._checker.hedge_after_s
        self._fresh_window_ms = self._checker.policy.fresh_window_ms
        self._paused_until_ms = 0

    @property
    def actor(self) -> str:
        return self._actor

    @property
    def policy(self) -> SchedulePolicy:
        return self._checker.policy

    @property
    def paused_until_ms(self) -> int:
        """Until when no Bakong call is made (token refused, rate limited, circuit open)."""
        return self._paused_until_ms

    async def run_cycle(self, *, abandon: asyncio.Event | None = None) -> CycleReport:
        """Claim → check → apply once. If `abandon` is set while Bakong is being asked (shutdown),
        the call is cancelled and the batch's leases are released for another worker."""
        now_ms = self._clock.now_ms()
        if now_ms < self._paused_until_ms:
            return CycleReport(now_ms, paused=True)
        batches, use = await asyncio.to_thread(self._claim, now_ms)
        if use is not None and use.list_refused_until_ms is not None and use.single_checks:
            self._client.list_refused_elsewhere(use.list_refused_until_ms)
        if not batches:
            return CycleReport(now_ms, budget=use)
        sizes = tuple(len(batch) for batch in batches)
        # The claim took the calls of its batches from the budget. Each call's answers are
        # applied as soon as it returns: a call hanging until the client's timeout holds only
        # its own QRs, never the payments the other calls found.
        applier = _CallApplier(self._apply)
        with calling_as(CallPriority.VERIFIER), prepaid(len(batches) if use else 0):
            outcomes = await asyncio.gather(
                *(self._check_call(batch, applier, abandon=abandon) for batch in batches)
            )
        runs = [outcome.run for outcome in outcomes if outcome.run is not None]
        self._paused_until_ms = max(self._paused_until_ms, *(run.pause_until_ms for run in runs), 0)
        return CycleReport(
            now_ms,
            sizes,
            tuple(record for run in runs for record in run.records),
            abandoned=len(runs) < len(batches),
            budget=use,
            deferred=sum(outcome.deferred for outcome in outcomes),
            hedged=sum(outcome.hedged for outcome in outcomes),
        )

    async def _check_call(
        self,
        batch: tuple[CheckTarget, ...],
        applier: _CallApplier,
        *,
        abandon: asyncio.Event | None,
    ) -> _CallOutcome:
        """Ask Bakong about one batch (one call, or two when hedged) and apply its answers.
        The run is None when abandoned while asking (the leases released)."""
        checked, hedged = await self._ask_hedged(batch, abandon=abandon)
        if checked is None:
            await asyncio.to_thread(self._release, batch)
            return _CallOutcome(None, 0, hedged)
        deferred = [item.target for item in checked if isinstance(item.answer, OverBudget)]
        if deferred:
            await asyncio.to_thread(self._release, deferred)
            checked = [item for item in checked if not isinstance(item.answer, OverBudget)]
        run = await applier.apply(checked)
        return _CallOutcome(run, len(deferred), hedged)

    async def _apply(self, checked: list[CheckedQr]) -> CheckRun:
        return await self._checker.apply(
            checked, source=EvidenceSource.VERIFIER, actor=self._actor, lease_owner=self._worker_id
        )

    async def _ask_hedged(
        self, batch: tuple[CheckTarget, ...], *, abandon: asyncio.Event | None
    ) -> tuple[list[CheckedQr] | None, bool]:
        """The answers to one call (None: abandoned), and whether it was asked twice: only a
        call carrying a QR a customer watches is asked again when Bakong is slow."""
        now_ms = self._clock.now_ms()
        watched = any(t.hot_until_ms is not None and t.hot_until_ms > now_ms for t in batch)
        return await ask_hedged(
            partial(self._checker.ask, batch, abandon=abandon),
            after_s=self._hedge_after_s if watched else None,
            refused=refused_by_budget,
        )

    def _claim(self, now_ms: int) -> tuple[list[tuple[CheckTarget, ...]], BudgetUse | None]:
        """The batches to ask Bakong about now, and the budget as the claim found it (None:
        no budget); with a budget, their calls are taken from it in the same transaction."""
        with self._database.write() as uow:
            limit, per_call, use = self._batch_size, MD5_LIST_LIMIT, None
            if self._budget is not None:
                use = lock_use(uow, self._budget.budget, now_ms)
                limit = min(limit, use.md5s_affordable(CallPriority.VERIFIER))
                per_call = use.per_call
                if limit == 0:
                    return [], use
            policy = self._checker.policy
            # A sweep call only while the budget leaves a call for the due ones after it: the
            # sweep stretches, it never holds back a watched payment.
            sweep = limit >= 2 * per_call and policy.sweep_due(
                oldest_checked_ms=uow.payments.oldest_pending_check_ms(now_ms=now_ms),
                now_ms=now_ms,
            )
            due = uow.payments.lock_due(
                now_ms=now_ms,
                limit=limit,
                ride_along_after_ms=policy.ride_along_after_ms,
                fresh_since_ms=now_ms - self._fresh_window_ms,
                per_call=per_call,
                sweep=sweep,
            )
            plan = plan_batches(
                map(_candidate, due),
                now_ms=now_ms,
                ride_along_after_ms=policy.ride_along_after_ms,
                sweep=sweep,
                max_per_call=per_call,
            )
            chosen = [candidate.payment_id for batch in plan for candidate in batch]
            if chosen:
                uow.payments.lease(chosen, owner=self._worker_id, until_ms=now_ms + self._lease_ms)
            if use is not None:
                spend(uow, use, len(plan))
        targets = {payment.id: CheckTarget.of(payment) for payment in due}
        return [tuple(targets[c.payment_id] for c in batch) for batch in plan], use

    def _release(self, targets: Iterable[CheckTarget]) -> None:
        with self._database.write() as uow:
            uow.payments.release_leases(
                [target.payment_id for target in targets], owner=self._worker_id
            )


class _CallApplier:
    """Applies the answers of one cycle's calls as they return. Answers that return while an
    apply is running wait for it (they would wait for its locks anyway) and are then applied
    together, in one transaction: one commit for several calls, and no call is ever held back
    for one that has not returned."""

    def __init__(self, apply: Callable[[list[CheckedQr]], Awaitable[CheckRun]]) -> None:
        self._apply = apply
        self._waiting: list[tuple[list[CheckedQr], asyncio.Future[CheckRun]]] = []
        self._applying = asyncio.Lock()

    async def apply(self, checked: list[CheckedQr]) -> CheckRun:
        """The run of these answers (a call's), applied alone or with others that returned
        meanwhile."""
        mine: asyncio.Future[CheckRun] = asyncio.get_running_loop().create_future()
        self._waiting.append((checked, mine))
        async with self._applying:
            if not mine.done():
                await self._apply_waiting()
        return mine.result()

    async def _apply_waiting(self) -> None:
        taken, self._waiting = self._waiting, []
        # Each call keeps its own number, so the round records how many calls it made.
        together = [
            replace(item, call=n) for n, (answers, _) in enumerate(taken) for item in answers
        ]
        try:
            run = await self._apply(together)
        except asyncio.CancelledError:
            for _, future in taken:
                future.cancel()
            raise
        except Exception as exc:  # every call it applied fails with it, as each would alone
            for _, future in taken:
                future.set_exception(exc)
            return
        for answers, future in taken:
            ids = {item.target.payment_id for item in answers}
            records = tuple(record for record in run.records if record.target.payment_id in ids)
            future.set_result(replace(run, records=records))


@dataclass(frozen=True, slots=True)
class _CallOutcome:
    """One call of a cycle: its applied run (None: abandoned), QRs handed back for want of a
    budget call, and whether it was hedged."""

    run: CheckRun | None
    deferred: int
    hedged: bool


def _candidate(payment: KhqrPayment) -> Candidate[int]:
    # A claimed payment has an earliest check, and every write sets or clears both together.
    assert payment.next_check_ms is not None
    assert payment.earliest_check_ms is not None
    return Candidate(
        payment.id, payment.next_check_ms, payment.earliest_check_ms, payment.last_checked_ms
    )
