"""The dispatcher with an in-memory channel: bounded concurrency in all and per recipient, a slow
recipient holding only its own slots, outcomes recorded in batches, a pause for flood control,
and a shutdown that hands back what it did not send."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from khqrpay.clock import FakeClock
from khqrpay.outbound.port import SendOutcome
from khqrpay.services.dispatch import DEFER_WHILE_BUSY_MS, PREFETCH, Dispatcher, Finished


@dataclass(frozen=True)
class FakeJob:
    id: int
    target: str


@dataclass
class FakeChannel:
    """Rows per recipient in memory; `send` waits on the recipient's gate."""

    rows: dict[str, list[int]]
    per_target: int = 2
    name: str = "fake"
    pause_all_on_retry_after: bool = True
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    answers: dict[str, SendOutcome] = field(default_factory=dict)
    sending: Counter[str] = field(default_factory=Counter)
    most_sending: Counter[str] = field(default_factory=Counter)
    most_in_all: int = 0
    settled: list[list[int]] = field(default_factory=list)
    released: list[int] = field(default_factory=list)
    claims: int = 0

    def prepare(self, now_ms: int) -> None:
        pass

    def due_targets(self, now_ms: int) -> list[Hashable]:
        return [target for target, ids in self.rows.items() if ids]

    def claim(self, capacity: Mapping[Hashable, int], *, now_ms: int) -> list[FakeJob]:
        self.claims += 1
        jobs = []
        for target, limit in capacity.items():
            ids = self.rows[str(target)]
            taken, self.rows[str(target)] = ids[:limit], ids[limit:]
            jobs += [FakeJob(row_id, str(target)) for row_id in taken]
        return jobs

    async def send(self, job: FakeJob) -> SendOutcome:
        self.sending[job.target] += 1
        self.most_sending[job.target] = max(self.most_sending[job.target], self.sending[job.target])
        self.most_in_all = max(self.most_in_all, sum(self.sending.values()))
        try:
            gate = self.gates.get(job.target)
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(0)
            return self.answers.get(job.target, SendOutcome(delivered=True, duration_ms=1))
        finally:
            self.sending[job.target] -= 1

    def settle(self, finished: Sequence[Finished[FakeJob]]) -> None:
        self.settled.append([done.job.id for done in finished])

    def release(self, jobs: Sequence[FakeJob]) -> None:
        self.released += [job.id for job in jobs]


def _dispatcher(
    channel: FakeChannel, clock: FakeClock, concurrency: int = 3
) -> Dispatcher[FakeJob]:
    return Dispatcher(
        channel,
        clock=clock,
        concurrency=concurrency,
        poll_interval_s=0.01,
        shutdown_grace_s=0.05,
    )


async def _until(condition: object) -> None:
    for _ in range(500):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.005)
    raise AssertionError("timed out")


async def test_sends_are_bounded_in_all_and_per_recipient() -> None:
    channel = FakeChannel(rows={"a": list(range(1, 21)), "b": list(range(21, 41))}, per_target=2)
    dispatcher = _dispatcher(channel, FakeClock(), concurrency=3)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await _until(lambda: sum(len(batch) for batch in channel.settled) == 40)
    stop.set()
    await running
    assert max(channel.most_sending.values()) == 2
    assert channel.most_in_all == 3
    settled = [row_id for batch in channel.settled for row_id in batch]
    assert sorted(settled) == list(range(1, 41))
    # Messages are claimed a batch at a time, not one by one.
    assert channel.claims <= 40 // 2
    assert channel.released == []


async def test_a_stuck_recipient_holds_only_its_own_slots() -> None:
    channel = FakeChannel(rows={"stuck": [1, 2, 3, 4, 5], "fine": list(range(10, 20))})
    channel.gates["stuck"] = asyncio.Event()
    dispatcher = _dispatcher(channel, FakeClock(), concurrency=3)
    stop = asyncio.Event()
    running = asyncio.create_task(dispatcher.run(stop))
    await _until(lambda: sum(len(batch) for batch in channel.settled) == 10)
    assert channel.sending["stuck"] == channel.per_target  # still waiting on its answers
    stop.set()
    await running
    # At shutdown what was sent to it in vain and what waited in its queue is handed back.
    assert sorted(channel.released) == [1, 2, 3, 4]
    assert channel.rows["stuck"] == [5]


async def test_a_request_to_wait_pauses_every_send_and_hands_back_what_waits() -> None:
    clock = FakeClock()
    channel = FakeChannel(rows={"a": [1, 2, 3, 4], "b": [5, 6]}, per_target=1)
    channel.answers["a"] = SendOutcome(delivered=False, duration_ms=1, retry_after_s=30)
    dispatcher = _dispatcher(channel, clock)
    await dispatcher.run_once()
    assert sorted(row for batch in channel.settled for row in batch) == [1, 5]
    await dispatcher.round()  # paused: nothing sent, the messages it held handed back
    assert sorted(channel.released) == [2, 6]
    assert channel.claims == 1
    clock.advance(seconds=30)
    await dispatcher.run_once()
    assert channel.claims == 2
    await dispatcher.close()


async def test_a_round_claims_for_a_recipient_only_when_it_runs_low() -> None:
    channel = FakeChannel(rows={"a": list(range(1, 30))}, per_target=2)
    channel.gates["a"] = asyncio.Event()
    dispatcher = _dispatcher(channel, FakeClock())
    await dispatcher.round()
    assert channel.claims == 1
    assert len(channel.rows["a"]) == 29 - PREFETCH * 2
    await dispatcher.round()  # holds 4 (2 sending, 2 waiting): no new claim
    assert channel.claims == 1
    channel.gates["a"].set()
    await dispatcher.close()


async def test_while_the_verifier_has_a_backlog_claims_are_spaced_out() -> None:
    clock = FakeClock()
    busy = True
    channel = FakeChannel(rows={"a": list(range(1, 30))}, per_target=1)
    dispatcher = Dispatcher(
        channel,
        clock=clock,
        concurrency=3,
        poll_interval_s=0.01,
        shutdown_grace_s=0.05,
        verifier_busy=lambda: busy,
    )
    await dispatcher.run_once()
    assert channel.claims == 1  # it claims once even then: sending never stops altogether
    await dispatcher.run_once()
    assert channel.claims == 1
    clock.advance(ms=DEFER_WHILE_BUSY_MS)
    await dispatcher.run_once()
    assert channel.claims == 2
    busy = False
    await dispatcher.run_once()
    assert channel.claims == 3
    await dispatcher.close()
