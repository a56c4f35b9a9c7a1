"""Running the demo: the simulator on loopback, the database under the data folder, the worker and
the customers on one event loop, until Ctrl-C or the duration ends."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import random
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr
from rich.console import Console

from khqrpay.bakong import BakongMetrics
from khqrpay.bootstrap import App, BakongServices, bootstrap
from khqrpay.clock import SystemClock
from khqrpay.demo.dashboard import (
    DemoOutput,
    DemoScreen,
    clock_time,
    describe_event,
    intro_lines,
    summary_lines,
)
from khqrpay.demo.read_model import Snapshot, read_order, read_orders
from khqrpay.demo.scenario import (
    MIN_ORDERS,
    SHOP,
    CustomerKind,
    DemoError,
    DemoOrder,
    ScriptedPayment,
    SimulatorEndpoint,
    create_demo_orders,
    plan_customers,
    script_payments,
    seed_catalogue,
)
from khqrpay.events import Event, EventBus
from khqrpay.logging import configure_logging
from khqrpay.orders.events import Topic
from khqrpay.services.maintenance import upgrade_database
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig
from khqrpay.simulator.server import run_simulator
from khqrpay.worker import Worker

# A month of the pay-later pattern in five minutes: one day every ten seconds.
DEFAULT_ACCELERATION = 8640.0
DEFAULT_ORDERS = 12
DEFAULT_SIM_PORT = 8700
DEFAULT_DATA_DIR = Path("data/demo")
MAX_ORDERS = 100
DATABASE_FILE = "khqrpay.sqlite3"
LOG_FILE = "demo.log"
SNAPSHOT_INTERVAL_S = 0.5
CONTROL_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class DemoOptions:
    orders: int = DEFAULT_ORDERS
    acceleration: float = DEFAULT_ACCELERATION
    duration_s: float | None = None
    seed: int | None = None
    sim_port: int = DEFAULT_SIM_PORT
    data_dir: Path = DEFAULT_DATA_DIR

    def __post_init__(self) -> None:
        if not MIN_ORDERS <= self.orders <= MAX_ORDERS:
            raise DemoError(f"--orders must be between {MIN_ORDERS} and {MAX_ORDERS}")
        if not (math.isfinite(self.acceleration) and self.acceleration > 0):
            raise DemoError("--acceleration must be a positive number")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise DemoError("--duration must be a positive number of seconds")
        if not 0 <= self.sim_port <= 65535:
            raise DemoError("--sim-port must be between 0 (any free port) and 65535")


def choose_port(port: int) -> tuple[int, str | None]:
    """`port` if it is free on 127.0.0.1, else 0 (a free one) with a note saying why."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
            return 0, f"port {port} is taken (another simulator?): using a free port instead"
    return port, None


@contextlib.contextmanager
def serve_simulator(config: SimulatorConfig, port: int) -> Iterator[SimulatorEndpoint]:
    """The simulator in a background thread on 127.0.0.1:`port` (or a free one if taken), until
    the block ends."""
    chosen, note = choose_port(port)
    try:
        with run_simulator(config, port=chosen) as running:
            bound_port = int(running.url.rsplit(":", 1)[1])
            yield SimulatorEndpoint(
                url=running.url, port=bound_port, token=running.token, port_note=note
            )
    except RuntimeError as exc:
        raise DemoError(str(exc)) from exc


