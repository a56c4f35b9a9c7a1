"""The `khqrpay worker` runtime: one asyncio loop running the verifier and the outbox relay, with
metrics, until told to stop; beside them, as tasks of their own, the expiry sweep with the
pending-payments gauge (one worker at a time: a job lease, so only that worker's gauge is
current) and the outbound jobs (`webhooks`, and `telegram` when configured), which never hold up
the verifier (`khqrpay.services.dispatch`).

Shutdown: once `stop` is set no new cycle starts; a Bakong call in flight gets
`worker_shutdown_grace_s` to answer (its batch is then applied), after which it is cancelled and
its leases are released for another worker. Database steps are never interrupted midway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import socket
from collections.abc import Awaitable
from typing import Any, TypeVar

from khqrpay.bakong.port import BakongPort
from khqrpay.bootstrap import App, BakongServices
from khqrpay.events import EventBus
from khqrpay.logging import get_logger
from khqrpay.orders.model import AttemptOutcome
from khqrpay.services.alerts import warn_token_expiry
from khqrpay.services.budget import budget_status
from khqrpay.services.dispatch import Dispatcher
from khqrpay.services.expiry import sweep_expired_orders
from khqrpay.services.maintenance import hold_job
from khqrpay.services.orders import pending_payments_by_age
from khqrpay.services.outbox import RELAY_BATCH, relay_outbox
from khqrpay.services.receiving_account import (
    AccountVerdict,
    ReceivingAccountCheck,
    check_receiving_account,
)
from khqrpay.services.verification import CycleReport
from khqrpay.settings import Settings
from khqrpay.worker import metrics

_log = get_logger(__name__)
_T = TypeVar("_T")

_MINUTE_MS = 60_000
# A Bakong call answers in well under a second; a cycle still waiting after this long (a call
# hanging until the client's timeout) goes on by itself, and the loop starts the next cycle, so
# payments that become due meanwhile (a customer watching) are not held behind it. Its QRs stay
# leased to it, so no QR is ever in two cycles; at most this many cycles wait at once.
SLOW_CYCLE_S = 2.0
MAX_CYCLES_WAITING = 4
_DAY_MS = 24 * 60 * _MINUTE_MS
# The age bands of the pending-payments gauge, by upper bound (the last one is open).
AGE_BANDS: tuple[tuple[str, int], ...] = (
    ("under_15m", 15 * _MINUTE_MS),
    ("15m_to_1h", 60 * _MINUTE_MS),
    ("1h_to_1d", _DAY_MS),
    ("1d_to_7d", 7 * _DAY_MS),
    ("7d_to_30d", 30 * _DAY_MS),
    ("over_30d", 0),
)
_ERROR_OUTCOMES = frozenset(
    {
        AttemptOutcome.UNAUTHORIZED,
        AttemptOutcome.BLOCKED,
        AttemptOutcome.RATE_LIMITED,
        AttemptOutcome.UNAVAILABLE,
        AttemptOutcome.BAD_RESPONSE,
    }
)
# The lease name of the expiry sweep (with the gauges): one worker at a time runs it.
SWEEP_JOB = "expiry_sweep"
_UNSAFE_ID_CHARS = re.compile(r"[^\w.-]")


class ReceivingAccountRefused(Exception):
    """The receiving account cannot take payments: checking for them would be pointless."""


async def refuse_an_account_that_cannot_receive(
    client: BakongPort, settings: Settings
) -> ReceivingAccountCheck:
    """The worker's start-up check of `merchant_account`: raises `ReceivingAccountRefused` when
    Bakong says it cannot receive; when Bakong cannot be asked, warns and lets the worker run.
    It waits at most one request timeout, so a slow Bakong delays the start by no more."""
    check = await check_receiving_account(
        client, settings.merchant_account, within_s=settings.bakong_timeout_s
    )
    if not check.can_receive:
        _log.error("receiving account cannot receive payments", detail=check.describe())
        raise ReceivingAccountRefused(check.describe())
    log = _log.info if check.verdict is AccountVerdict.READY else _log.warning
    log("receiving account checked", verdict=check.verdict.value, detail=check.describe())
    return check


def new_worker_id() -> str:
    """`hostname:pid:random`: unique across machines, restarts and pid reuse."""
    host = _UNSAFE_ID_CHARS.sub("-", socket.gethostname())[:32] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """The verifier, the expiry sweep and the outbox relay on one loop; the outbound jobs
    beside it."""

    def __init__(
        self, *, app: App, bakong: BakongServices, bus: EventBus, worker_id: str | None = None
    ) -> None:
        self.worker_id = worker_id or new_worker_id()
        self._app = app
        self._settings = app.settings
        self._database = app.database
        self._bus = bus
        self._clock = app.clock
        self._bakong = bakong.client
        self._budget = bakong.budget
        self.verifier = app.verifier(bakong, worker_id=self.worker_id)
        self._sweep_interval_ms = round(app.settings.worker_sweep_interval_s * 1000)
        self._next_sweep_ms = 0
        self._dispatchers: list[Dispatcher[Any]] = []
        # The last cycle claimed a full batch: more checks are due at once.
        self._backlog = False
        # The last cycle found many payments paid (a burst): outbound sending holds back.
        self._burst = False

    async def run(self, stop: asyncio.Event, *, once: bool = False) -> None:
        """Cycle until `stop` is set (or once: one cycle, one sweep, one relay, one pass of
        each outbound job)."""
        abandon = asyncio.Event()
        grace = asyncio.create_task(self._abandon_after_grace(stop, abandon))
        outbound_stop = asyncio.Event()
        _log.info("worker started", worker_id=self.worker_id, once=once)
        async with self._app.dispatchers(
            owner=self.worker_id, verifier_busy=lambda: self._burst
        ) as self._dispatchers:
            outbound = [
                asyncio.create_task(dispatcher.run(outbound_stop), name=dispatcher.channel.name)
                for dispatcher in ([] if once else self._dispatchers)
            ]
            relay_wanted = asyncio.Event()
            if not once:
                # A sweep reads many rows: beside the check loop, never in it. The relay too:
                # the next cycle's claim and Bakong call overlap the last one's publishing.
                outbound.append(asyncio.create_task(self._sweeping(outbound_stop)))
                outbound.append(asyncio.create_task(self._relaying(outbound_stop, relay_wanted)))
            waiting: set[asyncio.Task[CycleReport | None]] = set()
            try:
                while True:
                    report = await self._next_cycle(abandon, waiting, wait=once)
                    batch = self._settings.worker_batch_size
                    self._backlog = report is not None and report.claimed >= batch
                    self._burst = report is not None and _completions(report) >= batch // 2
                    if once:
                        await self._guarded("expiry sweep", self._sweep(force=True))
                        await self._guarded("outbox relay", self._relay())
                        break
                    relay_wanted.set()
                    if stop.is_set():
                        break
                    # A full batch means more is due: go on at once; otherwise wait for the
                    # next poll.
                    if not self._backlog:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                stop.wait(), self._settings.worker_poll_interval_s
                            )
                if once:
                    for dispatcher in self._dispatchers:
                        await self._guarded(dispatcher.channel.name, dispatcher.run_once())
                        await dispatcher.close()
            finally:
                # Cycles still waiting on Bakong end by themselves, or are abandoned after the
                # shutdown grace (their leases released).
                await asyncio.gather(*waiting, return_exceptions=True)
                outbound_stop.set()
                await asyncio.gather(*outbound, return_exceptions=True)
                grace.cancel()
                _log.info("worker stopped", worker_id=self.worker_id)

    async def _next_cycle(
        self,
        abandon: asyncio.Event,
        waiting: set[asyncio.Task[CycleReport | None]],
        *,
        wait: bool,
    ) -> CycleReport | None:
        """Run one verifier cycle; its report, or None if it is still waiting on Bakong after
        `SLOW_CYCLE_S` (it goes on in `waiting`). `wait`: until it ends, however long."""
        if len(waiting) >= MAX_CYCLES_WAITING:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        cycle = asyncio.create_task(self._guarded("verifier cycle", self._cycle(abandon)))
        waiting.add(cycle)
        cycle.add_done_callback(waiting.discard)
        done, _ = await asyncio.wait({cycle}, timeout=None if wait else SLOW_CYCLE_S)
        return cycle.result() if done else None

    async def _abandon_after_grace(self, stop: asyncio.Event, abandon: asyncio.Event) -> None:
        await stop.wait()
        await asyncio.sleep(self._settings.worker_shutdown_grace_s)
        abandon.set()

    async def _guarded(self, step: str, work: Awaitable[_T]) -> _T | None:
        """A failed step (database restarting, bus down) is logged and tried again next cycle:
        the worker itself must keep running."""
        try:
            return await work
        except Exception:
            _log.exception("worker step failed", step=step, worker_id=self.worker_id)
            return None

    async def _cycle(self, abandon: asyncio.Event) -> CycleReport:
        with metrics.CYCLE_SECONDS.time():
            report = await self.verifier.run_cycle(abandon=abandon)
        observe(report)
        return report

    async def _sweeping(self, stop: asyncio.Event) -> None:
        """The expiry sweep and the gauges, on their own task, every `worker_sweep_interval_s`."""
        while not stop.is_set():
            await self._guarded("expiry sweep", self._sweep(force=False))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.worker_poll_interval_s)

    async def _relaying(self, stop: asyncio.Event, wanted: asyncio.Event) -> None:
        """The outbox relay, on its own task: once each time the loop asks, and a last time at
        stop (after every cycle has ended), so nothing written is left unpublished."""
        while not stop.is_set():
            waiting = asyncio.ensure_future(wanted.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            stopping.cancel()
            wanted.clear()
            await self._guarded("outbox relay", self._relay())

    async def _sweep(self, *, force: bool) -> bool:
        """The expiry sweep, the pending-payments gauge and the token warning, if it is time and
        this worker holds the sweep's lease (one worker at a time sweeps); whether it swept."""
        now_ms = self._clock.now_ms()
        if not force and now_ms < self._next_sweep_ms:
            return False
        self._next_sweep_ms = now_ms + self._sweep_interval_ms
        held = await asyncio.to_thread(
            hold_job,
            self._database,
            SWEEP_JOB,
            owner=self.worker_id,
            now_ms=now_ms,
            # Renewed every sweep; a killed holder's lease ends two intervals later at most.
            lease_ms=2 * self._sweep_interval_ms,
        )
        if not held:
            return False
        expired = await asyncio.to_thread(
            sweep_expired_orders,
            self._database,
            actor=self.verifier.actor,
            now_ms=now_ms,
            final_grace_ms=self.verifier.policy.final_grace_ms,
        )
        metrics.EXPIRED_ORDERS.inc(len(expired))
        ages = await asyncio.to_thread(
            pending_payments_by_age, self._database, now_ms=now_ms, bands=AGE_BANDS
        )
        for band, count in ages.items():
            metrics.PENDING_PAYMENTS.labels(age_band=band).set(count)
        if self._budget is not None:
            status = await asyncio.to_thread(
                budget_status, self._database, self._budget.budget, now_ms=now_ms
            )
            metrics.BEHIND_SCHEDULE.set(status.behind_orders)
            # Said every sweep while it lasts: the shop should know payments are found slower.
            if status.use.single_checks or status.behind_orders:
                _log.warning("bakong request budget", status=status.describe())
        await asyncio.to_thread(
            warn_token_expiry,
            self._database,
            expires_at_ms=self._bakong.token_expires_at_ms(),
            now_ms=now_ms,
            warn_ms=round(self._settings.bakong_token_warn_days * _DAY_MS),
            worker=self.worker_id,
        )
        return True

    async def _relay(self) -> None:
        # Drain the backlog (a burst of completions) rather than one batch per poll.
        while (published := await relay_outbox(self._database, self._bus, self._clock)) > 0:
            metrics.OUTBOX_RELAYED.inc(published)
            # New events may have queued messages: look now rather than at the next poll.
            for dispatcher in self._dispatchers:
                dispatcher.wake()
            if published < RELAY_BATCH:
                break


