"""End to end: real processes over loopback, customers paying while their payment pages listen.

Each run starts, as processes of their own (each in its own process group, all stopped at the
end, also on Ctrl-C or an error): `khqrpay simulator` (the Bakong), `khqrpay serve` (one or more
web processes; `--no-worker` when workers run apart) and `khqrpay worker` processes, all configured
by `KHQRPAY_*` variables with the defaults of docs/configuration.md except the JSON API's per-key
rate limit (one bench key stands for every client). On a fresh database (SQLite file, or a
PostgreSQL database of its own, dropped at the end):

1. Checkout: `--clients` API clients at once make `--orders` orders through the public JSON API
   (`POST /api/v1/orders`, the key from `khqrpay apikey create`), spread over the web processes.
   Reported: orders per second, and the request's p50/p99.
2. Payments: `--paid` of those orders, chosen at random, each have their payment page opened
   (`GET /pay/{token}`, which marks the order watched) and its event stream
   (`/pay/{token}/events`, SSE) followed; each is paid in the simulator (`POST /_sim/pay`) at a
   random moment of `--window` seconds. Reported: for each paid order, the time from `/_sim/pay`
   returning to its page hearing COMPLETED (p50/p95/p99/max), split at the order's `completed_ms`
   (detection: the worker's checks; then delivery: applying the batch, the relay, the web
   process's outbox feed and the SSE stream); Bakong requests per second
   over the payment window (counted by the simulator, `GET /_sim/requests`, retries included).
3. Checks, in the database and through the API at the end: every paid order COMPLETED once (one
   audit row to COMPLETED, one evidence row), every unpaid order still PENDING; "missed" counts
   paid orders not COMPLETED, "unheard" those whose page did not hear it, "doubled" orders with
   more than one completion or evidence row. Any of them makes the bench exit non-zero.

The runs: SQLite (one web process with its worker), PostgreSQL with 2 web processes and 1, then 4
workers, and SQLite again with 20% of the Bakong calls failing (timeouts, 500s, 429s); on request
`faults-no-timeouts` and `faults-pg4`. `--set KHQRPAY_NAME=VALUE` gives every process a setting
(to try one), `--logs DIR` keeps each run's logs and database.

    nice -n 10 .venv/bin/python bench/e2e_bench.py [--quick] [--runs sqlite,pg1,pg4,faults]
        [--postgres URL] [--set KHQRPAY_NAME=VALUE ...] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from burst_bench import DEFAULT_POSTGRES, PostgresDatabase, _machine
from khqrpay.db import Database
from khqrpay.db import tables as t
from web_bench import _free_port, percentile

MERCHANT = "e2e_shop@devb"
TOKEN = "e2e-bench-simulator-token-0123456789"
LOTS = "1000000/minute"
KHQRPAY = Path(sys.executable).with_name("khqrpay")
STREAM_URL = re.compile(r'data-stream-url="([^"]+)"')
# 20% of Bakong calls fail: 500s, 429s (Retry-After 1 s) and timeouts (the call hangs past the
# client's 15-s timeout); the same share without timeouts tells what the timeouts cost.
FAULTS = {"seed": 12, "server_error": 0.07, "rate_limited": 0.07, "timeout": 0.06}
FAULTS_WITHOUT_TIMEOUTS = {"seed": 12, "server_error": 0.10, "rate_limited": 0.10}
SETUP_CONCURRENCY = 20


@dataclass(frozen=True)
class Setup:
    name: str
    postgres: bool
    webs: int
    workers: int  # 0: the web process runs its worker (SQLite, one process)
    faults: dict[str, float] | None = None

    def describe(self) -> str:
        database = "PostgreSQL" if self.postgres else "SQLite"
        workers = f"{self.workers} worker(s)" if self.workers else "worker in the web process"
        faulty = ""
        if self.faults:
            hangs = " (timeouts too)" if self.faults.get("timeout") else " (no timeouts)"
            faulty = ", 20% of Bakong calls failing" + hangs
        return f"{database}, {self.webs} web process(es), {workers}{faulty}"


SETUPS = {
    "sqlite": Setup("sqlite", postgres=False, webs=1, workers=0),
    "pg1": Setup("pg1", postgres=True, webs=2, workers=1),
    "pg4": Setup("pg4", postgres=True, webs=2, workers=4),
    "faults": Setup("faults", postgres=False, webs=1, workers=0, faults=FAULTS),
    # Not run by default: what the timeouts cost, and several workers under the same faults.
    "faults-no-timeouts": Setup(
        "faults-no-timeouts", postgres=False, webs=1, workers=0, faults=FAULTS_WITHOUT_TIMEOUTS
    ),
    "faults-pg4": Setup("faults-pg4", postgres=True, webs=2, workers=4, faults=FAULTS),
}
DEFAULT_RUNS = "sqlite,pg1,pg4,faults"


@dataclass
class Order:
    id: int
    qr: str
    token: str
    web: str
    paid_ms: int | None = None
    heard_ms: int | None = None


@dataclass
class Outcome:
    setup: Setup
    checkout: dict[str, float] = field(default_factory=dict)
    payments: dict[str, float] = field(default_factory=dict)
    checks: dict[str, int] = field(default_factory=dict)


# -- processes --------------------------------------------------------------------------------


class Processes:
    """Child processes, each the leader of its own process group; `stop` ends every group."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.folder / f"{name}.log"
        with log.open("wb") as output:
            child = subprocess.Popen(
                [KHQRPAY, *args],
                env=self.env,
                cwd=self.folder,  # no stray .env file is read
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.children.append((name, child))
        return child

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [KHQRPAY, *args], env=self.env, cwd=self.folder, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"khqrpay {' '.join(args)} failed: {done.stderr.decode()[-2000:]}")
        return done.stdout.decode()

    def check_alive(self) -> None:
        for name, child in self.children:
            if child.poll() is not None:
                log = self.folder / f"{name}.log"
                raise SystemExit(f"{name} exited ({child.returncode}): see {log}")

    def stop(self) -> None:
        # The simulator (started first) stops last: a worker stopping mid-call gets its answer.
        children = [child for _name, child in self.children]
        _stop_together(children[1:])
        _stop_together(children[:1])
        self.children.clear()


