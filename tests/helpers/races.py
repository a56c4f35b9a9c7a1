"""Two actions racing on the same order, released together at the order's lock.

Each side runs in its own thread or process, with its own event loop, Bakong client and database
connections. Both sides start together; then each stops at the start line just before its
*decisive* write transaction (the one that locks the order, learned from a serial run of the same
action on an identical order) and both are released at once. On PostgreSQL both transactions then
reach `SELECT ... FOR UPDATE` together; on SQLite, where `BEGIN IMMEDIATE` is the lock, both ask
for the write lock together. A round counts as a race only if each side asked for its decisive
transaction before the other's ended, so a test cannot pass on calls that never overlapped.

The actions are a table (`ACTIONS`): one more action is one more entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from multiprocessing.synchronize import Barrier as ProcessBarrier
from typing import Protocol

import sqlalchemy as sa

from helpers.engine import in_own_loop, new_staff_actions, new_verifier
from khqrpay.bakong import BakongClient
from khqrpay.clock import FakeClock
from khqrpay.db import Database, UnitOfWork
from khqrpay.db import tables as t
from khqrpay.db.repositories import OrderRepository
from khqrpay.orders.model import Order, OrderError, OrderStatus
from khqrpay.services.expiry import expire_order_if_unpaid
from khqrpay.services.manual import ManualActions
from khqrpay.services.staff import cancel_order
from khqrpay.services.verification import Verifier
from khqrpay.settings import Settings

START_LINE_TIMEOUT_S = 20


@dataclass(frozen=True, slots=True)
class RaceOrder:
    """A PENDING order whose newer QR was paid in its window and is still pending at the final
    check time; its first QR had its final check (not paid)."""

    order_id: int
    product_id: int
    quantity: int
    transfer_hash: str


@dataclass(frozen=True, slots=True)
class Arena:
    """What each side needs to act (picklable, for processes)."""

    database_url: str
    settings: Settings
    now_ms: int


@dataclass
class Side:
    """One side's engine: its database, Bakong client and the shared (frozen) time."""

    database: Database
    client: BakongClient
    settings: Settings
    clock: FakeClock

    def verifier(self, worker_id: str) -> Verifier:
        return new_verifier(self.database, self.client, self.settings, self.clock, worker_id)

    def staff(self) -> ManualActions:
        return new_staff_actions(self.database, self.client, self.settings, self.clock)

    async def write(self, work: Callable[[UnitOfWork], object]) -> None:
        def transaction() -> None:
            with self.database.write() as uow:
                work(uow)

        await asyncio.to_thread(transaction)


async def _worker_cycle(side: Side, order: RaceOrder) -> None:
    await side.verifier("race-worker").run_cycle()


async def _verify_instantly(side: Side, order: RaceOrder) -> None:
    await side.staff().verify_instantly(order.order_id, actor="staff:race-verify")


async def _mark_paid_with_hash(side: Side, order: RaceOrder) -> None:
    await side.staff().mark_paid(
        order.order_id,
        reason="customer showed the receipt",
        bakong_hash=order.transfer_hash,
        actor="staff:race-mark-hash",
    )


async def _mark_paid_without_hash(side: Side, order: RaceOrder) -> None:
    await side.staff().mark_paid(
        order.order_id, reason="paid at the counter", bakong_hash=None, actor="staff:race-mark"
    )


async def _expiry(side: Side, order: RaceOrder) -> None:
    """The worker's expiry after the final check of one of the order's QRs."""
    await side.write(
        lambda uow: expire_order_if_unpaid(
            uow, order.order_id, actor="worker:race-expiry", now_ms=side.clock.now_ms()
        )
    )


async def _cancel(side: Side, order: RaceOrder) -> None:
    await asyncio.to_thread(
        cancel_order,
        side.database,
        order.order_id,
        actor="staff:race-cancel",
        reason="the customer asked",
        clock=side.clock,
    )


@dataclass(frozen=True, slots=True)
class RaceAction:
    """An action on one order. `completes`: run alone on a `RaceOrder`, it completes it;
    `finds_the_transfer`: it asks Bakong about the paid QR or the transfer, which must then end
    recorded whoever wins; `closes`: it may end the order without a payment (e.g. a staff cancel),
    a payment found later then goes to review."""

    name: str
    run: Callable[[Side, RaceOrder], Awaitable[None]]
    completes: bool = False
    finds_the_transfer: bool = False
    closes: bool = False


ACTIONS = {
    action.name: action
    for action in (
        RaceAction("worker_cycle", _worker_cycle, completes=True, finds_the_transfer=True),
        RaceAction("verify_instantly", _verify_instantly, completes=True, finds_the_transfer=True),
        RaceAction(
            "mark_paid_with_hash", _mark_paid_with_hash, completes=True, finds_the_transfer=True
        ),
        RaceAction("mark_paid_without_hash", _mark_paid_without_hash, completes=True),
        RaceAction("expiry", _expiry),
        RaceAction("cancel", _cancel, closes=True),
    )
}