def fresh_database_url(data_dir: Path) -> str:
    """The demo database's URL, its previous run's files removed (only those: the folder may be
    anything the user named)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = (data_dir / DATABASE_FILE).resolve()
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return f"sqlite:///{path}"


def demo_settings(database_url: str, simulator: SimulatorEndpoint) -> Settings:
    """The settings of the environment (schedule, worker figures), pointed at the demo shop,
    database and simulator."""
    return Settings(
        database_url=database_url,
        bakong_url=simulator.url,
        bakong_token=SecretStr(simulator.token),
        merchant_account=SHOP.account,
        merchant_name=SHOP.name,
        merchant_city=SHOP.city,
    )


def _counter_total(counter: Counter) -> int:
    """The sum of a labelled prometheus Counter over all its labels."""
    return round(
        sum(
            sample.value
            for metric in counter.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


@dataclass(frozen=True)
class _Prepared:
    """What `run_demo` sets up before the event loop starts."""

    options: DemoOptions
    app: App
    simulator: SimulatorEndpoint
    orders: tuple[DemoOrder, ...]
    script: tuple[ScriptedPayment, ...]
    log_path: Path


def run_demo(options: DemoOptions, console: Console) -> Snapshot:
    """Run the demo until Ctrl-C (or SIGTERM) or `options.duration_s`; the final snapshot.

    Logs (structured, token redacted) go to `data_dir/demo.log`, so they never mix with the
    dashboard.
    """
    rng = random.Random(options.seed)  # noqa: S311 - a repeatable demo, not security
    clock = SystemClock()
    database_url = fresh_database_url(options.data_dir)
    log_path = (options.data_dir / LOG_FILE).resolve()
    simulator_config = SimulatorConfig(
        known_accounts=frozenset({SHOP.account}),
        seed=options.seed,
        acceleration=options.acceleration,
    )
    with log_path.open("w", encoding="utf-8") as log_stream:
        configure_logging("INFO", stream=log_stream)
        with serve_simulator(simulator_config, options.sim_port) as simulator:
            settings = demo_settings(database_url, simulator)
            with bootstrap(settings, clock=clock, migrated=False) as app:
                upgrade_database(app.database)
                seed_catalogue(app.database, clock)
                kinds = plan_customers(options.orders, rng)
                orders = tuple(create_demo_orders(app.database, settings, clock, kinds, rng))
                prepared = _Prepared(
                    options,
                    app,
                    simulator,
                    orders,
                    tuple(script_payments(orders, rng)),
                    log_path,
                )
                return asyncio.run(DemoRun(prepared, console).run())


class DemoRun:
    """The event-loop part: customers, worker, event printer and dashboard, then the summary."""

    def __init__(self, prepared: _Prepared, console: Console) -> None:
        self._prepared = prepared
        self._clock = prepared.app.clock
        self._console = console
        self._started = time.monotonic()
        self._stop = asyncio.Event()
        # A registry of its own: the demo counts its client's calls, not the process's.
        self._metrics = BakongMetrics(CollectorRegistry())

    async def run(self) -> Snapshot:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        prepared = self._prepared
        bus = prepared.app.event_bus()
        try:
            async with (
                prepared.app.bakong(metrics=self._metrics) as bakong,
                httpx.AsyncClient(
                    base_url=prepared.simulator.url, timeout=CONTROL_TIMEOUT_S
                ) as control,
            ):
                screen = DemoScreen(
                    simulator=prepared.simulator,
                    database_url=prepared.app.settings.database_url,
                    acceleration=prepared.options.acceleration,
                    initial_delay_s=prepared.app.settings.schedule_initial_delay_s,
                    fast_interval_s=prepared.app.settings.schedule_fast_interval_s,
                    duration_s=prepared.options.duration_s,
                    orders=prepared.orders,
                    delays=await hand_to_customers(control, prepared.orders),
                )
                with DemoOutput(self._console, screen) as out:
                    for text in intro_lines(screen, prepared.log_path):
                        out.line(text)
                    final = await self._run_worker(bakong, control, bus, out)
                for text in summary_lines(screen, final):
                    out.line(text)
                return final
        finally:
            await bus.aclose()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _run_worker(
        self, bakong: BakongServices, control: httpx.AsyncClient, bus: EventBus, out: DemoOutput
    ) -> Snapshot:
        worker = Worker(app=self._prepared.app, bakong=bakong, bus=bus)
        # Subscribed before the worker starts, so no status change is missed.
        async with bus.subscribe() as events:
            helpers = [
                asyncio.create_task(self._print_events(events, out)),
                asyncio.create_task(self._play_script(control, out)),
            ]
            running = asyncio.create_task(worker.run(self._stop), name="worker")
            try:
                await self._refresh_until_done(running, out)
            finally:
                self._stop.set()
                await running
                for helper in helpers:
                    helper.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)
        final = await self._snapshot()
        out.update(final)
        return final

    async def _snapshot(self) -> Snapshot:
        rows = await asyncio.to_thread(read_orders, self._prepared.app.database)
        return Snapshot(
            at_ms=self._clock.now_ms(),
            elapsed_s=time.monotonic() - self._started,
            orders=rows,
            bakong_calls=_counter_total(self._metrics.calls),
            qr_checks=_counter_total(self._metrics.list_items),
        )

    async def _refresh_until_done(self, worker: asyncio.Task[None], out: DemoOutput) -> None:
        """Refresh the dashboard until stopped, the duration is over, or the worker dies."""
        duration_s = self._prepared.options.duration_s
        while not self._stop.is_set():
            out.update(await self._snapshot())
            # Ctrl-C may stop the worker during the snapshot: only a worker ending by itself is
            # unexpected.
            if worker.done() and not self._stop.is_set():
                worker.result()  # the worker never ends by itself: surface what ended it
                raise DemoError("the worker stopped unexpectedly")
            wait_s = SNAPSHOT_INTERVAL_S
            if duration_s is not None:
                left_s = self._started + duration_s - time.monotonic()
                if left_s <= 0:
                    return
                wait_s = min(wait_s, left_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), wait_s)

    async def _play_script(self, control: httpx.AsyncClient, out: DemoOutput) -> None:
        for payment in self._prepared.script:
            await asyncio.sleep(max(0.0, self._started + payment.at_s - time.monotonic()))
            body = {"qr": payment.qr}
            if payment.amount is not None:
                body["amount"] = str(payment.amount)
            response = await control.post("/_sim/pay", json=body)
            now = clock_time(self._clock.now_ms())
            if response.status_code == httpx.codes.CREATED:
                out.line(f"{now}  #{payment.order_id} customer {payment.what}")
            else:
                out.line(f"{now}  #{payment.order_id} the banking app refused: {response.text}")

    async def _print_events(self, events: AsyncIterator[Event], out: DemoOutput) -> None:
        seen: set[int] = set()
        async for event in events:
            # Delivery is at least once: the relay may publish an event again after a crash.
            if event.outbox_id is not None:
                if event.outbox_id in seen:
                    continue
                seen.add(event.outbox_id)
            row = None
            if event.order_id is not None and event.topic == Topic.ORDER_STATUS_CHANGED:
                row = await asyncio.to_thread(
                    read_order, self._prepared.app.database, event.order_id
                )
            line = describe_event(event, row)
            if line is not None:
                out.line(line)


async def hand_to_customers(
    control: httpx.AsyncClient, orders: Sequence[DemoOrder]
) -> dict[int, float | None]:
    """Give the pay-later orders to the simulator's customers; their drawn delays (None: never
    pays), by order id."""
    delays: dict[int, float | None] = {}
    for order in orders:
        if order.kind is CustomerKind.PAY_LATER:
            response = await control.post("/_sim/customers", json={"qr": order.qr})
            if response.status_code != httpx.codes.CREATED:
                raise DemoError(f"the simulator refused order {order.id}: {response.text}")
            delays[order.id] = response.json()["delay_s"]
    return delays
