"""Running the demo: the simulator and the web app on loopback, the database and what must outlive
a run under the data folder, the worker and the customers on one event loop, until Ctrl-C or the
duration ends."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import random
import secrets
import signal
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr
from rich.console import Console

from khqrpay.accounts import Role
from khqrpay.bakong import BakongMetrics
from khqrpay.bootstrap import App, BakongServices, bootstrap
from khqrpay.clock import Clock, SystemClock
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
    DemoLinks,
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
from khqrpay.services.accounts import create_user, list_users, set_password
from khqrpay.services.api_clients import create_api_key, list_api_keys, revoke_api_key
from khqrpay.services.maintenance import upgrade_database
from khqrpay.serving import serve_in_thread
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig
from khqrpay.simulator.server import run_simulator
from khqrpay.simulator.state import JournalDamaged
from khqrpay.web.app import create_web_app, end_live_streams
from khqrpay.worker import Worker

# A month of the pay-later pattern in five minutes: one day every ten seconds.
DEFAULT_ACCELERATION = 8640.0
DEFAULT_ORDERS = 12
DEFAULT_SIM_PORT = 8700
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = Path("data/demo")
MAX_ORDERS = 100
DATABASE_FILE = "khqrpay.sqlite3"
LOG_FILE = "demo.log"
# The owner's password and the web app's signing key, kept so later runs print the same password
# and browsers stay signed in; owner-only (0600), like any file holding a secret.
SECRETS_FILE = "demo-secrets.json"
# The simulator's transactions, so a restarted demo still knows which codes were paid.
SIMULATOR_JOURNAL = "bakong-simulator.jsonl"
OWNER = "owner"
API_CLIENT = "demo-customers"
ACTOR = "system"  # the demo sets itself up, as an install script would
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
    port: int = DEFAULT_PORT
    reset: bool = False

    def __post_init__(self) -> None:
        if not MIN_ORDERS <= self.orders <= MAX_ORDERS:
            raise DemoError(f"--orders must be between {MIN_ORDERS} and {MAX_ORDERS}")
        if not (math.isfinite(self.acceleration) and self.acceleration > 0):
            raise DemoError("--acceleration must be a positive number")
        if self.duration_s is not None and not (
            math.isfinite(self.duration_s) and self.duration_s > 0
        ):
            raise DemoError("--duration must be a positive number of seconds")
        for option, port in (("--sim-port", self.sim_port), ("--port", self.port)):
            if not 0 <= port <= 65535:
                raise DemoError(f"{option} must be between 0 (any free port) and 65535")


def choose_port(port: int, what: str = "another simulator?") -> tuple[int, str | None]:
    """`port` if it is free on 127.0.0.1, else 0 (a free one) with a note saying why."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise DemoError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
            return 0, f"port {port} is taken ({what}): using a free port instead"
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
    except JournalDamaged as exc:
        raise DemoError(f"the simulator's journal is damaged ({exc}): start with --reset") from exc
    except RuntimeError as exc:
        raise DemoError(str(exc)) from exc


@contextlib.contextmanager
def serve_web(app: App, port: int) -> Iterator[tuple[str, str | None]]:
    """The web app (shop, staff console, API) in a background thread on 127.0.0.1:`port` (or a
    free one if taken), until the block ends; its URL and the note when the port was taken. The
    demo's worker runs on the demo's event loop, so the web app runs none of its own."""
    chosen, note = choose_port(port, "another web server?")
    try:
        with serve_in_thread(
            create_web_app(app),
            name="the web app",
            port=chosen,
            on_stop=end_live_streams,
            own_log_handlers=False,
        ) as url:
            yield url, note
    except RuntimeError as exc:
        raise DemoError(str(exc)) from exc


def log_uvicorn_to(stream: TextIO) -> None:
    """uvicorn's own messages (e.g. a page's stream cut short at Ctrl-C) into the demo's log,
    never over the dashboard."""
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.handlers = [logging.StreamHandler(stream)]
    uvicorn_logger.propagate = False


def demo_files(data_dir: Path) -> list[Path]:
    """What the demo keeps in its data folder (only those are removed by --reset: the folder may
    be anything the user named)."""
    database = data_dir / DATABASE_FILE
    kept = [
        database.with_name(database.name + suffix) for suffix in ("", "-wal", "-shm", "-journal")
    ]
    return [*kept, data_dir / SECRETS_FILE, data_dir / SIMULATOR_JOURNAL, data_dir / LOG_FILE]


