"""Scale: one (or more) `khqrpay worker` processes against a large number of pending orders.

For each setup (PostgreSQL with 100,000 and 1,000,000 pending orders, SQLite with 100,000): a
fresh database filled in bulk (COPY on PostgreSQL, executemany on SQLite) with orders created
over the last 30 days, each QR scheduled as if it had been checked on schedule until now (the
steady state: nothing overdue at the start). Then the workers run against a Bakong simulator (a
real HTTP server on loopback, in this process) for `--minutes`, while every few seconds a fresh
order is made and paid 10 s later, as a customer would. Reported: checks per second (from the
check rounds the workers record) against the demand of the schedule, the backlog (QRs due and
how long the oldest has been overdue) at the start and the end, and for the fresh orders the
time from payment to COMPLETED (p50, p95, and how many were not completed at the end).

    .venv/bin/python bench/scale_bench.py [--postgres-sizes 100000,1000000]
        [--sqlite-sizes 100000] [--workers 1,4] [--minutes 2] [--postgres URL]

With several worker counts, each runs in turn on the same filled database.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import sqlalchemy as sa
from pydantic import SecretStr

from burst_bench import (
    DEFAULT_POSTGRES,
    PostgresDatabase,
    Workers,
    _libpq,
    _machine,
    bench_settings,
)
from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest
from khqrpay.orders.schedule import SchedulePolicy
from khqrpay.services.checkout import create_order
from khqrpay.services.products import add_product
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.server import RunningSimulator
from khqrpay.worker.runtime import AGE_BANDS

DAY_MS = 24 * 3600 * 1000
SPREAD_MS = 30 * DAY_MS
# A fresh order every PROBE_EVERY_S, paid PAY_AFTER_S after it was made.
PROBE_EVERY_S = 4.0
PAY_AFTER_S = 10.0
SAMPLE_EVERY_S = 5.0
CHUNK = 20_000
MERCHANT = "shop@devb"

ORDER_COLUMNS = (
    "public_token",
    "status",
    "currency",
    "total_minor",
    "created_ms",
    "window_end_ms",
    "updated_ms",
)
PAYMENT_COLUMNS = (
    "order_id",
    "qr",
    "md5",
    "amount_minor",
    "currency",
    "to_account",
    "created_ms",
    "expires_ms",
    "status",
    "next_check_ms",
    "earliest_check_ms",
    "check_count",
    "last_checked_ms",
    "last_outcome",
)


@dataclass(frozen=True)
class Outcome:
    backend: str
    pending: int
    workers: int
    demand_per_s: float
    checks_per_s: float
    due_start: int
    due_end: int
    overdue_start_s: float
    overdue_end_s: float
    overdue_max_s: float
    fresh_ms: tuple[int, ...]
    fresh_missed: int


def _rows(
    count: int, policy: SchedulePolicy, settings: Settings, now_ms: int
) -> Iterator[tuple[tuple[object, ...], tuple[object, ...], float]]:
    """(order row, payment row, checks a second it asks for) for order number 1..count, made
    evenly over the last 30 days and checked on schedule until now."""
    window_ms = round(settings.payment_window_s * 1000)
    for number in range(1, count + 1):
        created_ms = now_ms - SPREAD_MS + (SPREAD_MS * number) // (count + 1)
        window_end_ms = created_ms + window_ms
        next_ms = policy.next_check_ms(
            created_ms=created_ms, now_ms=now_ms, hot_until_ms=None, window_end_ms=window_end_ms
        )
        assert next_ms is not None
        interval_ms = max(1, next_ms - now_ms)
        # Where this QR is in its interval (spread evenly: a steady state).
        checked_ms = now_ms - (interval_ms * ((number * 7919) % 1000)) // 1000
        due_ms = checked_ms + interval_ms
        earliest_ms = policy.earliest_check_ms(
            checked_ms=checked_ms, next_check_ms=due_ms, window_end_ms=window_end_ms
        )
        md5 = hashlib.md5(f"scale-{number}".encode()).hexdigest()
        order = ("scale-" + md5, "PENDING", "USD", 125, created_ms, window_end_ms, created_ms)
        payment = (
            number,
            f"scale-qr-{number}",
            md5,
            125,
            "USD",
            settings.merchant_account,
            created_ms,
            window_end_ms,
            "PENDING",
            due_ms,
            earliest_ms,
            1,
            checked_ms,
            "not_found",
        )
        yield order, payment, 1000 / interval_ms


def _fill(database: Database, settings: Settings, count: int) -> float:
    """`count` pending orders with their QR, in bulk (the orders get ids 1..count: the database
    is fresh); the checks a second the schedule asks for."""
    rows = _rows(count, settings.schedule_policy(), settings, SystemClock().now_ms())
    demand = 0.0
    if database.backend == "postgresql":
        url = database.engine.url.render_as_string(hide_password=False)
        with psycopg.connect(_libpq(url)) as connection, connection.cursor() as cursor:
            payments = []
            with cursor.copy(f"COPY orders ({', '.join(ORDER_COLUMNS)}) FROM STDIN") as copy:
                for order, payment, rate in rows:
                    copy.write_row(order)
                    payments.append(payment)
                    demand += rate
            with cursor.copy(
                f"COPY khqr_payments ({', '.join(PAYMENT_COLUMNS)}) FROM STDIN"
            ) as copy:
                for payment in payments:
                    copy.write_row(payment)
        with psycopg.connect(_libpq(url), autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
        return demand
    orders: list[dict[str, object]] = []
    payments_batch: list[dict[str, object]] = []

    def flush() -> None:
        with database.write() as uow:
            uow.connection.execute(t.orders.insert(), orders)
            uow.connection.execute(t.khqr_payments.insert(), payments_batch)
        orders.clear()
        payments_batch.clear()

    for order, payment, rate in rows:
        orders.append(dict(zip(ORDER_COLUMNS, order, strict=True)))
        payments_batch.append(dict(zip(PAYMENT_COLUMNS, payment, strict=True)))
        demand += rate
        if len(orders) == CHUNK:
            flush()
    if orders:
        flush()
    with database.write() as uow:
        uow.connection.execute(sa.text("ANALYZE"))
    return demand


def _backlog(database: Database, now_ms: int) -> tuple[int, float]:
    """QRs due now, and how long the most overdue has waited (s)."""
    payments = t.khqr_payments.c
    with database.read() as uow:
        due, oldest = uow.connection.execute(
            sa.select(sa.func.count(), sa.func.min(payments.next_check_ms)).where(
                payments.status == "PENDING", payments.next_check_ms <= now_ms
            )
        ).one()
    return int(due), 0.0 if oldest is None else (now_ms - oldest) / 1000


def _checks_since(database: Database, since_ms: int) -> int:
    rounds = t.verification_rounds.c
    with database.read() as uow:
        query = sa.select(sa.func.coalesce(sa.func.sum(rounds.checks), 0)).where(
            rounds.at_ms >= since_ms
        )
        return int(uow.connection.execute(query).scalar_one())


class Prober:
    """Fresh orders made and paid during the run, and when each was completed."""

    def __init__(
        self, database: Database, settings: Settings, simulator: RunningSimulator, phase: int
    ) -> None:
        self._database = database
        self._settings = settings
        self._simulator = simulator
        self._sku = add_product(
            database,
            sku=f"FRESH-{phase}",
            name="Fresh tea",
            price=Money.parse("1.25", Currency.USD),
            stock=100_000,
            now_ms=SystemClock().now_ms(),
        ).sku
        self.paid: dict[int, int] = {}  # order id → paid at (ms)
        self._threads: list[threading.Thread] = []

    def probe(self) -> None:
        created = create_order(
            self._database,
            lines=[LineRequest(self._sku, 1)],
            phone=None,
            settings=self._settings,
            clock=SystemClock(),
        )
        thread = threading.Thread(target=self._pay, args=(created.order.id, created.payment.qr))
        thread.start()
        self._threads.append(thread)

    def _pay(self, order_id: int, qr: str) -> None:
        time.sleep(PAY_AFTER_S)
        response = httpx.post(f"{self._simulator.url}/_sim/pay", json={"qr": qr}, timeout=30)
        response.raise_for_status()
        self.paid[order_id] = SystemClock().now_ms()

    def results(self, *, settle_s: float) -> tuple[list[int], int]:
        """Paid-to-completed of each completed fresh order (ms), and how many were not
        `settle_s` after the last was paid."""
        for thread in self._threads:
            thread.join()
        time.sleep(settle_s)
        orders = t.orders.c
        with self._database.read() as uow:
            completed = dict(
                uow.connection.execute(
                    sa.select(orders.id, orders.completed_ms).where(
                        orders.id.in_(list(self.paid)), orders.completed_ms.is_not(None)
                    )
                ).all()
            )
        latencies = [max(0, completed[i] - paid) for i, paid in self.paid.items() if i in completed]
        return latencies, len(self.paid) - len(completed)


def run_setup(
    backend: str, database_url: str, pending: int, workers: Sequence[int], minutes: float
) -> list[Outcome]:
    """Fill one database, then run each worker count on it in turn (the backlog one leaves is
    the next one's start)."""
    database = Database.from_url(database_url)
    config = SimulatorConfig(
        token=SecretStr("scale-bench-token-0123456789"),
        seed=1,
        known_accounts=frozenset({MERCHANT}),
    )
    try:
        migrate.upgrade(database)
        settings = bench_settings(database_url, MERCHANT)
        started = time.monotonic()
        demand = _fill(database, settings, pending)
        print(
            f"  {backend}/{pending:,} pending: filled in {time.monotonic() - started:.0f} s, "
            f"demand {demand:.0f} checks/s; {_housekeeping_costs(database, settings)}",
            flush=True,
        )
        with run_simulator(config) as simulator:
            return [
                _phase(database, settings, simulator, backend, pending, count, minutes, demand)
                for count in workers
            ]
    finally:
        database.dispose()


def _housekeeping_costs(database: Database, settings: Settings) -> str:
    """What the sweep's query and the pending-by-age gauge cost at this size (best of 3)."""
    now_ms = SystemClock().now_ms()
    grace_ms = round(settings.schedule_final_grace_s * 1000)

    def best_ms(work: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            work()
            times.append((time.perf_counter() - started) * 1000)
        return min(times)

    def sweep_query() -> object:
        with database.read() as uow:
            return uow.orders.unpaid_after_window(now_ms=now_ms, grace_ms=grace_ms, limit=500)

    def gauge() -> object:
        with database.read() as uow:
            return uow.payments.count_pending_by_age(now_ms=now_ms, bands=AGE_BANDS)

    return f"sweep query {best_ms(sweep_query):.1f} ms, gauge {best_ms(gauge):.0f} ms"


def _phase(
    database: Database,
    settings: Settings,
    simulator: RunningSimulator,
    backend: str,
    pending: int,
    workers: int,
    minutes: float,
    demand: float,
) -> Outcome:
    prober = Prober(database, settings, simulator, workers)
    url = database.engine.url.render_as_string(hide_password=False)
    with Workers(workers, url, simulator, settings.merchant_account) as processes:
        time.sleep(5)  # the workers start
        clock = SystemClock()
        start_ms = clock.now_ms()
        due_start, overdue_start = _backlog(database, start_ms)
        overdue_max = overdue_start
        next_probe = next_sample = time.monotonic()
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            processes.check()
            if time.monotonic() >= next_probe:
                prober.probe()
                next_probe += PROBE_EVERY_S
            if time.monotonic() >= next_sample:
                _, overdue = _backlog(database, clock.now_ms())
                overdue_max = max(overdue_max, overdue)
                next_sample += SAMPLE_EVERY_S
            time.sleep(0.2)
        end_ms = clock.now_ms()
        due_end, overdue_end = _backlog(database, end_ms)
        checks = _checks_since(database, start_ms)
        # The last payments get the workers' usual time to be found.
        latencies, missed = prober.results(settle_s=PAY_AFTER_S)
    return Outcome(
        backend,
        pending,
        workers,
        demand,
        checks / ((end_ms - start_ms) / 1000),
        due_start,
        due_end,
        overdue_start,
        overdue_end,
        max(overdue_max, overdue_end),
        tuple(latencies),
        missed,
    )


def _percentile(values: tuple[int, ...], fraction: float) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] / 1000:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres-sizes", default="100000,1000000")
    parser.add_argument("--sqlite-sizes", default="100000")
    parser.add_argument("--workers", default="1", help="worker counts, run in turn: 1,4")
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--postgres", default=os.environ.get("KHQRPAY_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    postgres_url = args.postgres or DEFAULT_POSTGRES
    print(f"Scale: pending orders over 30 days, {args.minutes} min a run. Machine: {_machine()}")
    sizes = [("SQLite", int(size)) for size in args.sqlite_sizes.split(",") if size] + [
        ("PostgreSQL", int(size)) for size in args.postgres_sizes.split(",") if size
    ]
    workers = [int(count) for count in args.workers.split(",")]
    outcomes: list[Outcome] = []
    for backend, size in sizes:
        if backend == "SQLite":
            with tempfile.TemporaryDirectory() as folder:
                url = f"sqlite:///{Path(folder) / 'scale.sqlite3'}"
                outcomes += run_setup(backend, url, size, workers, args.minutes)
        else:
            with PostgresDatabase(postgres_url) as url:
                outcomes += run_setup(backend, url, size, workers, args.minutes)
    print()
    print(
        "| database | pending | workers | demand (checks/s) | checks/s | due at start → end "
        "| oldest overdue start → end (max) | fresh paid→completed p50 / p95 (s) | fresh "
        "not completed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        print(
            f"| {o.backend} | {o.pending:,} | {o.workers} | {o.demand_per_s:.0f} | "
            f"{o.checks_per_s:.0f} | {o.due_start:,} → {o.due_end:,} | "
            f"{o.overdue_start_s:.0f} s → {o.overdue_end_s:.0f} s ({o.overdue_max_s:.0f} s) | "
            f"{_percentile(o.fresh_ms, 0.5)} / {_percentile(o.fresh_ms, 0.95)} "
            f"(n={len(o.fresh_ms)}, mean {statistics.fmean(o.fresh_ms or (0,)) / 1000:.1f}) | "
            f"{o.fresh_missed} |"
        )


if __name__ == "__main__":
    main()
