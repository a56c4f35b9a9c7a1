"""Workers competing for the same QRs, on SQLite and PostgreSQL, each worker a thread with its own
event loop, Bakong client and connections: claims made at the same moment never share a QR;
with leases shorter than Bakong's answers, workers do take over each other's QRs, and every order
is still completed once; a worker whose lease ran out leaves the QR to the one that took it over.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa

from helpers.engine import in_own_loop, new_verifier
from khqrpay.bakong import BakongClient, BakongError, CheckResult
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.db.repositories import PaymentRepository
from khqrpay.orders.model import AttemptOutcome, KhqrPayment, OrderStatus
from khqrpay.services.checkout import CreatedOrder
from khqrpay.services.verification import CycleReport
from khqrpay.settings import Settings
from khqrpay.simulator.server import RunningSimulator

if TYPE_CHECKING:
    from conftest import Shop

DAY_S = 86_400.0


def _orders(
    shop: Shop, simulator: RunningSimulator, *, paid: int, unpaid: int
) -> tuple[int, list[CreatedOrder]]:
    """One product; `paid` orders whose QR the customer paid, then `unpaid` ones."""
    product = shop.product(price="1.00", stock=paid + unpaid)
    orders = [shop.order((product, 1)) for _ in range(paid + unpaid)]
    with httpx.Client(base_url=simulator.url) as http:
        for created in orders[:paid]:
            assert http.post("/_sim/pay", json={"qr": created.payment.qr}).status_code == 201
    return product.id, orders


def _in_threads(jobs: list[Callable[[], None]]) -> None:
    with ThreadPoolExecutor(len(jobs)) as pool:
        for done in [pool.submit(job) for job in jobs]:
            done.result(timeout=120)


def _checks_by_payment(database: Database) -> Counter[int]:
    """How many times each QR was checked, whatever the answer."""
    with database.read() as uow:
        totals = t.verification_attempt_totals.c
        rows = uow.connection.execute(
            sa.select(totals.payment_id, sa.func.sum(totals.count)).group_by(totals.payment_id)
        ).all()
    return Counter({payment_id: int(count) for payment_id, count in rows})


def _completions(database: Database) -> Counter[int]:
    with database.read() as uow:
        audit = t.audit_log.c
        rows = uow.connection.execute(
            sa.select(audit.order_id).where(audit.action == "completed")
        ).scalars()
        return Counter(rows)


def _statuses(database: Database) -> Counter[str]:
    with database.read() as uow:
        return Counter(uow.connection.execute(sa.select(t.orders.c.status)).scalars())


WORKERS = 6
BATCH = 8


def test_workers_claiming_at_the_same_moment_never_check_the_same_qr(
    database: Database,
    shop: Shop,
    clock: FakeClock,
    simulator: RunningSimulator,
    simulator_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    product_id, orders = _orders(shop, simulator, paid=WORKERS * BATCH // 2, unpaid=0)
    orders += [shop.order((shop.product(), 1)) for _ in range(WORKERS * BATCH // 2)]
    clock.advance(seconds=10)
    # Day-long leases: a QR is checked twice only if two workers claimed it at the same moment.
    settings = simulator_settings.model_copy(
        update={"worker_batch_size": BATCH, "worker_lease_s": DAY_S}
    )
    start = threading.Barrier(WORKERS)
    if database.backend == "postgresql":
        # Every claim's transaction open before any looks for due QRs (on SQLite each claim's
        # `BEGIN IMMEDIATE` waits for the one before: they are released together instead).
        lock_due = PaymentRepository.lock_due

        def lock_due_together(repository: PaymentRepository, **kwargs: Any) -> list[KhqrPayment]:
            start.wait(30)
            return lock_due(repository, **kwargs)

        monkeypatch.setattr(PaymentRepository, "lock_due", lock_due_together)
    reports: list[CycleReport] = []

    def worker(number: int) -> Callable[[], None]:
        async def cycle(client: BakongClient) -> None:
            verifier = new_verifier(database, client, settings, clock, f"w{number}")
            if database.backend == "sqlite":
                await asyncio.to_thread(start.wait, 30)
            reports.append(await verifier.run_cycle())

        return lambda: in_own_loop(settings, cycle)

    _in_threads([worker(number) for number in range(WORKERS)])

    assert sorted(report.claimed for report in reports) == [BATCH] * WORKERS
    checks = _checks_by_payment(database)
    assert set(checks) == {created.payment.id for created in orders}
    assert set(checks.values()) == {1}, checks
    assert _completions(database) == Counter({o.order.id: 1 for o in orders[: len(orders) // 2]})
    assert _statuses(database) == {"COMPLETED": len(orders) // 2, "PENDING": len(orders) // 2}
    with database.read() as uow:
        product = uow.products.get(product_id)
    assert product is not None
    assert product.stock == 0


PAID_ORDERS = 24
COMPETING_WORKERS = 4
DEADLINE_S = 60


def _holding_answers(hold: Callable[[list[str]], None]) -> type[BakongClient]:
    """A Bakong client that hands over each md5-list answer only once `hold(md5s)` returns."""

    class HeldAnswers(BakongClient):
        async def check_md5_list(self, md5s: Iterable[str]) -> dict[str, CheckResult | BakongError]:
            asked = list(md5s)
            answers = await super().check_md5_list(asked)
            await asyncio.to_thread(hold, asked)
            return answers

    return HeldAnswers


def _leased_to(database: Database, owner: str, md5s: list[str]) -> int:
    with database.read() as uow:
        payments = t.khqr_payments.c
        return int(
            uow.connection.execute(
                sa.select(sa.func.count()).where(
                    payments.md5.in_(md5s), payments.lease_owner == owner
                )
            ).scalar_one()
        )


def test_workers_with_short_leases_take_over_each_others_qrs_and_complete_each_order_once(
    database: Database,
    shop: Shop,
    clock: FakeClock,
    simulator: RunningSimulator,
    simulator_settings: Settings,
) -> None:
    """Leases of one fake second, and every idle worker moves the shared clock on by a second:
    leases run out while their worker still waits for Bakong, and others claim the QRs. The
    first worker's first answer is held until the others have taken over all its QRs (so the
    test does not depend on the machine's speed); the others compete as they come."""
    product_id, orders = _orders(shop, simulator, paid=PAID_ORDERS, unpaid=0)
    clock.advance(seconds=10)
    settings = simulator_settings.model_copy(
        update={"worker_batch_size": 4, "worker_lease_s": 1.0, "bakong_timeout_s": 10.0}
    )
    advancing = threading.Lock()
    first_asked = threading.Event()

    def until_taken_over(md5s: list[str]) -> None:
        if first_asked.is_set():
            return
        first_asked.set()
        deadline = time.monotonic() + DEADLINE_S
        while _leased_to(database, "w0", md5s) and time.monotonic() < deadline:
            time.sleep(0.01)

    def pending() -> int:
        return _statuses(database)["PENDING"]

    def worker(number: int) -> Callable[[], None]:
        async def cycles(client: BakongClient) -> None:
            verifier = new_verifier(database, client, settings, clock, f"w{number}")
            if number > 0:
                await asyncio.to_thread(first_asked.wait, DEADLINE_S)
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                if (await verifier.run_cycle()).claimed == 0:
                    if await asyncio.to_thread(pending) == 0:
                        return
                    with advancing:
                        clock.advance(seconds=1)
                    await asyncio.sleep(0.02)
            raise AssertionError("orders still pending at the deadline")

        client_class = _holding_answers(until_taken_over) if number == 0 else BakongClient
        return lambda: in_own_loop(settings, cycles, client_class)

    _in_threads([worker(number) for number in range(COMPETING_WORKERS)])

    paid_checks = sum(_checks_by_payment(database).values())
    assert paid_checks >= PAID_ORDERS + 4, "no worker took over the first worker's QRs"
    assert _completions(database) == Counter({o.order.id: 1 for o in orders})
    assert _statuses(database) == {OrderStatus.COMPLETED.value: PAID_ORDERS}
    with database.read() as uow:
        product = uow.products.get(product_id)
        evidence = uow.connection.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(t.payment_evidence.c.order_id)))
        ).one()
        leased = uow.connection.execute(
            sa.select(sa.func.count()).where(t.khqr_payments.c.lease_owner.is_not(None))
        ).scalar_one()
    assert product is not None
    assert product.stock == 0
    assert tuple(evidence) == (PAID_ORDERS, PAID_ORDERS)
    assert leased == 0