def _stop_together(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for child in children:
        try:
            child.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait(5)


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


def _wait_for(url: str, processes: Processes, what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        processes.check_alive()
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.2)


@contextmanager
def system(
    setup: Setup, database_url: str, folder: Path, settings: list[str]
) -> Iterator[tuple[list[str], str, str]]:
    """The processes of `setup` on `database_url`: the web base URLs, the simulator's, the key."""
    sim_port = _free_port()
    simulator_url = f"http://127.0.0.1:{sim_port}"
    env = {key: value for key, value in os.environ.items() if not key.startswith("KHQRPAY_")}
    env |= {
        "KHQRPAY_DATABASE_URL": database_url,
        "KHQRPAY_BAKONG_URL": simulator_url,
        "KHQRPAY_BAKONG_TOKEN": TOKEN,
        "KHQRPAY_MERCHANT_ACCOUNT": MERCHANT,
        "KHQRPAY_WEB_SECRET_KEY": "e2e-bench-secret-key-0123456789abcdef",
        "KHQRPAY_WEB_SECURE_COOKIES": "false",
        "KHQRPAY_WEB_RATE_API_KEY": LOTS,
        # 300 customers watching at once need about 6 calls a second (50 QRs a call, each
        # watched QR every second): ten times the default budget, which suits a shop with up to
        # 50 customers on their payment pages at once. `--set` it back to 60 to see the default.
        "KHQRPAY_BAKONG_MAX_CALLS_PER_MIN": "600",
    }
    env |= dict(setting.split("=", 1) for setting in settings)
    processes = Processes(folder, env)
    try:
        processes.run("db", "upgrade")
        key = json.loads(processes.run("apikey", "create", "e2e-bench"))["key"]
        processes.start("simulator", "simulator", "--port", str(sim_port), "--seed", "1")
        _wait_for(f"{simulator_url}/_sim/faults", processes, "the simulator")
        webs = []
        for number in range(setup.webs):
            port = _free_port()
            worker = "--worker" if setup.workers == 0 else "--no-worker"
            processes.start(
                f"web{number}", "serve", "--port", str(port), worker, "--log-level", "WARNING"
            )
            webs.append(f"http://127.0.0.1:{port}")
        for number in range(setup.workers):
            processes.start(f"worker{number}", "worker", "--log-level", "WARNING")
        for base in webs:
            _wait_for(f"{base}/healthz", processes, "khqrpay serve")
        yield webs, simulator_url, key
        processes.check_alive()
    finally:
        processes.stop()


# -- 1. checkout through the API --------------------------------------------------------------


async def checkout(
    webs: list[str], key: str, count: int, clients: int
) -> tuple[list[Order], dict[str, float]]:
    """`count` orders made by `clients` API clients at once, round-robin over the web processes."""
    headers = {"Authorization": f"Bearer {key}"}
    numbers = iter(range(count))
    orders: list[Order] = []
    latencies: list[float] = []
    errors: list[int] = []

    async def client(base: str) -> None:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
            for number in numbers:
                body = {"amount": "1.50", "currency": "USD", "reference": f"E2E-{number}"}
                started = time.perf_counter()
                answer = await http.post("/api/v1/orders", json=body)
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 201:
                    errors.append(answer.status_code)
                    continue
                view = answer.json()
                token = view["links"]["payment_page"].rsplit("/", 1)[1]
                orders.append(Order(view["id"], view["qr"], token, base))

    started = time.monotonic()
    await asyncio.gather(*(client(webs[n % len(webs)]) for n in range(clients)))
    elapsed = time.monotonic() - started
    return orders, {
        "orders": len(orders),
        "errors": len(errors),
        "per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


# -- 2. payments while the pages listen -------------------------------------------------------


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _page(http: httpx.AsyncClient, order: Order, following: asyncio.Event) -> None:
    """The customer's payment page: drawn once (the order is then watched), then its event
    stream until it hears COMPLETED."""
    page = await http.get(f"{order.web}/pay/{order.token}")
    page.raise_for_status()
    found = STREAM_URL.search(page.text)
    assert found, "no event stream on the payment page"
    async with http.stream("GET", order.web + found.group(1).replace("&amp;", "&")) as stream:
        async for line in stream.aiter_lines():
            if line.startswith(":"):
                following.set()  # subscribed to the feed
            elif line.startswith("data:") and json.loads(line[5:])["status"] == "COMPLETED":
                order.heard_ms = _now_ms()
                return


async def _pay(bank: httpx.AsyncClient, order: Order, at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    answer = await bank.post("/_sim/pay", json={"qr": order.qr})
    answer.raise_for_status()
    order.paid_ms = _now_ms()


async def _bakong_requests(bank: httpx.AsyncClient) -> dict[str, Any]:
    answer = await bank.get("/_sim/requests")
    answer.raise_for_status()
    counted: dict[str, Any] = answer.json()
    return counted


async def pay_while_watched(
    paid: list[Order],
    simulator_url: str,
    window_s: float,
    faults: dict[str, float] | None,
    rng: random.Random,
) -> dict[str, float]:
    limits = httpx.Limits(max_connections=len(paid) + 20, max_keepalive_connections=len(paid) + 20)
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(60, read=None), limits=limits) as http,
        httpx.AsyncClient(base_url=simulator_url, timeout=30) as bank,
    ):
        following = [asyncio.Event() for _ in paid]
        opening = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def open_page(order: Order, event: asyncio.Event) -> None:
            async with opening:  # a few pages at a time open, as customers arrive
                task = asyncio.create_task(_page(http, order, event))
                subscribed = asyncio.create_task(event.wait())
                await asyncio.wait({task, subscribed}, return_when=asyncio.FIRST_COMPLETED)
                subscribed.cancel()
                event.set()  # subscribed, or failed: counted unheard, its error shown below
            await task

        pages = [
            asyncio.create_task(open_page(order, event))
            for order, event in zip(paid, following, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in following)), 300)
        if faults:
            (await bank.post("/_sim/faults", json=faults)).raise_for_status()
        before = await _bakong_requests(bank)
        started = time.monotonic()
        payments = [_pay(bank, order, started + rng.uniform(0, window_s)) for order in paid]
        await asyncio.gather(*payments)
        window_end = time.monotonic()
        during = await _bakong_requests(bank)
        # Every page gets a minute after the last payment (more with faults: timeouts hang 30 s).
        heard, unheard = await asyncio.wait(pages, timeout=180 if faults else 60)
        for page in unheard:
            page.cancel()
        for page in heard:
            if page.exception() is not None:
                print(f"  a page failed: {page.exception()!r}", flush=True)
        after = await _bakong_requests(bank)
        if faults:
            (await bank.post("/_sim/faults", json={})).raise_for_status()
    latencies = [(o.heard_ms - o.paid_ms) / 1000 for o in paid if o.heard_ms and o.paid_ms]
    return {
        "paid": len(paid),
        "heard": len(latencies),
        "p50_s": percentile(latencies, 0.50),
        "p95_s": percentile(latencies, 0.95),
        "p99_s": percentile(latencies, 0.99),
        "max_s": max(latencies),
        "bakong_per_s": (during["total"] - before["total"]) / (window_end - started),
        "bakong_requests": after["total"] - before["total"],
        "faults_met": sum(after["faults"].values()) - sum(before["faults"].values()),
    }


