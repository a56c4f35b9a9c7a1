"""The verifier: claim due payments → check them with Bakong → apply each answer.

- Claim: one short write transaction leases the payments that are due (plus those close enough
  to ride along in an md5-list call, `plan_batches`), `FOR UPDATE SKIP LOCKED` on PostgreSQL so
  workers never claim the same rows; on SQLite the write transaction (`BEGIN IMMEDIATE`) excludes
  the other writers. A lease ends by itself, so a worker killed mid-batch loses nothing.
- Check and apply: the stateless `PaymentChecker` (the same path Verify Instantly takes), with
  this verifier's leases released as each QR is rescheduled.
- What is the verifier's own: its worker id and leases, and the pause of every Bakong call when
  Bakong asks for one (token refused, rate limited, circuit open).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from khqrpay.bakong.port import BakongPort
from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.orders.model import EvidenceSource, KhqrPayment, validate_actor
from khqrpay.orders.schedule import Candidate, SchedulePolicy, plan_batches
from khqrpay.services.checking import CheckRecord, CheckTarget, PaymentChecker
from khqrpay.settings import Settings


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one verifier cycle did (the worker turns it into metrics)."""

    now_ms: int
    batch_sizes: tuple[int, ...] = ()
    records: tuple[CheckRecord, ...] = ()
    paused: bool = False
    abandoned: bool = False

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
    ) -> None:
        self._database = database
        self._clock = clock
        self._checker = PaymentChecker.configured(database, client, settings, clock)
        self._worker_id = worker_id
        self._actor = validate_actor(f"worker:{worker_id}")
        self._batch_size = settings.worker_batch_size
        self._lease_ms = round(settings.worker_lease_s * 1000)
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
        batches = await asyncio.to_thread(self._claim, now_ms)
        if not batches:
            return CycleReport(now_ms)
        sizes = tuple(len(batch) for batch in batches)
        checked = await self._checker.ask(batches, abandon=abandon)
        if checked is None:
            await asyncio.to_thread(self._release, [t for batch in batches for t in batch])
            return CycleReport(now_ms, sizes, abandoned=True)
        run = await self._checker.apply(
            checked, source=EvidenceSource.VERIFIER, actor=self._actor, lease_owner=self._worker_id
        )
        self._paused_until_ms = max(self._paused_until_ms, run.pause_until_ms)
        return CycleReport(now_ms, sizes, run.records)

    def _claim(self, now_ms: int) -> list[tuple[CheckTarget, ...]]:
        with self._database.write() as uow:
            riders_after_ms = self._checker.policy.ride_along_after_ms
            due = uow.payments.lock_due(
                now_ms=now_ms, limit=self._batch_size, ride_along_after_ms=riders_after_ms
            )
            plan = plan_batches(
                map(_candidate, due), now_ms=now_ms, ride_along_after_ms=riders_after_ms
            )
            chosen = [candidate.payment_id for batch in plan for candidate in batch]
            if chosen:
                uow.payments.lease(chosen, owner=self._worker_id, until_ms=now_ms + self._lease_ms)
        targets = {payment.id: CheckTarget.of(payment) for payment in due}
        return [tuple(targets[c.payment_id] for c in batch) for batch in plan]

    def _release(self, targets: Iterable[CheckTarget]) -> None:
        with self._database.write() as uow:
            uow.payments.release_leases(
                [target.payment_id for target in targets], owner=self._worker_id
            )


def _candidate(payment: KhqrPayment) -> Candidate[int]:
    # A claimed payment has an earliest check, and every write sets or clears both together.
    assert payment.next_check_ms is not None
    assert payment.earliest_check_ms is not None
    return Candidate(
        payment.id, payment.next_check_ms, payment.earliest_check_ms, payment.last_checked_ms
    )