def test_a_worker_whose_lease_ran_out_leaves_the_qr_to_the_worker_that_took_it_over(
    database: Database,
    shop: Shop,
    clock: FakeClock,
    simulator_settings: Settings,
) -> None:
    created = shop.order((shop.product(), 1))  # never paid
    clock.advance(seconds=10)
    settings = simulator_settings.model_copy(update={"worker_lease_s": 1.0})
    claimed, taken_over, first_done = threading.Event(), threading.Event(), threading.Event()

    def worker(worker_id: str, claims: Callable[[], None], release: threading.Event) -> None:
        async def cycle(client: BakongClient) -> None:
            verifier = new_verifier(database, client, settings, clock, worker_id)
            checking = asyncio.ensure_future(verifier.run_cycle())
            while _lease_owner(database, created.payment.id) != worker_id:
                await asyncio.sleep(0.005)
            claims()
            assert (await checking).claimed == 1

        in_own_loop(settings, cycle, _holding_answers(lambda _md5s: release.wait(30)))

    def first() -> None:
        # a claims the QR; its answer comes only after b has taken the QR over.
        worker("a", claimed.set, taken_over)
        first_done.set()

    def second() -> None:
        claimed.wait(30)
        clock.advance(seconds=2)  # a's lease has run out
        # b claims it; b's answer comes only after a has applied its own.
        worker("b", taken_over.set, first_done)

    _in_threads([first, second])

    with database.read() as uow:
        payment = uow.payments.get(created.payment.id)
        totals = uow.attempts.totals(created.payment.id)
    assert payment is not None
    assert totals == {AttemptOutcome.NOT_FOUND: 2}  # both checks happened and are counted
    # Only b's check counts and schedules the next one; b released its lease.
    assert (payment.check_count, payment.lease_owner) == (1, None)


def _lease_owner(database: Database, payment_id: int) -> str | None:
    with database.read() as uow:
        payment = uow.payments.get(payment_id)
    assert payment is not None
    return payment.lease_owner
