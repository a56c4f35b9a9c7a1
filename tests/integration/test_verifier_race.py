"""Race on PostgreSQL: 8 workers plus 50 concurrent Verify Instantly and Mark as Paid calls on the
same 500 paid orders → each order completed once, stock exact, one completion record each, no
deadlock. Threads, each with its own event loop, Bakong client and database connections."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from helpers.engine import in_own_loop, new_staff_actions, new_verifier
from khqrpay.bakong import BakongClient
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.model import OrderStatus
from khqrpay.services.manual import ActionRefused

if TYPE_CHECKING:
    from conftest import Engine, Shop

ORDERS = 500
WORKERS = 8
STAFF_CALLS = 50
STOCK = 650
DEADLINE_S = 60


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_workers_and_staff_racing_complete_each_order_once(
    engine: Engine, shop: Shop, database_url: str
) -> None:
    product = shop.product(price="1.00", stock=STOCK)
    orders = [shop.order((product, 1)) for _ in range(ORDERS)]
    hashes = {}
    for created in orders:
        hashes[created.order.id] = (await engine.pay(created.payment.qr))["hash"]
    engine.clock.advance(seconds=10)
    # Leases outlive the idle loops advancing the shared FakeClock (a second per idle cycle).
    settings = engine.settings.model_copy(
        update={"bakong_timeout_s": 10.0, "worker_batch_size": 100, "worker_lease_s": 86_400.0}
    )
    # One engine for every thread, with a connection for each at once.
    database = Database.from_url(database_url, pool_size=WORKERS + STAFF_CALLS, max_overflow=0)
    clock = engine.clock
    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS + STAFF_CALLS)

    def status(order_id: int) -> str:
        with database.read() as uow:
            query = sa.select(t.orders.c.status).where(t.orders.c.id == order_id)
            return str(uow.connection.execute(query).scalar_one())

    def pending() -> int:
        with database.read() as uow:
            query = sa.select(sa.func.count()).where(t.orders.c.status == "PENDING")
            return int(uow.connection.execute(query).scalar_one())

    def worker(number: int) -> Callable[[], None]:
        async def work(client: BakongClient) -> None:
            verifier = new_verifier(database, client, settings, clock, f"w{number}")
            start.wait()
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                report = await verifier.run_cycle()
                if report.claimed == 0:
                    if await asyncio.to_thread(pending) == 0:
                        return
                    # Leases held by others, or a back-off after an error: let time pass.
                    clock.advance(seconds=1)
                    await asyncio.sleep(0.01)

        return partial(in_own_loop, settings, work)

    rng = random.Random(4)
    targets = rng.sample(orders, STAFF_CALLS)

    def staff(number: int) -> Callable[[], None]:
        created = targets[number]

        async def work(client: BakongClient) -> None:
            actions = new_staff_actions(database, client, settings, clock)
            start.wait()
            actor = f"staff:s{number}"
            if number % 3 == 0:
                await actions.verify_instantly(created.order.id, actor=actor)
            else:
                # Some with the hash Bakong confirms, some without (the worker attaches it).
                given = hashes[created.order.id] if number % 3 == 1 else None
                try:
                    await actions.mark_paid(
                        created.order.id, reason="race test", bakong_hash=given, actor=actor
                    )
                except ActionRefused:
                    # Without a hash, a worker that completed the order first wins: staff are
                    # told so and nothing changes (the counts below check it).
                    if given is not None or status(created.order.id) != "COMPLETED":
                        raise

        return partial(in_own_loop, settings, work)

    def guarded(run: Callable[[], None]) -> Callable[[], None]:
        def target() -> None:
            try:
                run()
            except BaseException as exc:  # reported by the test thread below
                errors.append(exc)
                start.abort()

        return target

    threads = [
        threading.Thread(target=guarded(make(i)))
        for make, count in ((worker, WORKERS), (staff, STAFF_CALLS))
        for i in range(count)
    ]
    started = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join, DEADLINE_S + 10)
        assert not any(thread.is_alive() for thread in threads), "a thread is stuck (deadlock?)"
        assert errors == []
        elapsed = time.monotonic() - started

        with database.read() as uow:
            statuses = uow.connection.execute(
                sa.select(t.orders.c.status, sa.func.count()).group_by(t.orders.c.status)
            ).all()
            completions = uow.connection.execute(
                sa.select(t.audit_log.c.order_id, sa.func.count())
                .where(t.audit_log.c.action == "completed")
                .group_by(t.audit_log.c.order_id)
            ).all()
            evidence = uow.connection.execute(
                sa.select(t.payment_evidence.c.order_id, sa.func.count()).group_by(
                    t.payment_evidence.c.order_id
                )
            ).all()
    finally:
        database.dispose()
    assert dict(statuses) == {OrderStatus.COMPLETED.value: ORDERS}
    assert engine.stock(product.id) == STOCK - ORDERS
    assert len(completions) == ORDERS
    assert {count for _, count in completions} == {1}
    assert len(evidence) == ORDERS
    assert {count for _, count in evidence} == {1}
    assert elapsed < DEADLINE_S
