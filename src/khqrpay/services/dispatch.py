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
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Generic, Protocol, TypeVar

from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.db.repositories.deliveries import DeliveryQueue, Try
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


@dataclass(frozen=True, slots=True)
class Finished(Generic[JobT]):
    """A try that ended: the job, what came of it, and when."""

    job: JobT
    outcome: SendOutcome
    at_ms: int


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

    def claim(self, capacity: Mapping[Hashable, int], *, now_ms: int) -> list[JobT]:
        """Lease up to `capacity[target]` due rows of each target, in one transaction."""
        ...

    async def send(self, job: JobT) -> SendOutcome: ...

    def settle(self, finished: Sequence[Finished[JobT]]) -> None:
        """Record the outcomes of tries, in one transaction."""
        ...

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


# A recipient's messages are claimed ahead, up to this many times its concurrency, so that a
# send ending starts the next at once rather than after a trip to the database; claims are made
# when what a recipient holds falls to its concurrency (a batch, not a row at a time).
PREFETCH = 2
# While the verifier works through a burst of payments, a channel claims at most this often.
DEFER_WHILE_BUSY_MS = 2_000


def lease_ms(timeout_s: float, margin_s: float) -> int:
    """How long claimed messages stay this worker's: a claimed message waits for at most one
    try of those ahead of it (PREFETCH = 2), then is tried itself; and a margin."""
    return round((PREFETCH * timeout_s + margin_s) * 1000)


