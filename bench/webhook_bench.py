"""Webhooks under load: how long after a payment completes its webhooks arrive.

For each setup: a fresh database, N one-line orders made through checkout and 3 webhook
endpoints (real HTTP receivers on loopback, in this process, answering 200 at once) subscribed to
`order.completed`; then a `khqrpay worker` process with default settings finds the payments in the
Bakong simulator and sends the webhooks. Two ways to pay: a *burst* (every order paid before the
worker starts: completions as fast as the verifier goes) and a *steady* rate (payments made while
the worker runs). Reported: delivery lag (a delivery's `done_ms` minus its event's time, the
completion's commit) p50, p99 and max; the time from the first to the last completion and from
the first completion to the last delivery; that every message reached every endpoint exactly
once; and, for the burst, the completion time of the same burst with no endpoint (the verifier
not slowed).

`--compare REF` also runs the burst with the worker of git revision REF (`checkout_revision`),
side by side in the same run.

    .venv/bin/python bench/webhook_bench.py [--orders 5000] [--rate 50] [--postgres URL]
        [--compare REF]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

from burst_bench import DEFAULT_POSTGRES, PostgresDatabase, _create_orders
from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.db import tables as t
from khqrpay.orders.notices import WebhookEventType
from khqrpay.services.webhooks import add_endpoint
from khqrpay.serving import serve_in_thread
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.server import RunningSimulator

ENDPOINTS = 3
MERCHANT = "shop@devb"
# Imported first by a Python whose path holds an older revision's code: the dependencies added
# since then fail to import there, as when they were not installed (sniffio is imported by
# httpcore at every request when it can be, and failing that costs a search of sys.path).
_AS_THEN = """
import importlib.abc, sys

class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, *_args):
        if fullname in {absent!r}:
            raise ModuleNotFoundError(fullname)

sys.meta_path.insert(0, _Absent())
"""
ADDED_SINCE = ("sniffio",)


def checkout_revision(ref: str, folder: Path) -> Path:
    """The `src/` of git revision `ref`, unpacked into `folder`: put it first on `PYTHONPATH`
    and Python runs that revision's code, without the dependencies added since."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src", "pyproject.toml"],
        check=True,
        capture_output=True,
        cwd=Path(__file__).parent.parent,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    declared = (folder / "pyproject.toml").read_text()
    absent = {name for name in ADDED_SINCE if f'"{name}' not in declared}
    (folder / "src" / "sitecustomize.py").write_text(_AS_THEN.format(absent=absent))
    return folder / "src"