# -- 3. checks --------------------------------------------------------------------------------


def check_database(
    database_url: str, orders: list[Order], paid: list[Order]
) -> tuple[dict[str, int], dict[str, float]]:
    """Completions counted in the database, and where each page's wait went."""
    database = Database.from_url(database_url)
    try:
        with database.read() as uow:
            run = uow.connection.execute
            statuses = dict(run(sa.select(t.orders.c.id, t.orders.c.status)).all())
            completed_ms = dict(run(sa.select(t.orders.c.id, t.orders.c.completed_ms)).all())
            to_completed = Counter(
                run(
                    sa.select(t.audit_log.c.order_id).where(t.audit_log.c.to_status == "COMPLETED")
                ).scalars()
            )
            evidence = Counter(run(sa.select(t.payment_evidence.c.order_id)).scalars())
    finally:
        database.dispose()
    paid_ids = {order.id for order in paid}
    checks = {
        "completed": sum(1 for order in paid if statuses[order.id] == "COMPLETED"),
        "missed": sum(1 for order in paid if statuses[order.id] != "COMPLETED"),
        "unheard": sum(1 for order in paid if order.heard_ms is None),
        "doubled": sum(1 for order in paid if to_completed[order.id] > 1 or evidence[order.id] > 1),
        "unpaid_not_pending": sum(
            1 for order in orders if order.id not in paid_ids and statuses[order.id] != "PENDING"
        ),
    }
    detect = [
        (completed_ms[o.id] - o.paid_ms) / 1000 for o in paid if completed_ms[o.id] and o.paid_ms
    ]
    deliver = [
        (o.heard_ms - completed_ms[o.id]) / 1000 for o in paid if o.heard_ms and completed_ms[o.id]
    ]
    split = {
        "detect_p50_s": percentile(detect, 0.5),
        "detect_p99_s": percentile(detect, 0.99),
        "deliver_p50_s": percentile(deliver, 0.5),
        "deliver_p99_s": percentile(deliver, 0.99),
    }
    return checks, split


