"""Sending what the outbox queued (webhook deliveries, Telegram messages), apart from the
verifier.

A `Dispatcher` runs one `Channel` as a task of its own in the worker's event loop. It never
slows the verifier: it does its database work on a thread of its own (the verifier's threads
are never taken), sends with no transaction open, holds at most `concurrency` sends in flight in
all and `per_target` to one recipient (so a slow or dead receiver holds its own slots only), and
every send has a timeout (the sender's). Claimed rows are leased: a worker that dies mid-send
leaves them to another once the lease ends; at shutdown, sends still in flight after the grace
are cancelled and their rows handed back.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Generic, Protocol, TypeVar

from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.db.repositories.deliveries import DeliveryQueue
from khqrpay.logging import get_logger
from khqrpay.orders.notices import RetrySchedule
from khqrpay.outbound.port import SendOutcome

_log = get_logger(__name__)
_T = TypeVar("_T")


class Job(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def target(self) -> Hashable: ...


JobT = TypeVar("JobT", bound=Job)


class Channel(Protocol[JobT]):
    """One kind of outbound message. The synchronous methods touch the database (the dispatcher
    runs them on its own thread); `send` talks to the recipient."""

    name: str
    # The most sends in flight to one recipient.
    per_target: int
    # Whether a recipient asking us to wait (429 retry_after) holds back every send of the
    # channel (Telegram's flood control is the bot's), or only that message (a webhook's).
    pause_all_on_retry_after: bool

    def prepare(self, now_ms: int) -> None:
        """Write the rows to send, when they are made late (Telegram: one per chat)."""
        ...

    def due_targets(self, now_ms: int) -> list[Hashable]: ...

    def claim(self, target: Hashable, *, limit: int, now_ms: int) -> list[JobT]: ...

    async def send(self, job: JobT) -> SendOutcome: ...

    def settle(self, job: JobT, outcome: SendOutcome, now_ms: int) -> None: ...

    def release(self, jobs: Sequence[JobT]) -> None: ...


def next_attempt_ms(
    schedule: RetrySchedule,
    outcome: SendOutcome,
    *,
    attempts_before: int,
    started_ms: int,
    now_ms: int,
    jitter: float,
) -> int | None:
    """When to try again after the failed `outcome`, or None to dead-letter it."""
    if outcome.permanent:
        return None
    wait_ms = None if outcome.retry_after_s is None else round(outcome.retry_after_s * 1000)
    return schedule.next_attempt_ms(
        failures=attempts_before + 1,
        now_ms=now_ms,
        started_ms=started_ms,
        jitter=jitter,
        not_before_ms=None if wait_ms is None else now_ms + wait_ms,
    )


class Dispatcher(Generic[JobT]):
    def __init__(
        self,
        channel: Channel[JobT],
        *,
        clock: Clock,
        concurrency: int,
        poll_interval_s: float,
        shutdown_grace_s: float,
    ) -> None:
        self.channel = channel
        self._clock = clock
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s
        self._shutdown_grace_s = shutdown_grace_s
        self._wake = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], JobT] = {}
        self._per_target: Counter[Hashable] = Counter()
        self._paused_until_ms = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"khqrpay-{channel.name}")

    def wake(self) -> None:
        """Look for due messages now (new events were relayed) rather than at the next poll."""
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def _db(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set; then wait up to the grace for sends in flight."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    await self.fill()
                except Exception:
                    # The database restarting must not end the channel: try at the next poll.
                    _log.exception("outbound step failed", channel=self.channel.name)
                self._wake.clear()
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait(
                    (stopping, woken),
                    timeout=self._poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                woken.cancel()
        finally:
            stopping.cancel()
            await self.close()

    async def run_once(self) -> None:
        """One pass: send what is due now and wait for those sends (`khqrpay worker --once`)."""
        await self.fill()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight))

    async def fill(self) -> int:
        """Claim due messages up to the free slots and start sending them; how many started."""
        now_ms = self._clock.now_ms()
        if now_ms < self._paused_until_ms:
            return 0
        channel = self.channel
        await self._db(partial(channel.prepare, now_ms))
        started = 0
        for target in await self._db(partial(channel.due_targets, now_ms)):
            free_in_all = self._concurrency - len(self._in_flight)
            if free_in_all <= 0:
                break
            free = min(free_in_all, channel.per_target - self._per_target[target])
            if free <= 0:
                continue
            jobs = await self._db(partial(channel.claim, target, limit=free, now_ms=now_ms))
            for job in jobs:
                self._start(job)
            started += len(jobs)
        return started

    def _start(self, job: JobT) -> None:
        task = asyncio.create_task(self._deliver(job), name=f"{self.channel.name}-{job.id}")
        self._in_flight[task] = job
        self._per_target[job.target] += 1
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        job = self._in_flight.pop(task)
        self._per_target[job.target] -= 1
        if self._per_target[job.target] <= 0:
            del self._per_target[job.target]
        self._wake.set()

    async def _deliver(self, job: JobT) -> None:
        try:
            outcome = await self.channel.send(job)
        except Exception:
            # A bug, not the recipient: leave the row to its lease, to be tried again.
            _log.exception("outbound send failed", channel=self.channel.name, id=job.id)
            return
        now_ms = self._clock.now_ms()
        if outcome.retry_after_s is not None and self.channel.pause_all_on_retry_after:
            self._paused_until_ms = max(
                self._paused_until_ms, now_ms + round(outcome.retry_after_s * 1000)
            )
        try:
            await self._db(partial(self.channel.settle, job, outcome, now_ms))
        except Exception:
            # Its lease ends and it is sent again: receivers deduplicate on the message's id.
            _log.exception("outbound outcome not recorded", channel=self.channel.name, id=job.id)

    async def close(self) -> None:
        """Give sends in flight the grace, cancel the rest and hand their rows back."""
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=self._shutdown_grace_s)
        abandoned = [job for task, job in self._in_flight.items() if not task.done()]
        for task in list(self._in_flight):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        if abandoned:
            with contextlib.suppress(Exception):
                await self._db(partial(self.channel.release, abandoned))
        # Work already handed to the thread finishes first (a settle racing the cancel).
        await asyncio.to_thread(self._executor.shutdown)


def jitter_source(seed: int | None = None) -> Callable[[], float]:
    """Where retry jitter comes from: [0, 1) floats, seeded in tests."""
    return random.Random(seed).random  # noqa: S311 - spreading retries, not cryptography


@dataclass
class QueueChannel(ABC):
    """What channels over a `DeliveryQueue` share: finding due recipients, claiming rows under
    this worker's lease, recording an outcome (delivered, again later, or dead), handing rows
    back. A subclass names its queue and loads and sends its jobs."""

    database: Database
    schedule: RetrySchedule
    owner: str
    lease_ms: int
    jitter: Callable[[], float]

    @abstractmethod
    def queue(self, uow: UnitOfWork) -> DeliveryQueue: ...

    def due_targets(self, now_ms: int) -> list[Hashable]:
        with self.database.read() as uow:
            return self.queue(uow).due_targets(now_ms)

    def claim_ids(self, uow: UnitOfWork, target: Hashable, *, limit: int, now_ms: int) -> list[int]:
        return self.queue(uow).claim(
            target,
            now_ms=now_ms,
            limit=limit,
            owner=self.owner,
            lease_until_ms=now_ms + self.lease_ms,
        )

    def record(
        self,
        uow: UnitOfWork,
        row_id: int,
        outcome: SendOutcome,
        *,
        attempts_before: int,
        started_ms: int,
        now_ms: int,
        **values: object,
    ) -> None:
        """Write the outcome of a try, if this worker still holds the row."""
        queue = self.queue(uow)
        if outcome.delivered:
            queue.delivered(row_id, owner=self.owner, now_ms=now_ms, **values)
            return
        queue.failed(
            row_id,
            owner=self.owner,
            now_ms=now_ms,
            error=outcome.error or "failed",
            next_attempt_ms=next_attempt_ms(
                self.schedule,
                outcome,
                attempts_before=attempts_before,
                started_ms=started_ms,
                now_ms=now_ms,
                jitter=self.jitter(),
            ),
            **values,
        )

    def release(self, jobs: Sequence[Job]) -> None:
        with self.database.write() as uow:
            self.queue(uow).release([job.id for job in jobs], owner=self.owner)
