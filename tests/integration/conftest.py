"""Fixtures for the verifier, worker, manual-action, fault and event tests: a Bakong simulator on
a loopback port sharing the test's FakeClock, and the engine wired to it through the real client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from helpers.engine import engine_settings, new_staff_actions, new_verifier
from helpers.web import Web
from khqrpay.bakong import BakongClient
from khqrpay.bootstrap import App
from khqrpay.clock import FakeClock, SystemClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.events import InProcessEventBus
from khqrpay.money import Currency, Money
from khqrpay.orders.model import KhqrPayment, LineRequest, Order
from khqrpay.services.checkout import CreatedOrder, create_order
from khqrpay.services.manual import ManualActions
from khqrpay.services.products import add_product
from khqrpay.services.verification import Verifier
from khqrpay.serving import serve_in_thread
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.server import RunningSimulator
from khqrpay.worker import Worker

SIMULATOR_TOKEN = "simulator-test-token-0123456789"


@pytest.fixture
def simulator(clock: FakeClock) -> Iterator[RunningSimulator]:
    config = SimulatorConfig(token=SecretStr(SIMULATOR_TOKEN), seed=11)
    with run_simulator(config, clock=clock) as running:
        yield running


@pytest.fixture
def simulator_settings(settings: Settings, simulator: RunningSimulator) -> Settings:
    """The test's settings pointing at the simulator (`engine_settings`)."""
    return engine_settings(settings, simulator)


@dataclass
class Engine:
    """The engine against the simulator: pay QRs, run worker cycles, act as staff, read rows."""

    database: Database
    settings: Settings
    clock: FakeClock
    simulator: RunningSimulator
    client: BakongClient
    http: httpx.AsyncClient
    bus: InProcessEventBus

    def verifier(self, worker_id: str = "test-worker") -> Verifier:
        return new_verifier(self.database, self.client, self.settings, self.clock, worker_id)

    @property
    def app(self) -> App:
        return App(settings=self.settings, database=self.database, clock=self.clock)

    def worker(self, worker_id: str = "test-worker") -> Worker:
        return Worker(
            app=self.app,
            bakong=self.app.services_on(self.client),
            bus=self.bus,
            worker_id=worker_id,
        )

    def actions(self) -> ManualActions:
        return new_staff_actions(self.database, self.client, self.settings, self.clock)

    async def pay(self, qr: str, **overrides: Any) -> dict[str, Any]:
        """Pay a QR in the simulated banking app; the transaction as Bakong will show it."""
        body = {
            "qr": qr,
            **{k: str(v) if isinstance(v, Decimal) else v for k, v in overrides.items()},
        }
        response = await self.http.post("/_sim/pay", json=body)
        assert response.status_code == 201, response.text
        transaction: dict[str, Any] = response.json()["transaction"]
        return transaction

    async def faults(self, **faults: Any) -> None:
        response = await self.http.post("/_sim/faults", json={"seed": 5, **faults})
        assert response.status_code == 200, response.text

    def order(self, order_id: int) -> Order:
        with self.database.read() as uow:
            return uow.orders.get(order_id)

    def payments(self, order_id: int) -> list[KhqrPayment]:
        with self.database.read() as uow:
            return uow.payments.for_order(order_id)

    def count(self, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
        with self.database.read() as uow:
            return int(
                uow.connection.execute(
                    sa.select(sa.func.count()).select_from(table).where(*where)
                ).scalar_one()
            )

    def stock(self, product_id: int) -> int:
        with self.database.read() as uow:
            product = uow.products.get(product_id)
        assert product is not None
        return product.stock

    def audit_actions(self, order_id: int) -> list[str]:
        with self.database.read() as uow:
            return [entry.action for entry in uow.audit.for_order(order_id)]

    def evidence_count(self, order_id: int) -> int:
        return self.count(t.payment_evidence, t.payment_evidence.c.order_id == order_id)


@pytest.fixture
async def engine(
    database: Database,
    simulator_settings: Settings,
    clock: FakeClock,
    simulator: RunningSimulator,
) -> AsyncIterator[Engine]:
    # The client's own clock paces its rate limit and circuit breaker in real time; the engine
    # and the simulator share the test's FakeClock.
    async with (
        BakongClient(settings=simulator_settings, clock=SystemClock()) as client,
        httpx.AsyncClient(base_url=simulator.url, timeout=5) as http,
    ):
        yield Engine(
            database, simulator_settings, clock, simulator, client, http, InProcessEventBus()
        )


# --- the worker as a process, on the real clock ---------------------------------------------


@pytest.fixture
def live_simulator(settings: Settings) -> Iterator[RunningSimulator]:
    """A simulator on the real clock, as the worker process runs on it; it knows the shop's
    receiving account (the worker checks it at start-up)."""
    config = SimulatorConfig(
        token=SecretStr("worker-process-token-0123"),
        known_accounts=frozenset({settings.merchant_account}),
    )
    with run_simulator(config) as sim:
        yield sim


class WorkerProcess:
    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.log = cwd / f"worker-{time.monotonic_ns()}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "khqrpay.cli.worker", *args],
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def worker_env(
    database_url: str, live_simulator: RunningSimulator, settings: Settings
) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("KHQRPAY_")}
    return env | {
        "KHQRPAY_DATABASE_URL": database_url,
        "KHQRPAY_MERCHANT_ACCOUNT": settings.merchant_account,
        "KHQRPAY_BAKONG_URL": live_simulator.url,
        "KHQRPAY_BAKONG_TOKEN": live_simulator.token,
        "KHQRPAY_BAKONG_TIMEOUT_S": "10",
        "KHQRPAY_BAKONG_RATE_LIMIT_PER_S": "1000",
        "KHQRPAY_SCHEDULE_INITIAL_DELAY_S": "0",
        "KHQRPAY_WORKER_LEASE_S": "1",
        "KHQRPAY_WORKER_POLL_INTERVAL_S": "0.05",
        "KHQRPAY_WORKER_SHUTDOWN_GRACE_S": "1",
        "KHQRPAY_WORKER_BATCH_SIZE": "10",
    }


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[StartWorker]:
    """Starts `python -m khqrpay.cli.worker ARGS` with the env (plus `env`, e.g. a fault point);
    kills what is left at the end."""
    started: list[WorkerProcess] = []

    def start(*args: str, env: Mapping[str, str] | None = None) -> WorkerProcess:
        started.append(WorkerProcess(worker_env | dict(env or {}), tmp_path, *args))
        return started[-1]

    yield start
    for worker in started:
        worker.stop()


