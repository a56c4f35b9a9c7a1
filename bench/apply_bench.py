"""Applying paid answers in-process: N paid orders on PostgreSQL, then verifier cycles one after
another in this process (no worker start-up, no polling) until none is left; the time per
payment. Run it with `PYTHONPATH=<other tree>/src` to time another version of the code.

    .venv/bin/python bench/apply_bench.py [--orders 1000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from pydantic import SecretStr

from burst_bench import (
    DEFAULT_POSTGRES,
    PostgresDatabase,
    _create_orders,
    _machine,
    _pay_all,
    bench_settings,
)
from khqrpay.bakong import BakongClient
from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.logging import configure_logging
from khqrpay.services.verification import Verifier
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator

MERCHANT = "shop@devb"


async def _cycles(database: Database, settings: Settings) -> tuple[int, float]:
    """Verifier cycles until nothing is claimed: payments applied, seconds taken."""
    async with BakongClient(settings=settings, clock=SystemClock()) as client:
        verifier = Verifier(
            database=database,
            client=client,
            settings=settings,
            clock=SystemClock(),
            worker_id="apply-bench",
        )
        started, applied = time.perf_counter(), 0
        while (report := await verifier.run_cycle()).claimed:
            applied += len(report.records)
        return applied, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--postgres", default=os.environ.get("KHQRPAY_BENCH_POSTGRES_URL"))
    args = parser.parse_args()
    configure_logging("WARNING")  # as a worker would log, less one line per payment
    config = SimulatorConfig(
        token=SecretStr("apply-bench-token-0123456789"),
        seed=1,
        known_accounts=frozenset({MERCHANT}),
    )
    with (
        run_simulator(config) as simulator,
        PostgresDatabase(args.postgres or DEFAULT_POSTGRES) as url,
    ):
        database = Database.from_url(url)
        migrate.upgrade(database)
        settings = bench_settings(
            url,
            MERCHANT,
            schedule_initial_delay_s=0,
            bakong_url=simulator.url,
            bakong_token=SecretStr(simulator.token),
        )
        asyncio.run(_pay_all(simulator, _create_orders(database, settings, args.orders, 1)))
        applied, seconds = asyncio.run(_cycles(database, settings))
        database.dispose()
    print(
        f"{applied} payments applied in {seconds:.1f} s: {seconds / applied * 1000:.2f} ms each. "
        f"Machine: {_machine()}"
    )


if __name__ == "__main__":
    main()
