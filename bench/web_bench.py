"""The web app under load: checkout throughput, and how fast 500 open payment pages hear their
orders' completions.

`khqrpay serve` runs as its own process (uvicorn, one process, as a small shop runs it), on a
fresh database; the load comes from this process over loopback HTTP.

1. Checkout (`serve --no-worker`: the web app alone): `--clients` customers at once, each with
   its own browser session (cookies, CSRF token), add one product to the cart and press "KHQR
   Payment", again and again for `--duration` seconds. Reported: checkouts per second and the
   latency of the checkout request (p50, p99, max).
2. Live pages (`serve` with its worker, as on SQLite; a fresh database): `--pages` pending
   orders, each with its payment page's event stream open (`/pay/{token}/events`, SSE). All are
   then paid at once in the Bakong simulator; the worker in the serve process finds and
   completes them, one transaction each. Reported: for each order, the time from its completion
   being committed (seen by a reader polling the database every 5 ms) to its page hearing it,
   over all pages (p50, p99, max); the same from the order's `completed_ms` (the engine stamps a
   whole batch of answers with the moment it started applying them, so this also counts the wait
   for the batch's earlier completions); and whether every page heard.

    .venv/bin/python bench/web_bench.py [--clients 50] [--duration 20] [--pages 500]
                                        [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest
from khqrpay.services.checkout import create_order
from khqrpay.services.event_log import last_event_id
from khqrpay.services.products import add_product
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator

MERCHANT = "bench_shop@devb"
TOKEN = "bench-simulator-token-0123456789"
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
LOTS = "100000/second"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve(database_url: str, simulator_url: str, log: Path, *, worker: bool) -> Iterator[str]:
    """`khqrpay serve` as a process of its own (with its worker or not); its base URL."""
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("KHQRPAY_")}
    env |= {
        "KHQRPAY_DATABASE_URL": database_url,
        "KHQRPAY_BAKONG_URL": simulator_url,
        "KHQRPAY_BAKONG_TOKEN": TOKEN,
        "KHQRPAY_BAKONG_RATE_LIMIT_PER_S": "1000",
        # The web app's figures, not Bakong's request budget (budget_bench.py measures that).
        "KHQRPAY_BAKONG_MAX_CALLS_PER_MIN": "100000",
        "KHQRPAY_MERCHANT_ACCOUNT": MERCHANT,
        "KHQRPAY_WEB_SECRET_KEY": "bench-secret-key-0123456789abcdef",
        "KHQRPAY_WEB_SECURE_COOKIES": "false",
        "KHQRPAY_SCHEDULE_INITIAL_DELAY_S": "0",
        "KHQRPAY_WORKER_POLL_INTERVAL_S": "0.1",
        **{
            f"KHQRPAY_WEB_RATE_{name}": LOTS
            for name in ("CHECKOUT", "PAID_PER_ORDER", "PAID_PER_CLIENT", "LOOKUP", "API_KEY")
        },
    }
    command = Path(sys.executable).with_name("khqrpay")
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                command,
                "serve",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
                "--worker" if worker else "--no-worker",
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"khqrpay serve did not start: see {log}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(15)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


# -- 1. checkout ------------------------------------------------------------------------------


async def _customer(base: str, stop_at: float, latencies: list[float], errors: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        token = CSRF.search((await http.get("/")).text)
        assert token, "no CSRF token on the catalogue"
        form = {"csrftoken": token.group(1)}
        while time.monotonic() < stop_at:
            await http.post("/cart/add", data=form | {"sku": "LATTE"})
            started = time.perf_counter()
            answer = await http.post("/checkout", data=form | {"currency": "USD"})
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 303 or "/pay/" not in answer.headers.get("location", ""):
                errors.append(answer.status_code)


async def checkout_load(base: str, clients: int, duration_s: float) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[int] = []
    started = time.monotonic()
    stop_at = started + duration_s
    await asyncio.gather(*(_customer(base, stop_at, latencies, errors) for _ in range(clients)))
    elapsed = time.monotonic() - started
    return {
        "checkouts": len(latencies),
        "errors": len(errors),
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


# -- 2. live pages ----------------------------------------------------------------------------


async def _page(
    http: httpx.AsyncClient, token: str, after: int, opened: asyncio.Event, heard: dict[str, int]
) -> None:
    """A payment page's event stream, until its order is heard COMPLETED."""
    async with http.stream("GET", f"/pay/{token}/events?after={after}") as response:
        opened.set()
        async for line in response.aiter_lines():
            if line.startswith("data:") and json.loads(line[5:])["status"] == "COMPLETED":
                heard[token] = SystemClock().now_ms()
                return