PaidOrders = Callable[[int], tuple[int, list[CreatedOrder]]]
StartWorker = Callable[..., "WorkerProcess"]


@pytest.fixture
def paid_orders(
    database: Database, settings: Settings, live_simulator: RunningSimulator
) -> PaidOrders:
    """Orders of one product, made on the real clock and paid in the live simulator: returns
    the product id and the orders."""
    return partial(_paid_orders, database, settings, live_simulator)


def _paid_orders(
    database: Database, settings: Settings, simulator: RunningSimulator, count: int
) -> tuple[int, list[CreatedOrder]]:
    clock = SystemClock()
    now_settings = settings.model_copy(update={"schedule_initial_delay_s": 0.0})
    product = add_product(
        database,
        sku="TEA-1",
        name="Tea",
        price=Money.parse("1.25", Currency.USD),
        stock=count + 5,
        now_ms=clock.now_ms(),
    )
    orders = []
    for _ in range(count):
        orders.append(
            create_order(
                database,
                lines=[LineRequest(product.sku, 1)],
                phone=None,
                settings=now_settings,
                clock=clock,
            )
        )
    with httpx.Client(base_url=simulator.url) as http:
        for created in orders:
            assert http.post("/_sim/pay", json={"qr": created.payment.qr}).status_code == 201
    return product.id, orders


# --- the web app over real HTTP --------------------------------------------------------------

WEB_SECRET = "web-test-secret-key-0123456789abcdef"


def web_settings(base: Settings, simulator: RunningSimulator, **changes: Any) -> Settings:
    return engine_settings(
        base,
        simulator,
        web_secure_cookies=False,
        web_secret_key=SecretStr(WEB_SECRET),
        **changes,
    )


@pytest.fixture
def web_changes() -> dict[str, Any]:
    """Settings a test module changes for its web app (override the fixture)."""
    return {}


@pytest.fixture
def web(
    database_url: str,
    database: Database,
    settings: Settings,
    clock: FakeClock,
    simulator: RunningSimulator,
    web_changes: dict[str, Any],
) -> Iterator[Web]:
    """The web app on the test's database and FakeClock, asking the simulator; no worker (tests
    complete orders themselves, e.g. by "I have paid")."""
    from khqrpay.web.app import create_web_app

    configured = web_settings(settings, simulator, database_url=database_url, **web_changes)
    app = App(settings=configured, database=database, clock=clock)
    with serve_in_thread(create_web_app(app), name="web-test") as url:
        yield Web(url, app, simulator)
