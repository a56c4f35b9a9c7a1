"""Payment burst: how long `khqrpay worker` processes take to complete N orders paid all at once.

For each setup (SQLite with 1 worker, PostgreSQL with 1 and with 4 workers): a fresh database, N
orders created through checkout and all paid in a Bakong simulator (a real HTTP server on
loopback, in this process), then the worker processes are started and the clock runs until every
order is COMPLETED. Reported: wall time from launching the workers, the time from the first to the
last completion (without process start-up), orders per second, and the payment checks
made (one per order means no double work between workers).

    .venv/bin/python bench/burst_bench.py [--orders 5000] [--postgres URL] [--workers 1,4]
        [--spread 500] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import sqlalchemy as sa
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest
from khqrpay.services.checkout import create_order
from khqrpay.services.products import add_product
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.server import RunningSimulator

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PAY_CONCURRENCY = 32


@dataclass(frozen=True)
class Outcome:
    backend: str
    workers: int
    products: int
    orders: int
    wall_s: float
    first_to_last_s: float
    checks: int

    @property
    def per_second(self) -> float:
        return self.orders / self.wall_s


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDatabase:
    """A uniquely named database on the server, dropped at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"khqrpay_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        with psycopg.connect(_libpq(self.server_url), autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        return make_url(self.server_url).set(database=self.name).render_as_string(False)

    def __exit__(self, *_exc: object) -> None:
        with psycopg.connect(_libpq(self.server_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (self.name,),
            )
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(self.name)))