class Receiver:
    """Answers 200 at once and counts each webhook-id it gets."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        webhook_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
        with self._lock:
            self.seen[webhook_id] += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@dataclass(frozen=True)
class Outcome:
    backend: str
    mode: str
    code: str
    orders: int
    completions_s: float
    drain_s: float
    # Deliveries a second, from the first delivered to the last.
    delivery_rate: float
    lags_ms: list[int]
    duplicates: int
    missing: int

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.lags_ms)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] / 1000


def _count(database: Database, query: sa.Select[Any]) -> int:
    with database.read() as uow:
        return int(uow.connection.execute(query).scalar_one())


def _completed(database: Database) -> int:
    query = sa.select(sa.func.count()).where(t.orders.c.status == "COMPLETED")
    return _count(database, query)


def _delivered(database: Database) -> int:
    query = sa.select(sa.func.count()).where(t.webhook_deliveries.c.status == "DELIVERED")
    return _count(database, query)


def _lags_ms(database: Database) -> list[int]:
    deliveries, messages, outbox = t.webhook_deliveries, t.webhook_messages, t.outbox
    with database.read() as uow:
        rows = uow.connection.execute(
            sa.select(deliveries.c.done_ms - outbox.c.created_ms)
            .join(messages, messages.c.id == deliveries.c.message_id)
            .join(outbox, outbox.c.id == messages.c.outbox_id)
            .where(deliveries.c.status == "DELIVERED")
        )
        return [int(lag) for (lag,) in rows]


def _first_and_last_completion_ms(database: Database) -> tuple[int, int]:
    with database.read() as uow:
        first, last = uow.connection.execute(
            sa.select(sa.func.min(t.orders.c.completed_ms), sa.func.max(t.orders.c.completed_ms))
        ).one()
    return int(first), int(last)


def _delivery_span_ms(database: Database) -> tuple[int, int]:
    """When the first and the last delivery were done."""
    done = t.webhook_deliveries.c.done_ms
    with database.read() as uow:
        first, last = uow.connection.execute(sa.select(sa.func.min(done), sa.func.max(done))).one()
    return int(first or 0), int(last or 0)


async def _pay(simulator: RunningSimulator, qrs: list[str], rate: float) -> None:
    """Pay every QR: all at once (rate 0) or `rate` a second."""
    limit = asyncio.Semaphore(32)
    async with httpx.AsyncClient(base_url=simulator.url, timeout=30) as http:

        async def pay(qr: str) -> None:
            async with limit:
                for attempt in range(3):
                    # A connection the simulator dropped under load: pay again (a second
                    # payment of a paid order changes no webhook counted here).
                    try:
                        (await http.post("/_sim/pay", json={"qr": qr})).raise_for_status()
                        return
                    except httpx.TransportError:
                        if attempt == 2:
                            raise

        if rate <= 0:
            await asyncio.gather(*(pay(qr) for qr in qrs))
            return
        started = time.monotonic()
        tasks = []
        for number, qr in enumerate(qrs):
            await asyncio.sleep(max(0.0, started + number / rate - time.monotonic()))
            tasks.append(asyncio.create_task(pay(qr)))
        await asyncio.gather(*tasks)


def run_setup(
    backend: str,
    database_url: str,
    orders: int,
    simulator: RunningSimulator,
    *,
    rate: float,
    endpoints: int = ENDPOINTS,
    src: Path | None = None,
) -> Outcome:
    database = Database.from_url(database_url)
    try:
        migrate.upgrade(database)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database_url,
            schedule_initial_delay_s=0,
            merchant_account=MERCHANT,
        )
        qrs = _create_orders(database, settings, orders, 1)
        receivers = [Receiver() for _ in range(endpoints)]
        with ExitStack() as stack:
            for receiver in receivers:
                url = stack.enter_context(serve_in_thread(receiver, name="receiver"))
                add_endpoint(
                    database,
                    url=f"{url}/hooks",
                    event_types=[WebhookEventType.ORDER_COMPLETED],
                    allow_private=True,
                    clock=SystemClock(),
                )
            if rate <= 0:
                asyncio.run(_pay(simulator, qrs, 0))
            env = {k: v for k, v in os.environ.items() if not k.startswith("KHQRPAY_")} | {
                "KHQRPAY_DATABASE_URL": database_url,
                "KHQRPAY_BAKONG_URL": simulator.url,
                "KHQRPAY_BAKONG_TOKEN": simulator.token,
                "KHQRPAY_MERCHANT_ACCOUNT": MERCHANT,
            }
            if src is not None:
                env["PYTHONPATH"] = str(src)
            with tempfile.TemporaryDirectory() as cwd:
                log = Path(cwd) / "worker.log"
                worker = subprocess.Popen(
                    [sys.executable, "-m", "khqrpay.cli.worker", "--json-logs"],
                    env=env,
                    cwd=cwd,
                    stdout=subprocess.DEVNULL,
                    stderr=log.open("wb"),
                )
                try:
                    if rate > 0:
                        asyncio.run(_pay(simulator, qrs, rate))
                    deadline = time.monotonic() + 600
                    while (
                        _completed(database) < orders or _delivered(database) < orders * endpoints
                    ):
                        if worker.poll() is not None:
                            tail = log.read_text()[-2000:]
                            raise RuntimeError(f"the worker exited early: {tail}")
                        if time.monotonic() > deadline:
                            raise RuntimeError("not done within 10 minutes")
                        time.sleep(0.1)
                finally:
                    worker.terminate()
                    worker.wait(30)
        first_ms, last_ms = _first_and_last_completion_ms(database)
        first_done_ms, last_done_ms = _delivery_span_ms(database)
        received = sum(sum(r.seen.values()) for r in receivers)
        return Outcome(
            backend=backend,
            mode="burst" if rate <= 0 else f"{rate:g}/s",
            code="this checkout" if src is None else src.parent.name,
            orders=orders,
            completions_s=(last_ms - first_ms) / 1000,
            drain_s=(last_done_ms - first_ms) / 1000 if endpoints else 0.0,
            delivery_rate=orders * endpoints * 1000 / max(1, last_done_ms - first_done_ms),
            lags_ms=_lags_ms(database),
            duplicates=received - sum(len(r.seen) for r in receivers),
            missing=orders * endpoints - sum(len(r.seen) for r in receivers),
        )
    finally:
        database.dispose()


def _machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=50.0, help="payments a second, steady run")
    parser.add_argument("--postgres", default=os.environ.get("KHQRPAY_BENCH_POSTGRES_URL"))
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgres-only", action="store_true")
    parser.add_argument("--compare", metavar="REF", help="also a burst with REF's worker")
    parser.add_argument("--burst-only", action="store_true", help="no steady-rate run")
    parser.add_argument("--compare-first", action="store_true", help="REF's burst first")
    args = parser.parse_args()
    print(f"Webhooks: {args.orders} completions, {ENDPOINTS} endpoints. Machine: {_machine()}")
    config = SimulatorConfig(
        token=SecretStr("webhook-bench-token-0123456789"),
        seed=1,
        known_accounts=frozenset({MERCHANT}),
    )
    outcomes: list[Outcome] = []
    baselines: dict[str, float] = {}

    def setups() -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = [] if args.postgres_only else [("SQLite", None)]
        if not args.sqlite_only:
            found.append(("PostgreSQL", args.postgres or DEFAULT_POSTGRES))
        return found

    revisions = ExitStack()
    older = None
    if args.compare:
        folder = Path(revisions.enter_context(tempfile.TemporaryDirectory())) / args.compare
        older = checkout_revision(args.compare, folder)
    runs: list[tuple[float, int, Path | None]] = [(0.0, 0, None), (0.0, ENDPOINTS, None)]
    if older is not None:
        # Which goes first: --compare-first for REF (the load of a shared machine drifts).
        runs.insert(1 if args.compare_first else 2, (0.0, ENDPOINTS, older))
    if not args.burst_only:
        runs.append((args.rate, ENDPOINTS, None))
    for backend, server in setups():
        for rate, endpoints, src in runs:
            with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
                simulator = stack.enter_context(run_simulator(config))
                url = (
                    f"sqlite:///{Path(folder) / 'webhooks.sqlite3'}"
                    if server is None
                    else stack.enter_context(PostgresDatabase(server))
                )
                outcome = run_setup(
                    backend, url, args.orders, simulator, rate=rate, endpoints=endpoints, src=src
                )
            if endpoints == 0:
                baselines[backend] = outcome.completions_s
                print(f"  {backend} burst, no endpoint: completions {outcome.completions_s:.1f} s")
                continue
            outcomes.append(outcome)
            print(
                f"  {backend} {outcome.mode} ({outcome.code}): completions "
                f"{outcome.completions_s:.1f} s, lag p50 {outcome.percentile(0.5):.2f} s "
                f"p99 {outcome.percentile(0.99):.2f} s, {outcome.delivery_rate:.0f} deliveries/s",
                flush=True,
            )
    revisions.close()
    print()
    print(
        "| database | payments | code | completions (s) | same, no endpoint (s) "
        "| last delivery (s) | deliveries/s | lag p50 (s) | lag p99 (s) | lag max (s) "
        "| deliveries | duplicates | missing |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        baseline = f"{baselines[o.backend]:.1f}" if o.mode == "burst" else ""
        print(
            f"| {o.backend} | {o.mode} | {o.code} | {o.completions_s:.1f} | {baseline} "
            f"| {o.drain_s:.1f} | {o.delivery_rate:.0f} | {o.percentile(0.5):.2f} "
            f"| {o.percentile(0.99):.2f} | {max(o.lags_ms) / 1000:.2f} | {len(o.lags_ms):,} "
            f"| {o.duplicates} | {o.missing} |"
        )


if __name__ == "__main__":
    main()