async def live_pages(
    base: str, database: Database, simulator_url: str, settings: Settings, pages: int
) -> dict[str, float]:
    orders = [
        create_order(
            database,
            lines=[LineRequest("LATTE", 1)],
            phone=None,
            settings=settings,
            clock=SystemClock(),
        )
        for _ in range(pages)
    ]
    after = last_event_id(database)
    heard: dict[str, int] = {}
    ids = {created.order.id: created.order.public_token for created in orders}
    committed: dict[str, int] = {}
    watching = threading.Event()
    watcher = threading.Thread(target=_watch_commits, args=(database, ids, committed, watching))
    limits = httpx.Limits(max_connections=pages + 10, max_keepalive_connections=pages + 10)
    async with httpx.AsyncClient(base_url=base, timeout=None, limits=limits) as http:
        opened = [asyncio.Event() for _ in orders]
        streams = [
            asyncio.create_task(_page(http, created.order.public_token, after, event, heard))
            for created, event in zip(orders, opened, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), 60)
        await asyncio.sleep(1)  # every stream subscribed, not merely connected
        watcher.start()
        paid_at = SystemClock().now_ms()
        async with httpx.AsyncClient(base_url=simulator_url, timeout=30) as bank:
            for created in orders:
                await bank.post("/_sim/pay", json={"qr": created.payment.qr})
        _, pending = await asyncio.wait(streams, timeout=120)
        for stream in pending:
            stream.cancel()
    watching.set()
    watcher.join()
    with database.read() as uow:
        stamped = {
            created.order.public_token: uow.orders.get(created.order.id).completed_ms
            for created in orders
        }
    from_commit = [(heard[t] - committed[t]) / 1000 for t in heard if t in committed]
    from_stamp = [(heard[t] - (stamped[t] or 0)) / 1000 for t in heard if stamped[t]]
    return {
        "pages": pages,
        "heard": len(heard),
        "completed": sum(1 for ms in stamped.values() if ms is not None),
        "p50_ms": percentile(from_commit, 0.50) * 1000,
        "p99_ms": percentile(from_commit, 0.99) * 1000,
        "max_ms": max(from_commit) * 1000,
        "stamp_p50_ms": percentile(from_stamp, 0.50) * 1000,
        "stamp_p99_ms": percentile(from_stamp, 0.99) * 1000,
        "pay_to_all_heard_s": (max(heard.values()) - paid_at) / 1000,
        "completions_span_s": (max(committed.values()) - min(committed.values())) / 1000,
    }


def _watch_commits(
    database: Database, ids: dict[int, str], committed: dict[str, int], stop: threading.Event
) -> None:
    """When each order's completion became visible: polled every 5 ms."""
    query = sa.select(t.orders.c.id).where(
        t.orders.c.id.in_(list(ids)), t.orders.c.status == "COMPLETED"
    )
    while not stop.is_set() and len(committed) < len(ids):
        with database.read() as uow:
            done = uow.connection.execute(query).scalars().all()
        now_ms = SystemClock().now_ms()
        for order_id in done:
            committed.setdefault(ids[order_id], now_ms)
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--database-url", help="default: a new SQLite file")
    options = parser.parse_args()

    print(
        f"{platform.python_version()} on {os.cpu_count()} CPUs, {platform.machine()}; "
        f"database {(options.database_url or 'sqlite').split(':')[0]}",
        flush=True,
    )
    config = SimulatorConfig(token=SecretStr(TOKEN), known_accounts=frozenset({MERCHANT}))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        merchant_account=MERCHANT,
        schedule_initial_delay_s=0,
    )
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "serve.log"
        # Checkout measures the web app alone: a worker checking the new orders would share the
        # process and the database's write lock (on SQLite it does: that is the second part).
        url, database = _shop_database(options.database_url, Path(folder) / "checkout.sqlite3")
        with (
            run_simulator(config) as simulator,
            serve(url, simulator.url, log, worker=False) as base,
        ):
            load = asyncio.run(checkout_load(base, options.clients, options.duration))
        database.dispose()
        print(
            f"checkout, {options.clients} clients for {options.duration:g} s: "
            f"{load['checkouts']:.0f} checkouts ({load['errors']:.0f} errors), "
            f"{load['per_second']:.0f}/s, p50 {load['p50_ms']:.0f} ms, "
            f"p99 {load['p99_ms']:.0f} ms, max {load['max_ms']:.0f} ms",
            flush=True,
        )
        url, database = _shop_database(options.database_url, Path(folder) / "pages.sqlite3")
        with (
            run_simulator(config) as simulator,
            serve(url, simulator.url, log, worker=True) as base,
        ):
            live = asyncio.run(live_pages(base, database, simulator.url, settings, options.pages))
        database.dispose()
        print(
            f"{live['pages']:.0f} pages on SSE: {live['heard']:.0f} heard their order COMPLETED "
            f"({live['completed']:.0f} completed); commit → page: p50 {live['p50_ms']:.0f} ms, "
            f"p99 {live['p99_ms']:.0f} ms, max {live['max_ms']:.0f} ms; completed_ms → page: "
            f"p50 {live['stamp_p50_ms']:.0f} ms, p99 {live['stamp_p99_ms']:.0f} ms; paying all → "
            f"all heard {live['pay_to_all_heard_s']:.1f} s (completions over "
            f"{live['completions_span_s']:.1f} s)",
            flush=True,
        )


def _shop_database(given_url: str | None, path: Path) -> tuple[str, Database]:
    """A migrated database with one product (a new SQLite file unless `given_url`; a given
    database is shared by both parts, so its orders add up)."""
    url = given_url or f"sqlite:///{path}"
    database = Database.from_url(url)
    migrate.upgrade(database)
    with database.read() as uow:
        known = uow.products.by_skus(["LATTE"])
    if not known:
        add_product(
            database,
            sku="LATTE",
            name="Iced latte",
            price=Money(Decimal("2.50"), Currency.USD),
            stock=1_000_000,
            now_ms=SystemClock().now_ms(),
        )
    return url, database


if __name__ == "__main__":
    main()