def bench_settings(database_url: str, merchant_account: str, **changes: Any) -> Settings:
    """Settings for a bench: these and the defaults, nothing from the environment or `.env`."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        merchant_account=merchant_account,
        **changes,
    )


class Workers:
    """`count` `khqrpay worker` processes against the simulator, with only these KHQRPAY_
    settings (none of the caller's); their log in a temporary folder, shown if one exits."""

    def __init__(
        self,
        count: int,
        database_url: str,
        simulator: RunningSimulator,
        merchant_account: str,
    ) -> None:
        self._count = count
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("KHQRPAY_")} | {
            "KHQRPAY_DATABASE_URL": database_url,
            "KHQRPAY_BAKONG_URL": simulator.url,
            "KHQRPAY_BAKONG_TOKEN": simulator.token,
            # The worker checks at start-up that Bakong knows the account it is paid into.
            "KHQRPAY_MERCHANT_ACCOUNT": merchant_account,
            # The engine's throughput, not Bakong's request budget (60 calls a minute would
            # stretch 5,000 payments, 100 md5-list calls, over two minutes).
            "KHQRPAY_BAKONG_MAX_CALLS_PER_MIN": "100000",
        }
        self._processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workers:
        self._folder = tempfile.TemporaryDirectory()
        self._log = open(Path(self._folder.name) / "workers.log", "w+")
        self._processes = [
            subprocess.Popen(
                [sys.executable, "-m", "khqrpay.cli.worker", "--json-logs"],
                env=self._env,
                cwd=self._folder.name,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
            for _ in range(self._count)
        ]
        return self

    def check(self) -> None:
        """Raise if a worker has exited."""
        if any(process.poll() is not None for process in self._processes):
            self._log.seek(0)
            raise RuntimeError(f"a worker exited early: {self._log.read()[-2000:]}")

    def stop(self) -> None:
        for process in self._processes:
            process.terminate()
        for process in self._processes:
            process.wait(30)

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        self._log.close()
        self._folder.cleanup()


def _create_orders(database: Database, settings: Settings, count: int, products: int) -> list[str]:
    """`count` one-line orders spread round-robin over `products` products, made now and due for
    their first check at once; their QRs."""
    clock = SystemClock()
    skus = [
        add_product(
            database,
            sku=f"BURST-{number}",
            name=f"Burst tea {number}",
            price=Money.parse("1.25", Currency.USD),
            stock=count,
            now_ms=clock.now_ms(),
        ).sku
        for number in range(1, products + 1)
    ]
    return [
        create_order(
            database,
            lines=[LineRequest(skus[number % products], 1)],
            phone=None,
            settings=settings,
            clock=clock,
        ).payment.qr
        for number in range(count)
    ]


async def _pay_all(simulator: RunningSimulator, qrs: list[str]) -> None:
    limit = asyncio.Semaphore(PAY_CONCURRENCY)
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as http:

        async def pay(qr: str) -> None:
            async with limit:
                response = await http.post("/_sim/pay", json={"qr": qr})
                response.raise_for_status()

        await asyncio.gather(*(pay(qr) for qr in qrs))


def _completed(database: Database) -> int:
    with database.read() as uow:
        query = sa.select(sa.func.count()).where(t.orders.c.status == "COMPLETED")
        return int(uow.connection.execute(query).scalar_one())


def _checks(database: Database) -> int:
    """Payment checks made (attempts recorded); more than one per order means double work."""
    with database.read() as uow:
        query = sa.select(sa.func.coalesce(sa.func.sum(t.verification_attempt_totals.c.count), 0))
        return int(uow.connection.execute(query).scalar_one())


def run_setup(
    backend: str,
    database_url: str,
    workers: int,
    orders: int,
    simulator: RunningSimulator,
    products: int = 1,
) -> Outcome:
    database = Database.from_url(database_url)
    try:
        migrate.upgrade(database)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database_url,
            schedule_initial_delay_s=0,
            merchant_account="shop@devb",
        )
        started = time.monotonic()
        qrs = _create_orders(database, settings, orders, products)
        created_s = time.monotonic() - started
        asyncio.run(_pay_all(simulator, qrs))
        print(
            f"  {backend}/{workers} workers/{products} products: {orders} orders created in "
            f"{created_s:.1f} s and paid",
            flush=True,
        )
        with Workers(workers, database_url, simulator, settings.merchant_account) as processes:
            launched = time.monotonic()
            first_done: float | None = None
            while (done := _completed(database)) < orders:
                if done and first_done is None:
                    first_done = time.monotonic()
                processes.check()
                time.sleep(0.05)
            finished = time.monotonic()
        return Outcome(
            backend,
            workers,
            products,
            orders,
            finished - launched,
            finished - (first_done or launched),
            _checks(database),
        )
    finally:
        database.dispose()


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--postgres", default=os.environ.get("KHQRPAY_BENCH_POSTGRES_URL"))
    parser.add_argument(
        "--spread",
        type=int,
        default=500,
        help="products the orders are spread over in the extra PostgreSQL rows (0: skip them)",
    )
    parser.add_argument("--workers", default="1,4", help="worker counts on PostgreSQL")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite setup")
    args = parser.parse_args()
    postgres_url = args.postgres or DEFAULT_POSTGRES
    print(f"Payment burst: {args.orders} orders paid at once. Machine: {_machine()}")
    outcomes = []
    config = SimulatorConfig(token=SecretStr("burst-bench-token-0123456789"), seed=1)
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_sqlite:
            with run_simulator(config) as simulator:
                sqlite_url = f"sqlite:///{Path(folder) / 'burst.sqlite3'}"
                outcomes.append(run_setup("SQLite", sqlite_url, 1, args.orders, simulator))
        # One product for every order (a flash sale: one hot stock row), then orders spread over
        # many products, to tell lock contention from CPU.
        spreads = [1] + ([args.spread] if args.spread > 0 else [])
        for products in spreads:
            for workers in map(int, args.workers.split(",")):
                with run_simulator(config) as simulator, PostgresDatabase(postgres_url) as url:
                    outcomes.append(
                        run_setup("PostgreSQL", url, workers, args.orders, simulator, products)
                    )
    print()
    print(
        "| database | workers | products | orders | wall time (s) | first→last (s) | orders/s "
        "| checks |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        print(
            f"| {o.backend} | {o.workers} | {o.products} | {o.orders:,} | {o.wall_s:.1f} | "
            f"{o.first_to_last_s:.1f} | {o.per_second:,.0f} | {o.checks:,} |"
        )


if __name__ == "__main__":
    main()