class Dispatcher(Generic[JobT]):
    """Runs a channel. Each round records the tries that ended and claims more for recipients
    running low (a transaction each, however many messages); claimed messages wait in their
    recipient's queue and are sent as its slots free. A round follows a try ending, new events
    relayed, or the poll interval."""

    def __init__(
        self,
        channel: Channel[JobT],
        *,
        clock: Clock,
        concurrency: int,
        poll_interval_s: float,
        shutdown_grace_s: float,
        verifier_busy: Callable[[], bool] = lambda: False,
    ) -> None:
        self.channel = channel
        self._clock = clock
        self._verifier_busy = verifier_busy
        self._last_claim_ms = 0
        self._concurrency = concurrency
        self._poll_interval_s = poll_interval_s
        self._shutdown_grace_s = shutdown_grace_s
        self._wake = asyncio.Event()
        self._in_flight: dict[asyncio.Task[None], JobT] = {}
        self._sending: Counter[Hashable] = Counter()
        self._queued: dict[Hashable, deque[JobT]] = defaultdict(deque)
        self._finished: list[Finished[JobT]] = []
        self._paused_until_ms = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"khqrpay-{channel.name}")

    def wake(self) -> None:
        """Look for due messages now (new events were relayed) rather than at the next poll."""
        self._wake.set()

    async def _db(self, work: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set; then wait up to the grace for sends in flight."""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.round()
                except Exception:
                    # The database restarting must not end the channel: try at the next poll.
                    _log.exception("outbound step failed", channel=self.channel.name)
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
        """One round, every message it claimed sent and recorded (`worker --once`, tests)."""
        await self.round()
        while self._in_flight:
            await asyncio.wait(list(self._in_flight))
        await self._record_finished()

    def _held(self, target: Hashable) -> int:
        return self._sending[target] + len(self._queued[target])

    async def round(self) -> int:
        """Record the tries that ended; claim for recipients running low and start what their
        free slots allow; how many were claimed."""
        await self._record_finished()
        now_ms = self._clock.now_ms()
        if now_ms < self._paused_until_ms:
            # The pause may outlast their leases: hand back what waits, to claim again later.
            waiting = [job for queue in self._queued.values() for job in queue]
            self._queued.clear()
            if waiting:
                await self._db(partial(self.channel.release, waiting))
            return 0
        if self._verifier_busy() and now_ms - self._last_claim_ms < DEFER_WHILE_BUSY_MS:
            # Payments first: while the verifier records a burst of payments, claim at most once
            # a while (the messages already claimed go on being sent).
            return 0
        self._last_claim_ms = now_ms
        channel = self.channel
        await self._db(partial(channel.prepare, now_ms))
        room = PREFETCH * self._concurrency - sum(map(self._held, list(self._queued)))
        capacity: dict[Hashable, int] = {}
        for target in await self._db(partial(channel.due_targets, now_ms)):
            held = self._held(target)
            if held <= channel.per_target and room > 0:
                capacity[target] = min(room, PREFETCH * channel.per_target - held)
                room -= capacity[target]
        jobs = await self._db(partial(channel.claim, capacity, now_ms=now_ms)) if capacity else []
        for job in jobs:
            self._queued[job.target].append(job)
        self._start_sends()
        return len(jobs)

    def _start_sends(self) -> None:
        """Start queued messages while their recipient and the channel have free slots."""
        if self._clock.now_ms() < self._paused_until_ms:
            return
        for target, queue in list(self._queued.items()):
            while (
                queue
                and self._sending[target] < self.channel.per_target
                and len(self._in_flight) < self._concurrency
            ):
                job = queue.popleft()
                task = asyncio.create_task(self._send(job), name=f"{self.channel.name}-{job.id}")
                self._in_flight[task] = job
                self._sending[target] += 1
                task.add_done_callback(self._sent)
            if not queue and not self._sending[target]:
                del self._queued[target]

    def _sent(self, task: asyncio.Task[None]) -> None:
        job = self._in_flight.pop(task)
        self._sending[job.target] -= 1
        if self._sending[job.target] <= 0:
            del self._sending[job.target]
        self._start_sends()
        self._wake.set()

    async def _send(self, job: JobT) -> None:
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
        self._finished.append(Finished(job, outcome, now_ms))

    async def _record_finished(self) -> None:
        finished, self._finished = self._finished, []
        if not finished:
            return
        try:
            await self._db(partial(self.channel.settle, finished))
        except Exception:
            # Their leases end and they are sent again: receivers deduplicate on the id.
            _log.exception("outbound outcomes not recorded", channel=self.channel.name)

    async def close(self) -> None:
        """Give sends in flight the grace, record what ended, cancel the rest and hand their
        rows (and those never started) back."""
        abandoned = [job for queue in self._queued.values() for job in queue]
        self._queued.clear()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=self._shutdown_grace_s)
        abandoned += [job for task, job in self._in_flight.items() if not task.done()]
        for task in list(self._in_flight):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._record_finished()
        if abandoned:
            with contextlib.suppress(Exception):
                await self._db(partial(self.channel.release, abandoned))
        # Work already handed to the thread finishes first.
        await asyncio.to_thread(self._executor.shutdown)


def jitter_source(seed: int | None = None) -> Callable[[], float]:
    """Where retry jitter comes from: [0, 1) floats, seeded in tests."""
    return random.Random(seed).random  # noqa: S311 - spreading retries, not cryptography


@dataclass(kw_only=True)
class QueueChannel(ABC, Generic[JobT]):
    """What channels over a `DeliveryQueue` share: finding due recipients, claiming rows under
    this worker's lease, recording outcomes (delivered, again later, or dead), handing rows
    back. A subclass names its queue, loads its jobs and sends them."""

    database: Database
    schedule: RetrySchedule
    owner: str
    lease_ms: int
    jitter: Callable[[], float]
    name: str
    per_target: int
    pause_all_on_retry_after: bool

    @abstractmethod
    def prepare(self, now_ms: int) -> None: ...

    @abstractmethod
    async def send(self, job: JobT) -> SendOutcome: ...

    @abstractmethod
    def queue(self, uow: UnitOfWork) -> DeliveryQueue: ...

    @abstractmethod
    def load(self, uow: UnitOfWork, row_ids: Sequence[int]) -> list[JobT]:
        """The claimed rows as jobs, in id order."""

    def ready(self, jobs: list[JobT]) -> list[JobT]:
        """Finish jobs once claimed, outside the claim's transaction (nothing by default)."""
        return jobs

    def log(self, uow: UnitOfWork, finished: Sequence[Finished[JobT]]) -> None:
        """Keep a record of the tries beside their outcomes (nothing by default)."""

    @abstractmethod
    def attempts_so_far(self, job: JobT) -> tuple[int, int]:
        """The job's tries before this one and when its current round of tries began."""

    def due_targets(self, now_ms: int) -> list[Hashable]:
        with self.database.read() as uow:
            return self.queue(uow).due_targets(now_ms)

    def claim(self, capacity: Mapping[Hashable, int], *, now_ms: int) -> list[JobT]:
        with self.database.write() as uow:
            queue = self.queue(uow)
            ids = [
                row_id
                for target, limit in capacity.items()
                for row_id in queue.claim(
                    target,
                    now_ms=now_ms,
                    limit=limit,
                    owner=self.owner,
                    lease_until_ms=now_ms + self.lease_ms,
                )
            ]
            jobs = self.load(uow, ids)
        return self.ready(jobs)

    def settle(self, finished: Sequence[Finished[JobT]]) -> None:
        """Write the tries' outcomes (delivered, again later, or dead) and their log."""
        tries = []
        for done in finished:
            outcome = done.outcome
            if outcome.delivered:
                tries.append(Try(done.job.id, done.at_ms))
                continue
            attempts, started_ms = self.attempts_so_far(done.job)
            again_ms = next_attempt_ms(
                self.schedule,
                outcome,
                attempts_before=attempts,
                started_ms=started_ms,
                now_ms=done.at_ms,
                jitter=self.jitter(),
            )
            tries.append(Try(done.job.id, done.at_ms, outcome.error or "failed", again_ms))
        with self.database.write() as uow:
            self.log(uow, finished)
            self.queue(uow).record_tries(tries, owner=self.owner)

    def release(self, jobs: Sequence[JobT]) -> None:
        with self.database.write() as uow:
            self.queue(uow).release([job.id for job in jobs], owner=self.owner)