def database_url(data_dir: Path, *, reset: bool) -> str:
    """The demo database's URL; with `reset`, everything an earlier run left is removed first."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if reset:
        for path in demo_files(data_dir):
            path.unlink(missing_ok=True)
    return f"sqlite:///{(data_dir / DATABASE_FILE).resolve()}"


@dataclass(frozen=True)
class DemoSecrets:
    owner_password: str = field(repr=False)
    web_secret_key: str = field(repr=False)


def load_secrets(data_dir: Path) -> tuple[DemoSecrets, bool]:
    """The secrets an earlier run stored, or new ones stored now (owner-only); whether new."""
    path = data_dir / SECRETS_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        return DemoSecrets(stored["owner_password"], stored["web_secret_key"]), False
    except FileNotFoundError:
        pass
    except (ValueError, KeyError, TypeError) as exc:
        raise DemoError(f"{path} is damaged ({exc}): delete it, or start with --reset") from exc
    made = DemoSecrets(secrets.token_urlsafe(12), secrets.token_urlsafe(32))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(
            {"owner_password": made.owner_password, "web_secret_key": made.web_secret_key}, stream
        )
    return made, True


def ensure_owner(app: App, password: str, *, new_password: bool) -> None:
    """The owner account, made on the first run; given the stored password again only when the
    secrets file was made anew (setting it ends the owner's sessions)."""
    if not any(user.name == OWNER for user in list_users(app.database)):
        create_user(
            app.database,
            name=OWNER,
            role=Role.OWNER,
            password=password,
            clock=app.clock,
            actor=ACTOR,
        )
    elif new_password:
        set_password(app.database, OWNER, password=password, clock=app.clock, actor=ACTOR)


def customers_api_key(app: App) -> str:
    """A new key for the simulated customers; the one of an earlier run (its secret is not
    stored) is revoked."""
    if any(key.client == API_CLIENT and key.active for key in list_api_keys(app.database)):
        revoke_api_key(app.database, API_CLIENT, clock=app.clock, actor=ACTOR)
    return create_api_key(app.database, API_CLIENT, clock=app.clock, actor=ACTOR).secret


def demo_settings(
    database_url: str, simulator: SimulatorEndpoint, demo_secrets: DemoSecrets
) -> Settings:
    """The settings of the environment (schedule, worker figures), pointed at the demo shop,
    database and simulator; cookies over plain HTTP, as the demo serves on loopback."""
    return Settings(
        database_url=database_url,
        bakong_url=simulator.url,
        bakong_token=SecretStr(simulator.token),
        merchant_account=SHOP.account,
        merchant_name=SHOP.name,
        merchant_city=SHOP.city,
        web_secret_key=SecretStr(demo_secrets.web_secret_key),
        web_secure_cookies=False,
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
    links: DemoLinks
    api_key: str = field(repr=False)
    rng: random.Random
    log_path: Path


def run_demo(options: DemoOptions, console: Console) -> Snapshot:
    """Run the demo until Ctrl-C (or SIGTERM) or `options.duration_s`; the final snapshot.

    Everything is kept in `data_dir` between runs (`reset`: start from empty). Logs (structured,
    token redacted) go to `data_dir/demo.log`, so they never mix with the dashboard.
    """
    rng = random.Random(options.seed)  # noqa: S311 - a repeatable demo, not security
    clock: Clock = SystemClock()
    url = database_url(options.data_dir, reset=options.reset)
    demo_secrets, new_secrets = load_secrets(options.data_dir)
    log_path = (options.data_dir / LOG_FILE).resolve()
    simulator_config = SimulatorConfig(
        known_accounts=frozenset({SHOP.account}),
        seed=options.seed,
        acceleration=options.acceleration,
        journal=(options.data_dir / SIMULATOR_JOURNAL).resolve(),
        app_links=True,
    )
    with log_path.open("a", encoding="utf-8") as log_stream:
        configure_logging("INFO", stream=log_stream)
        with serve_simulator(simulator_config, options.sim_port) as simulator:
            # Once the simulator's uvicorn has set its loggers up (the web app's leaves them).
            log_uvicorn_to(log_stream)
            settings = demo_settings(url, simulator, demo_secrets)
            with bootstrap(settings, clock=clock, migrated=False) as app:
                upgrade_database(app.database)
                seed_catalogue(app.database, clock)
                ensure_owner(app, demo_secrets.owner_password, new_password=new_secrets)
                api_key = customers_api_key(app)
                with serve_web(app, options.port) as (web_url, web_note):
                    links = DemoLinks(
                        shop=f"{web_url}/",
                        console=f"{web_url}/admin",
                        owner=OWNER,
                        password=demo_secrets.owner_password,
                        banking_app=f"{simulator.url}/_sim/app",
                        port_notes=tuple(
                            note for note in (web_note, simulator.port_note) if note is not None
                        ),
                    )
                    prepared = _Prepared(options, app, simulator, links, api_key, rng, log_path)
                    return asyncio.run(DemoRun(prepared, console).run())


class DemoRun:
    """The event-loop part: customers, worker, event printer and dashboard, then the summary."""

    def __init__(self, prepared: _Prepared, console: Console) -> None:
        self._prepared = prepared
        self._clock = prepared.app.clock
        self._console = console
        self._started = time.monotonic()
        self._stop = asyncio.Event()
        self._started_ms = self._clock.now_ms()
        self._script: tuple[ScriptedPayment, ...] = ()
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
                httpx.AsyncClient(
                    base_url=prepared.links.shop,
                    headers={"authorization": f"Bearer {prepared.api_key}"},
                    timeout=CONTROL_TIMEOUT_S,
                ) as api,
            ):
                settings = prepared.app.settings
                kinds = plan_customers(prepared.options.orders, prepared.rng)
                orders = tuple(
                    await create_demo_orders(
                        api,
                        database=prepared.app.database,
                        settings=settings,
                        clock=self._clock,
                        kinds=kinds,
                        rng=prepared.rng,
                    )
                )
                self._script = tuple(script_payments(orders, prepared.rng))
                screen = DemoScreen(
                    simulator=prepared.simulator,
                    links=prepared.links,
                    database_url=settings.database_url,
                    acceleration=prepared.options.acceleration,
                    initial_delay_s=settings.schedule_initial_delay_s,
                    fast_interval_s=settings.schedule_fast_interval_s,
                    fresh_window_s=settings.schedule_fresh_window_s,
                    duration_s=prepared.options.duration_s,
                    orders=orders,
                    delays=await hand_to_customers(control, orders),
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
        rows = await asyncio.to_thread(
            read_orders, self._prepared.app.database, since_ms=self._started_ms
        )
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
        for payment in self._script:
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