async def run_worker(app: App, bakong: BakongServices, bus: EventBus, stop: asyncio.Event) -> None:
    """A worker on parts a host process already opened (the web app, the demo), until `stop`."""
    await Worker(app=app, bakong=bakong, bus=bus).run(stop)


def observe(report: CycleReport) -> None:
    """A cycle's report as metrics."""
    metrics.BAKONG_PAUSED.set(1 if report.paused else 0)
    metrics.DEFERRED.inc(report.deferred)
    metrics.HEDGED_CALLS.inc(report.hedged)
    if report.budget is not None:
        metrics.BUDGET_LIMIT.set(report.budget.budget.calls_per_min)
        metrics.BUDGET_USED.set(report.budget.used)
        single = report.budget.single_checks
        metrics.CHECK_MODE.labels(mode="single").set(1 if single else 0)
        metrics.CHECK_MODE.labels(mode="list").set(0 if single else 1)
    if report.batch_sizes:
        metrics.CLAIMED.observe(report.claimed)
    for size in report.batch_sizes:
        metrics.BATCH_SIZE.observe(size)
    for record in report.records:
        metrics.CHECKS.labels(outcome=record.outcome.value).inc()
        if record.outcome in _ERROR_OUTCOMES:
            metrics.ERRORS.labels(type=record.outcome.value).inc()
        if record.order_expired:
            metrics.EXPIRED_ORDERS.inc()
        completion = record.completion
        if completion is None:
            continue
        metrics.COMPLETIONS.labels(result=completion.action.value).inc()
        paid = None if record.transaction is None else record.transaction.created_ms
        if completion.completed and paid is not None:  # no creation time: no latency to tell
            latency_ms = max(0, record.at_ms - paid)
            metrics.DETECTION_LATENCY.observe(latency_ms / 1000)


def _completions(report: CycleReport) -> int:
    """Payments a cycle recorded (their completions are the verifier's heavy work)."""
    return sum(1 for record in report.records if record.completion is not None)
