"""Every pair of actions on one paid order, released together at the order's lock, in threads on
SQLite and PostgreSQL and in processes on PostgreSQL: the order is completed at most once (exactly
once unless staff cancelled it first), its stock taken once, one completion record, the transfer
recorded whenever a side found it, the loser records nothing new or is refused cleanly, nobody
raises, and the result is one that running the two actions one after the other (either way
round) also gives.

The order (`RaceOrder`): its first QR had its final check (not paid), its second QR was paid in
the window and is still pending: the worker's cycle, Verify Instantly and Mark as Paid (with the
Bakong hash or without) each complete it; the expiry that follows a QR's final check must leave it
alone while a QR is still pending; a staff cancel may win, and the payment found then goes to
review. How the sides are released: `helpers.races`.
"""

from __future__ import annotations

import itertools
import multiprocessing
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx
import pytest
from pydantic import SecretStr

from helpers.races import (
    ACTIONS,
    PATCHES,
    Arena,
    OrderOutcome,
    RaceOrder,
    SideResult,
    check_invariants,
    leases_left,
    meet_the_other_process,
    outcome_of,
    overlapped,
    process_lines,
    run_side,
    run_side_in_process,
    start_racing_process,
)
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.orders.model import AttemptOutcome
from khqrpay.orders.schedule import NextCheck
from khqrpay.services.checkout import new_qr_for_order
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.server import RunningSimulator

if TYPE_CHECKING:
    from multiprocessing.synchronize import Barrier

    from conftest import Shop

PAIRS = list(itertools.combinations_with_replacement(ACTIONS, 2))
# A round whose sides did not overlap (rare) is run again on a fresh order, at most this often.
ROUNDS = 3
QUANTITY = 2
STOCK = 5
PARKED = "parked"
FAR_FUTURE_MS = 2**62
_seeds = itertools.count(1_000)


@pytest.fixture
def database_url(module_database_url: str) -> str:
    # Each test keeps to its own orders (others' pending QRs stay parked).
    return module_database_url


@pytest.fixture
def simulator(clock: FakeClock) -> Iterator[RunningSimulator]:
    # A seed of its own for each test: the transfer hashes must not repeat in the shared database.
    config = SimulatorConfig(token=SecretStr("race-simulator-token-0123"), seed=next(_seeds))
    with run_simulator(config, clock=clock) as running:
        yield running


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A short window, so that the final check comes within the test's fake time.
    return settings.model_copy(update={"payment_window_s": 600.0, "schedule_final_grace_s": 60.0})


@pytest.fixture
def racing(monkeypatch: pytest.MonkeyPatch) -> None:
    for owner, name, value in PATCHES:
        monkeypatch.setattr(owner, name, value)


@pytest.fixture(scope="module")
def racing_processes() -> Iterator[tuple[ProcessPoolExecutor, tuple[Barrier, Barrier]]]:
    """Two processes that race (spawned once for the module)."""
    lines = process_lines()
    with ProcessPoolExecutor(
        2,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_racing_process,
        initargs=lines,
    ) as pool:
        warm_up = [pool.submit(meet_the_other_process) for _ in range(2)]
        for started in warm_up:
            started.result(timeout=60)
        yield pool, lines


def _race_orders(
    shop: Shop, database: Database, clock: FakeClock, simulator: RunningSimulator, count: int
) -> list[RaceOrder]:
    """`count` identical orders at their final check time, each QR that is still pending parked
    (leased far ahead) so that a worker's cycle only sees the order being raced on."""
    created = [shop.order((shop.product(stock=STOCK), QUANTITY)) for _ in range(count)]
    clock.advance(seconds=1)
    second_qrs = [
        new_qr_for_order(database, order_id=c.order.id, settings=shop.settings, clock=clock)
        for c in created
    ]
    with httpx.Client(base_url=simulator.url) as http:
        transfers = [http.post("/_sim/pay", json={"qr": qr.qr}).json() for qr in second_qrs]
    clock.set(created[0].order.window_end_ms + round(shop.settings.schedule_final_grace_s * 1000))
    with database.write() as uow:
        for c in created:
            uow.payments.record_check(
                c.payment.id,
                checked_ms=clock.now_ms(),
                outcome=AttemptOutcome.NOT_FOUND,
                next_check=NextCheck(None, None, 0),
                lease_owner=None,
            )
        uow.payments.lease([qr.id for qr in second_qrs], owner=PARKED, until_ms=FAR_FUTURE_MS)
    return [
        RaceOrder(c.order.id, c.lines[0].product_id, QUANTITY, transfer["transaction"]["hash"])
        for c, transfer in zip(created, transfers, strict=True)
    ]


