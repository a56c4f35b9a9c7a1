"""`khqrpay worker` as a real process against a simulator and a test database (SQLite and
PostgreSQL): killed with SIGKILL mid-batch or inside the completion transaction and restarted,
nothing is lost or doubled; SIGTERM is a clean exit; metrics are served."""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from khqrpay import fault_points
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.model import OrderStatus
from khqrpay.simulator.server import RunningSimulator

if TYPE_CHECKING:
    from conftest import PaidOrders, StartWorker

ORDERS = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _set_faults(simulator: RunningSimulator, **faults: object) -> None:
    with httpx.Client(base_url=simulator.url) as http:
        assert http.post("/_sim/faults", json=faults).status_code == 200


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _leased(database: Database) -> int:
    with database.read() as uow:
        query = sa.select(sa.func.count()).where(t.khqr_payments.c.lease_owner.is_not(None))
        return int(uow.connection.execute(query).scalar_one())


def _statuses(database: Database) -> dict[str, int]:
    with database.read() as uow:
        rows = uow.connection.execute(
            sa.select(t.orders.c.status, sa.func.count()).group_by(t.orders.c.status)
        )
        return dict(rows.all())


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    database: Database,
    live_simulator: RunningSimulator,
    paid_orders: PaidOrders,
    start_worker: StartWorker,
) -> None:
    product_id, _orders = paid_orders(ORDERS)
    # Bakong answers slowly, so the kill lands while a claimed batch is being checked.
    _set_faults(live_simulator, latency_s=3.0)
    first = start_worker()
    _wait_for(lambda: _leased(database) > 0, 20, "the first worker to claim a batch")
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    assert _statuses(database) == {"PENDING": ORDERS}
    assert _leased(database) > 0  # its leases are left behind, to expire

    _set_faults(live_simulator)
    second = start_worker()
    _wait_for(lambda: _statuses(database) == {"COMPLETED": ORDERS}, 30, "every order completed")
    second.signal(signal.SIGTERM)
    assert second.wait(10) == 0, second.output()
    _assert_each_order_completed_once(database, product_id)


def _assert_each_order_completed_once(database: Database, product_id: int) -> None:
    with database.read() as uow:
        product = uow.products.get(product_id)
        completions = uow.connection.execute(
            sa.select(sa.func.count()).where(t.audit_log.c.action == "completed")
        ).scalar_one()
        evidence = uow.connection.execute(
            sa.select(sa.func.count(sa.distinct(t.payment_evidence.c.order_id)), sa.func.count())
        ).one()
    assert _statuses(database) == {"COMPLETED": ORDERS}
    assert product is not None
    assert product.stock == 5
    assert completions == ORDERS
    assert tuple(evidence) == (ORDERS, ORDERS)
    assert _leased(database) == 0


def _in_open_write_transaction(database: Database, database_url: str) -> bool:
    """Whether another connection holds an open write transaction: on PostgreSQL an order row is
    locked, on SQLite the write lock is taken."""
    if database.backend == "postgresql":
        with database.read() as uow:
            unlocked = uow.connection.execute(
                sa.select(sa.func.count()).select_from(
                    sa.select(t.orders.c.id).with_for_update(skip_locked=True).subquery()
                )
            ).scalar_one()
        return bool(unlocked < ORDERS)
    probe = sqlite3.connect(str(make_url(database_url).database), timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        return "locked" in str(exc)
    finally:
        probe.close()
    return False


def test_a_worker_killed_inside_the_completion_transaction_loses_nothing_and_doubles_nothing(
    database: Database,
    database_url: str,
    paid_orders: PaidOrders,
    start_worker: StartWorker,
) -> None:
    product_id, _orders = paid_orders(ORDERS)
    first = start_worker(
        env={fault_points.ENVIRONMENT_VARIABLE: fault_points.COMPLETION_BEFORE_COMMIT}
    )
    _wait_for(lambda: "fault point reached" in first.output(), 20, "the fault point")
    # Stopped with a completion's writes made and not committed: none of them is visible.
    assert _in_open_write_transaction(database, database_url)
    assert _statuses(database) == {"PENDING": ORDERS}
    with database.read() as uow:
        product = uow.products.get(product_id)
    assert product is not None
    assert product.stock == ORDERS + 5
    first.signal(signal.SIGKILL)
    assert first.wait(10) == -signal.SIGKILL
    _wait_for(
        lambda: not _in_open_write_transaction(database, database_url),
        10,
        "the killed worker's transaction to be rolled back",
    )

    second = start_worker()
    _wait_for(lambda: _statuses(database) == {"COMPLETED": ORDERS}, 30, "every order completed")
    second.signal(signal.SIGTERM)
    assert second.wait(10) == 0, second.output()
    _assert_each_order_completed_once(database, product_id)


def test_sigterm_during_a_bakong_call_exits_cleanly_and_releases_the_batch(
    database: Database,
    live_simulator: RunningSimulator,
    paid_orders: PaidOrders,
    start_worker: StartWorker,
) -> None:
    paid_orders(5)
    _set_faults(live_simulator, latency_s=30.0)  # a call that would outlast the grace
    worker = start_worker()
    _wait_for(lambda: _leased(database) > 0, 20, "the worker to claim a batch")
    asked = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0, worker.output()
    assert time.monotonic() - asked < 5
    assert _leased(database) == 0  # released for another worker, not left to expire
    assert _statuses(database) == {"PENDING": 5}
    assert "worker stopped" in worker.output()


def test_metrics_are_served_and_once_runs_one_cycle(
    database: Database, paid_orders: PaidOrders, start_worker: StartWorker
) -> None:
    paid_orders(3)
    port = _free_port()
    worker = start_worker("--metrics-port", str(port))

    def scrape() -> str:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except httpx.TransportError:
            return ""

    _wait_for(lambda: 'khqrpay_verifier_checks_total{outcome="paid"} 3.0' in scrape(), 20, "")
    # The sweep (with the gauge) runs on a task of its own, beside the first cycle.
    _wait_for(lambda: "khqrpay_pending_payments{" in scrape(), 20, worker.output())
    text = scrape()
    for name in (
        "khqrpay_verifier_batch_size_bucket",
        "khqrpay_detection_latency_seconds_count 3.0",
        'khqrpay_pending_payments{age_band="under_15m"}',
        "khqrpay_bakong_circuit_state 0.0",
        "khqrpay_worker_bakong_paused 0.0",
    ):
        assert name in text
    worker.signal(signal.SIGINT)
    assert worker.wait(10) == 0
    assert _statuses(database) == {OrderStatus.COMPLETED.value: 3}

    once = start_worker("--once")
    assert once.wait(30) == 0, once.output()
    assert "worker stopped" in once.output()


def test_the_worker_refuses_to_start_for_an_account_that_cannot_receive(
    worker_env: dict[str, str], start_worker: StartWorker
) -> None:
    # start_worker runs with this very env: the shop's account is one Bakong does not know.
    worker_env["KHQRPAY_MERCHANT_ACCOUNT"] = "closed_shop@devb"
    worker = start_worker()
    assert worker.wait(30) == 2, worker.output()
    assert "error: closed_shop@devb cannot receive payments" in worker.output()
    assert "Bakong does not know this account" in worker.output()
    assert "worker started" not in worker.output()