# --- the start line --------------------------------------------------------------------------


class StartLine(Protocol):
    def wait(self, timeout: float | None = None) -> int: ...


@dataclass
class _Racer:
    """One side's progress: its write transactions, and when it asked for its decisive one."""

    order_id: int
    decisive_write: int | None
    start_line: StartLine | None
    writes: int = 0
    locking_write: int | None = None
    arrived: bool = False
    requested_ns: int | None = None
    decided_ns: int | None = None


_racer: ContextVar[_Racer | None] = ContextVar("racer", default=None)
_original_write = Database.write
_original_lock = OrderRepository.lock
_original_lock_all = OrderRepository.lock_all


@contextlib.contextmanager
def _racing_write(database: Database) -> Iterator[UnitOfWork]:
    racer = _racer.get()
    if racer is None:
        with _original_write(database) as uow:
            yield uow
        return
    racer.writes += 1
    decisive = racer.writes == racer.decisive_write
    if decisive:
        _arrive(racer)
        racer.requested_ns = time.monotonic_ns()
    try:
        with _original_write(database) as uow:
            yield uow
    finally:
        if decisive:
            racer.decided_ns = time.monotonic_ns()


def _racing_lock(repository: OrderRepository, order_id: int) -> Order:
    _note_lock([order_id])
    return _original_lock(repository, order_id)


def _racing_lock_all(repository: OrderRepository, order_ids: Iterable[int]) -> dict[int, Order]:
    order_ids = list(order_ids)
    _note_lock(order_ids)
    return _original_lock_all(repository, order_ids)


def _note_lock(order_ids: Iterable[int]) -> None:
    racer = _racer.get()
    if racer is not None and racer.order_id in order_ids and racer.locking_write is None:
        racer.locking_write = racer.writes


def _arrive(racer: _Racer) -> None:
    if racer.arrived or racer.start_line is None:
        return
    racer.arrived = True
    # A side whose partner failed early runs on alone: the round then does not count as a race.
    with contextlib.suppress(threading.BrokenBarrierError):
        racer.start_line.wait(START_LINE_TIMEOUT_S)


PATCHES: tuple[tuple[type, str, object], ...] = (
    (Database, "write", _racing_write),
    (OrderRepository, "lock", _racing_lock),
    (OrderRepository, "lock_all", _racing_lock_all),
)


def install_patches() -> None:
    """In a process that only races (pytest's monkeypatch applies `PATCHES` in the test's)."""
    for owner, name, value in PATCHES:
        setattr(owner, name, value)


# --- one side ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SideResult:
    action: str
    # None: done; else "refused: ..." (a clean refusal) or "raised ...: traceback".
    failure: str | None
    # Which of its write transactions locked the order (1 = the first), if one did.
    locking_write: int | None
    # When it asked for its decisive transaction and when that ended; None if it never did.
    requested_ns: int | None
    decided_ns: int | None

    @property
    def refused(self) -> bool:
        return self.failure is not None and self.failure.startswith("refused")

    @property
    def raised(self) -> bool:
        return self.failure is not None and not self.refused

    @property
    def reached_the_order(self) -> bool:
        return self.requested_ns is not None


def run_side(
    arena: Arena,
    action_name: str,
    order: RaceOrder,
    *,
    decisive_write: int | None = None,
    go: StartLine | None = None,
    start_line: StartLine | None = None,
) -> SideResult:
    """Run one action on the order in a fresh event loop; never raises (the result says)."""
    racer = _Racer(order.order_id, decisive_write, start_line)
    token = _racer.set(racer)
    database = Database.from_url(arena.database_url)
    failure = None
    try:
        if go is not None:
            go.wait(START_LINE_TIMEOUT_S)
        _act(arena, database, ACTIONS[action_name], order)
    except OrderError as exc:
        failure = f"refused: {exc}"
    except BaseException:
        failure = f"raised {traceback.format_exc()}"
    finally:
        # A side that never reached its decisive write still lets its partner go.
        _arrive(racer)
        _racer.reset(token)
        database.dispose()
    return SideResult(
        action_name, failure, racer.locking_write, racer.requested_ns, racer.decided_ns
    )


def _act(arena: Arena, database: Database, action: RaceAction, order: RaceOrder) -> None:
    clock = FakeClock(arena.now_ms)
    in_own_loop(
        arena.settings,
        lambda client: action.run(Side(database, client, arena.settings, clock), order),
    )


