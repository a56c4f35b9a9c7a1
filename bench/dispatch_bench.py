"""The webhook sender alone: how fast one worker's dispatcher drains deliveries already queued, and
where its time goes.

A fresh database with N orders made through checkout while 3 endpoints (real HTTP receivers on
loopback, answering 200 at once, in a process of their own so that they take none of the
sender's CPU) are subscribed to `order.created`: 3N deliveries queued. Then the worker's webhook
dispatcher, built by the composition root with default settings, sends them all; reported:
deliveries a second. `--profile` runs the dispatcher's database work in the event loop's thread
and prints where the time goes (cProfile, cumulative).

`--compare REF` runs the same with the code of git revision REF too (`checkout_revision` in
webhook_bench.py), side by side on the same machine in one run, the two taking turns `--repeat`
times (the median is reported: the machine may be shared).

    .venv/bin/python bench/dispatch_bench.py [--orders 2000] [--repeat 3] [--postgres URL]
        [--compare REF]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from burst_bench import DEFAULT_POSTGRES, PostgresDatabase, _create_orders
from khqrpay.bootstrap import App
from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.db import tables as t
from khqrpay.orders.notices import WebhookEventType
from khqrpay.services.dispatch import Dispatcher
from khqrpay.services.webhooks import add_endpoint
from khqrpay.settings import Settings
from webhook_bench import ENDPOINTS, MERCHANT, _machine, checkout_revision

RECEIVER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _receivers(stack: ExitStack, count: int) -> list[str]:
    """`count` receivers in one process of their own; their URLs once they answer."""
    import httpx

    urls = []
    for _ in range(count):
        port = _free_port()
        process = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
        stack.callback(process.wait, 10)
        stack.callback(process.terminate)
        urls.append(f"http://127.0.0.1:{port}")
    for url in urls:
        for _ in range(100):
            try:
                httpx.post(url, timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
    return urls


def _delivered(database: Database) -> int:
    query = sa.select(sa.func.count()).where(t.webhook_deliveries.c.status == "DELIVERED")
    with database.read() as uow:
        return int(uow.connection.execute(query).scalar_one())


async def _drain(app: App, total: int, *, profile: bool) -> float:
    """Run the webhook dispatcher until every delivery is delivered; the seconds it took."""
    if profile:

        async def inline(_self: Any, work: Any) -> Any:
            return work()

        Dispatcher._db = inline  # type: ignore[method-assign]
    async with app.dispatchers(owner="bench") as (webhooks, *_telegram):
        stop = asyncio.Event()
        started = time.perf_counter()
        running = asyncio.create_task(webhooks.run(stop))
        while await asyncio.to_thread(_delivered, app.database) < total:
            await asyncio.sleep(0.05)
        took = time.perf_counter() - started
        stop.set()
        await running
    return took


def measure(database_url: str, orders: int, *, profile: bool) -> dict[str, Any]:
    """One run on a fresh database (this process's code); its figures."""
    database = Database.from_url(database_url)
    try:
        migrate.upgrade(database)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            database_url=database_url,
            merchant_account=MERCHANT,
        )
        with ExitStack() as stack:
            for url in _receivers(stack, ENDPOINTS):
                add_endpoint(
                    database,
                    url=f"{url}/hooks",
                    event_types=[WebhookEventType.ORDER_CREATED],
                    allow_private=True,
                    clock=SystemClock(),
                )
            _create_orders(database, settings, orders, 1)
            app = App(settings=settings, database=database, clock=SystemClock())
            profiler = cProfile.Profile() if profile else None
            if profiler is not None:
                profiler.enable()
            took = asyncio.run(_drain(app, orders * ENDPOINTS, profile=profile))
            if profiler is not None:
                profiler.disable()
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
                print(text.getvalue(), file=sys.stderr)
        return {"deliveries": orders * ENDPOINTS, "seconds": took}
    finally:
        database.dispose()


def _run_with(src: Path | None, database_url: str, orders: int) -> dict[str, Any]:
    """`measure` in a subprocess on the code in `src` (None: this checkout's)."""
    env = dict(os.environ)
    command = [sys.executable, __file__, "--one", database_url, "--orders", str(orders)]
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(src), str(Path(__file__).parent)])
    done = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the run failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("KHQRPAY_BENCH_POSTGRES_URL"))
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--compare", metavar="REF", help="also run git revision REF's code")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, taking turns")
    parser.add_argument("--profile", action="store_true", help="print a profile (SQLite)")
    parser.add_argument("--one", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.orders, profile=False)))
        return
    if args.profile:
        with tempfile.TemporaryDirectory() as folder:
            result = measure(f"sqlite:///{Path(folder) / 'd.sqlite3'}", args.orders, profile=True)
        print(f"{result['deliveries'] / result['seconds']:.0f} deliveries/s (profiled)")
        return
    print(
        f"Webhook sender: {args.orders * ENDPOINTS:,} deliveries queued to {ENDPOINTS} endpoints."
    )
    print(f"Machine: {_machine()}")
    backends = [("SQLite", None)]
    if not args.sqlite_only:
        backends.append(("PostgreSQL", args.postgres or DEFAULT_POSTGRES))
    with tempfile.TemporaryDirectory() as folder:
        versions: list[tuple[str, Path | None]] = [("this checkout", None)]
        if args.compare:
            versions.insert(0, (args.compare, checkout_revision(args.compare, Path(folder))))
        print("| database | code | deliveries | seconds (median) | deliveries/s | runs (s) |")
        print("|---|---|---|---|---|---|")
        for backend, server in backends:
            took: dict[str, list[float]] = {label: [] for label, _src in versions}
            for turn in range(args.repeat):
                for number, (label, src) in enumerate(versions):
                    with ExitStack() as stack:
                        url = (
                            f"sqlite:///{Path(folder) / f'{turn}-{number}.sqlite3'}"
                            if server is None
                            else stack.enter_context(PostgresDatabase(server))
                        )
                        took[label].append(_run_with(src, url, args.orders)["seconds"])
            for label, runs in took.items():
                median = statistics.median(runs)
                print(
                    f"| {backend} | {label} | {args.orders * ENDPOINTS:,} | {median:.1f} "
                    f"| {args.orders * ENDPOINTS / median:.0f} "
                    f"| {', '.join(f'{run:.1f}' for run in runs)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