async def completed_through_api(webs: list[str], key: str) -> int:
    """The orders the API lists as COMPLETED, every page of them."""
    total, cursor = 0, None
    async with httpx.AsyncClient(base_url=webs[0], timeout=30) as http:
        while True:
            query = {"status": "COMPLETED", "limit": "100"} | ({"cursor": cursor} if cursor else {})
            page = await http.get(
                "/api/v1/orders", params=query, headers={"Authorization": f"Bearer {key}"}
            )
            page.raise_for_status()
            total += len(page.json()["orders"])
            if (cursor := page.json()["next_cursor"]) is None:
                return total


# -- runs -------------------------------------------------------------------------------------


def run(setup: Setup, options: argparse.Namespace, folder: Path) -> Outcome:
    outcome = Outcome(setup)
    rng = random.Random(f"e2e:{setup.name}")
    with ExitStack() as stack:
        if setup.postgres:
            url = stack.enter_context(PostgresDatabase(options.postgres))
        else:
            url = f"sqlite:///{folder / f'{setup.name}.sqlite3'}"
        webs, simulator_url, key = stack.enter_context(system(setup, url, folder, options.set))
        orders, outcome.checkout = asyncio.run(checkout(webs, key, options.orders, options.clients))
        print(f"  checkout: {_figures(outcome.checkout)}", flush=True)
        paid = rng.sample(orders, options.paid)
        outcome.payments = asyncio.run(
            pay_while_watched(paid, simulator_url, options.window, setup.faults, rng)
        )
        print(f"  payments: {_figures(outcome.payments)}", flush=True)
        outcome.checks, split = check_database(url, orders, paid)
        outcome.payments |= split
        outcome.checks["api_completed"] = asyncio.run(completed_through_api(webs, key))
        print(f"  split: {_figures(split)}; checks: {_figures(outcome.checks)}", flush=True)
    return outcome