# In a racing process: its two barriers, shared with the other process of the pool.
_process_lines: tuple[ProcessBarrier, ProcessBarrier] | None = None


def start_racing_process(go: ProcessBarrier, start_line: ProcessBarrier) -> None:
    """Pool initializer of a racing process."""
    global _process_lines  # noqa: PLW0603 - one pair of barriers per process, set once
    install_patches()
    _process_lines = (go, start_line)


def run_side_in_process(
    arena: Arena, action_name: str, order: RaceOrder, decisive_write: int | None
) -> SideResult:
    assert _process_lines is not None
    go, start_line = _process_lines
    return run_side(
        arena, action_name, order, decisive_write=decisive_write, go=go, start_line=start_line
    )


def process_lines() -> tuple[ProcessBarrier, ProcessBarrier]:
    context = multiprocessing.get_context("spawn")
    return context.Barrier(2), context.Barrier(2)


def meet_the_other_process() -> None:
    """Returns once both processes of the pool run (a warm-up task, one per process)."""
    assert _process_lines is not None
    _process_lines[0].wait(START_LINE_TIMEOUT_S)


def overlapped(first: SideResult, second: SideResult) -> bool:
    """Each side asked for its decisive transaction before the other's ended."""
    if (
        first.requested_ns is None
        or first.decided_ns is None
        or second.requested_ns is None
        or second.decided_ns is None
    ):
        return False
    return first.requested_ns < second.decided_ns and second.requested_ns < first.decided_ns


# --- what an order ends up as ----------------------------------------------------------------


@dataclass(frozen=True)
class OrderOutcome:
    """Everything the actions changed on one order, without ids or times, so that orders raced
    and ordered serially compare; `refused` names the actions that were refused."""

    status: str
    refund_flag: bool
    paid_manually_without_hash: bool
    stock_taken: int
    audit: tuple[tuple[str, str, str | None], ...]
    evidence: tuple[tuple[str, bool], ...]
    qr_statuses: tuple[str, ...]
    topics: tuple[str, ...]
    refused: frozenset[str] = field(default_factory=frozenset)

    @property
    def completions(self) -> int:
        return sum(1 for _actor, action, _to in self.audit if action == "completed")


def outcome_of(
    database: Database, order: RaceOrder, stock_before: int, results: tuple[SideResult, ...]
) -> OrderOutcome:
    with database.read() as uow:
        row = uow.orders.get(order.order_id)
        product = uow.products.get(order.product_id)
        audit = uow.audit.for_order(order.order_id)
        evidence = uow.evidence.for_order(order.order_id)
        payments = uow.payments.for_order(order.order_id)
        topics = uow.connection.execute(
            sa.select(t.outbox.c.topic)
            .where(t.outbox.c.order_id == order.order_id)
            .order_by(t.outbox.c.id)
        ).scalars()
        topic_list = tuple(topics)
    assert product is not None
    return OrderOutcome(
        status=row.status.value,
        refund_flag=row.refund_flag,
        paid_manually_without_hash=row.paid_manually_without_hash,
        stock_taken=stock_before - product.stock,
        audit=tuple(
            (entry.actor, entry.action, None if entry.to_status is None else str(entry.to_status))
            for entry in audit
        ),
        evidence=tuple((e.source.value, e.payment_id is not None) for e in evidence),
        qr_statuses=tuple(payment.status.value for payment in payments),
        topics=topic_list,
        refused=frozenset(result.action for result in results if result.refused),
    )


def leases_left(database: Database, order: RaceOrder) -> int:
    with database.read() as uow:
        return sum(1 for p in uow.payments.for_order(order.order_id) if p.lease_owner is not None)


def check_invariants(
    names: tuple[str, str], outcome: OrderOutcome, results: tuple[SideResult, ...], quantity: int
) -> None:
    """What must hold whoever wins: nothing raised, completed at most once and then with its
    stock taken exactly once, the transfer recorded once if a side found it (money is never
    lost); a paid order that nobody closes ends COMPLETED."""
    raised = [result.failure for result in results if result.raised]
    assert raised == [], "\n".join(str(failure) for failure in raised)
    completions = Counter(action for _actor, action, _to in outcome.audit)["completed"]
    assert completions <= 1, outcome
    assert outcome.stock_taken == quantity * completions, outcome
    assert (outcome.status == OrderStatus.COMPLETED.value) == (completions == 1), outcome
    actions = [ACTIONS[name] for name in names]
    found = any(action.finds_the_transfer for action in actions)
    assert len(outcome.evidence) == (1 if found else 0), outcome
    if any(a.completes for a in actions) and not any(a.closes for a in actions):
        assert outcome.status == OrderStatus.COMPLETED.value, outcome
    if not any(a.completes for a in actions):
        assert completions == 0, outcome