def _unpark(database: Database, order: RaceOrder) -> None:
    with database.write() as uow:
        ids = [payment.id for payment in uow.payments.for_order(order.order_id)]
        uow.payments.release_leases(ids, owner=PARKED)


def _race_in_threads(
    arena: Arena, names: tuple[str, str], order: RaceOrder, decisive: dict[str, int]
) -> tuple[SideResult, ...]:
    go, start_line = threading.Barrier(2), threading.Barrier(2)
    with ThreadPoolExecutor(2) as pool:
        sides = [
            pool.submit(
                run_side,
                arena,
                name,
                order,
                decisive_write=decisive[name],
                go=go,
                start_line=start_line,
            )
            for name in names
        ]
        return tuple(side.result(timeout=120) for side in sides)


def _race_in_processes(
    processes: tuple[ProcessPoolExecutor, tuple[Barrier, Barrier]],
    arena: Arena,
    names: tuple[str, str],
    order: RaceOrder,
    decisive: dict[str, int],
) -> tuple[SideResult, ...]:
    pool, lines = processes
    for line in lines:
        line.reset()
    sides = [pool.submit(run_side_in_process, arena, name, order, decisive[name]) for name in names]
    return tuple(side.result(timeout=120) for side in sides)


@pytest.mark.usefixtures("racing")
@pytest.mark.parametrize("names", PAIRS, ids="+".join)
@pytest.mark.parametrize(
    ("module_database_url", "mode"),
    [
        ("sqlite", "threads"),
        pytest.param("postgresql", "threads", marks=pytest.mark.postgres),
        # Processes where several share one database: PostgreSQL (on SQLite, BEGIN IMMEDIATE
        # takes the same file lock between processes as between threads).
        pytest.param("postgresql", "processes", marks=pytest.mark.postgres),
    ],
    indirect=["module_database_url"],
)
def test_two_actions_racing_on_one_paid_order_complete_it_exactly_once(
    names: tuple[str, str],
    mode: str,
    request: pytest.FixtureRequest,
    database: Database,
    database_url: str,
    shop: Shop,
    clock: FakeClock,
    simulator: RunningSimulator,
    simulator_settings: Settings,
) -> None:
    serial_orders = sorted({names, names[::-1]})
    orders = iter(_race_orders(shop, database, clock, simulator, len(serial_orders)))
    arena = Arena(database_url, simulator_settings, clock.now_ms())

    def run(order: RaceOrder, results: tuple[SideResult, ...]) -> OrderOutcome:
        outcome = outcome_of(database, order, STOCK, results)
        check_invariants(names, outcome, results, QUANTITY)
        assert leases_left(database, order) == 0, outcome
        return outcome

    # One after the other, each way round: the outcomes a race may have, and which write
    # transaction of each action locks the order (where its side waits for the other).
    possible: set[OrderOutcome] = set()
    decisive: dict[str, int] = {}
    for first, second in serial_orders:
        order = next(orders)
        _unpark(database, order)
        results = (run_side(arena, first, order), run_side(arena, second, order))
        possible.add(run(order, results))
        assert results[0].locking_write is not None, f"{first} never locked the order"
        decisive[first] = results[0].locking_write

    for _round in range(ROUNDS):
        # Made when needed (at a later time: the clock never goes back) so that a race that
        # overlaps at once costs no unused orders.
        (order,) = _race_orders(shop, database, clock, simulator, 1)
        arena = replace(arena, now_ms=clock.now_ms())
        _unpark(database, order)
        if mode == "threads":
            results = _race_in_threads(arena, names, order, decisive)
        else:
            results = _race_in_processes(
                request.getfixturevalue("racing_processes"), arena, names, order, decisive
            )
        outcome = run(order, results)
        assert outcome in possible, f"{outcome} is none of {possible}"
        if overlapped(*results):
            break
        # One side found nothing left to do before the lock (two workers: one claims the QR).
        if not all(result.reached_the_order for result in results):
            break
    else:
        pytest.fail(f"the sides never overlapped in {ROUNDS} rounds: {results}")