def _figures(figures: dict[str, float] | dict[str, int]) -> str:
    return ", ".join(f"{name} {value:.2f}" for name, value in figures.items())


def report(outcomes: list[Outcome], options: argparse.Namespace) -> None:
    print()
    print(f"Checkout: {options.orders:,} orders by {options.clients} API clients at once")
    print()
    print("| run | orders/s | p50 (ms) | p99 (ms) | max (ms) | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for o in outcomes:
        c = o.checkout
        print(
            f"| {o.setup.describe()} | {c['per_second']:.0f} | {c['p50_ms']:.0f} | "
            f"{c['p99_ms']:.0f} | {c['max_ms']:.0f} | {c['errors']:.0f} |"
        )
    print()
    print(f"Payments: {options.paid} of them paid over {options.window:g} s, each page listening")
    print()
    print(
        "| run | pay → page p50 (s) | p95 | p99 | max | pay → completed p50 / p99 | "
        "completed → page p50 / p99 | Bakong req/s | failed | missed | doubled | unheard |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for o in outcomes:
        p, c = o.payments, o.checks
        print(
            f"| {o.setup.describe()} | {p['p50_s']:.2f} | {p['p95_s']:.2f} | {p['p99_s']:.2f} | "
            f"{p['max_s']:.2f} | {p['detect_p50_s']:.2f} / {p['detect_p99_s']:.2f} | "
            f"{p['deliver_p50_s']:.2f} / {p['deliver_p99_s']:.2f} | {p['bakong_per_s']:.1f} | "
            f"{p['faults_met']:.0f} of {p['bakong_requests']:.0f} | "
            f"{c['missed']} | {c['doubled']} | {c['unheard']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 orders, 30 paid over 10 s")
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--paid", type=int, default=300)
    parser.add_argument("--window", type=float, default=60.0, help="seconds payments spread over")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--runs", default=DEFAULT_RUNS, help=f"some of {','.join(SETUPS)}")
    parser.add_argument("--postgres", default=os.environ.get("KHQRPAY_BENCH_POSTGRES_URL"))
    parser.add_argument("--logs", help="keep each run's process logs and database in DIR/RUN")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KHQRPAY_NAME=VALUE",
        help="a setting for every process (repeatable), e.g. KHQRPAY_SCHEDULE_FAST_INTERVAL_S=1",
    )
    options = parser.parse_args()
    if options.quick:
        options.orders, options.paid, options.window = 100, 30, 10.0
    options.postgres = options.postgres or DEFAULT_POSTGRES
    # A SIGTERM stops the bench like Ctrl-C: through the `finally` that stops every process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"End to end. Machine: {_machine()}; load average {os.getloadavg()}", flush=True)
    if options.set:
        print(f"Settings: {' '.join(options.set)}", flush=True)
    outcomes = []
    for name in options.runs.split(","):
        setup = SETUPS[name]
        print(f"{setup.describe()}:", flush=True)
        with ExitStack() as stack:
            if options.logs:
                folder = Path(options.logs) / setup.name
                folder.mkdir(parents=True, exist_ok=True)
            else:
                folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            outcomes.append(run(setup, options, folder))
    print(f"load average at the end {os.getloadavg()}")
    report(outcomes, options)
    failed = [
        o.setup.name
        for o in outcomes
        if o.checks["missed"]
        or o.checks["doubled"]
        or o.checks["unheard"]
        or o.checks["unpaid_not_pending"]
        or o.checks["api_completed"] != o.payments["paid"]
    ]
    if failed:
        raise SystemExit(f"missed, doubled or unheard completions in: {', '.join(failed)}")


if __name__ == "__main__":
    main()
