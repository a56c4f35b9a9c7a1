"""`khqrpay demo` end to end, as a person runs it: a subprocess with its own simulator, database
and worker. The plain run is read back from the demo's database; the terminal run goes through a
pseudo-terminal and is stopped with Ctrl-C."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections import Counter
from pathlib import Path

import pytest

from khqrpay.clock import FakeClock
from khqrpay.db import Database, migrate
from khqrpay.demo import CATALOGUE, DATABASE_FILE, LOG_FILE
from khqrpay.demo.scenario import seed_catalogue
from khqrpay.orders.model import OrderStatus
from khqrpay.services.orders import list_orders, order_details
from khqrpay.services.products import add_product, list_products

KHQRPAY = Path(sys.executable).with_name("khqrpay")
DURATION_S = 20
# The Bakong token the simulator issues is a JWT; none may ever reach the screen or the log.
JWT = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+")
ANSI = re.compile(r"\x1b\[")
# Control sequences (colours, cursor moves) and hyperlinks, to read what a terminal shows.
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\]8;[^\x1b]*\x1b\\")
# The intro's line per order: `  #3 22,000 ៛: pays after 6.6 h = 0.0 s from now`.
CUSTOMER_LINE = re.compile(r"^  #(\d+) [^:]+: (.+)$", re.MULTILINE)
FROM_NOW = re.compile(r"= ([\d.]+) s from now$")


def demo_env() -> dict[str, str]:
    """The caller's environment without any KHQRPAY_ setting, so the run is the demo's own."""
    return {key: value for key, value in os.environ.items() if not key.startswith("KHQRPAY_")}


def demo_command(data_dir: Path, *options: str) -> list[str]:
    return [
        str(KHQRPAY),
        "demo",
        "--port",
        "0",
        "--sim-port",
        "0",
        "--data-dir",
        str(data_dir),
        *options,
    ]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert JWT.search(text) is None
        assert "Bearer" not in text


@pytest.fixture(scope="module")
def plain_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One demo run with stdout a pipe: 10 orders, customers a million times faster, 20 s."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    started = time.monotonic()
    result = subprocess.run(
        demo_command(
            data_dir,
            "--duration",
            str(DURATION_S),
            "--acceleration",
            "1000000",
            "--orders",
            "10",
            "--seed",
            "1",
        ),
        env=demo_env(),
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=DURATION_S + 25,
        check=False,
    )
    assert time.monotonic() - started < DURATION_S + 15
    return result, data_dir


def test_the_demo_runs_for_its_duration_and_exits_cleanly_with_a_summary(
    plain_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, data_dir = plain_run
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "Demo over after 0:2" in out
    assert ANSI.search(out) is None  # not a terminal: plain lines, no dashboard
    assert "→ COMPLETED" in out
    assert "→ NEEDS_REVIEW" in out
    assert "refund flagged" in out
    assert re.search(r"Bakong calls [1-9]", out)
    assert "/_sim/app?qr=000201" in out
    assert f"KHQRPAY_DATABASE_URL=sqlite:///{(data_dir / DATABASE_FILE).resolve()}" in out
    assert_no_secret(out, result.stderr, (data_dir / LOG_FILE).read_text())


def test_each_customer_left_the_order_in_the_state_the_engine_must_reach(
    plain_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, data_dir = plain_run
    customers = {int(number): what for number, what in CUSTOMER_LINE.findall(result.stdout)}
    assert sorted(customers) == list(range(1, 11))
    database = Database.from_url(f"sqlite:///{data_dir / DATABASE_FILE}")
    try:
        migrate.require_current(database)
        with database.read() as uow:
            orders = {
                order.id: order_details(database, order.id) for order in list_orders(database)
            }
            stock = {product.sku: product.stock for product in uow.products.list_all()}
    finally:
        database.dispose()
    assert sorted(orders) == sorted(customers)

    kinds = Counter[str]()
    for order_id, what in customers.items():
        details = orders[order_id]
        order = details.order
        if what.startswith("pays after"):
            kinds["pay later"] += 1
            from_now = FROM_NOW.search(what)
            assert from_now is not None
            # Paid within the run's first seconds: found by a check well before its end.
            assert float(from_now.group(1)) < DURATION_S - 10
            assert order.status is OrderStatus.COMPLETED, (order_id, what)
            assert [e.matched for e in details.evidence] == [True]
        elif what.endswith("instead"):
            kinds["wrong amount"] += 1
            assert order.status is OrderStatus.NEEDS_REVIEW
            assert order.review_reason is not None
            assert "amount mismatch" in order.review_reason
            assert [e.matched for e in details.evidence] == [False]
        elif what.startswith("pays twice"):
            kinds["old screenshot"] += 1
            assert order.status is OrderStatus.COMPLETED
            assert order.refund_flag
            assert len(details.payments) == 2
            assert len(details.evidence) == 2
        else:
            kinds["no payment"] += 1
            assert what in ("never pays", "you: pay it by hand")
            assert order.status is OrderStatus.PENDING
            assert details.evidence == ()
    assert kinds["pay later"] >= 5
    assert kinds["wrong amount"] >= 1
    assert kinds["old screenshot"] == 1

    # Stock was taken exactly for the completed orders.
    taken = Counter[str]()
    for details in orders.values():
        if details.order.status is OrderStatus.COMPLETED:
            for line in details.lines:
                taken[line.sku] += line.quantity
    assert stock == {item.sku: item.stock - taken[item.sku] for item in CATALOGUE}
    completed = sum(d.order.status is OrderStatus.COMPLETED for d in orders.values())
    assert f"completed {completed} ·" in result.stdout.split("Demo over after")[1]


def read_until(fd: int, process: subprocess.Popen[bytes], marker: bytes, timeout_s: float) -> bytes:
    """What the pseudo-terminal shows until `marker` appears (or the process ends)."""
    seen = b""
    deadline = time.monotonic() + timeout_s
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # the process closed the terminal
                break
        elif process.poll() is not None:
            break
    return seen


def test_on_a_terminal_the_dashboard_runs_until_ctrl_c(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        demo_command(tmp_path / "data", "--acceleration", "1000000", "--orders", "4"),
        env=demo_env() | {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"},
        cwd=tmp_path,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    try:
        # Wait until the engine has completed an order, then press Ctrl-C.
        shown = read_until(controller, process, b"COMPLETED", timeout_s=20)
        process.send_signal(signal.SIGINT)
        shown += read_until(controller, process, b"khqrpay orders list", timeout_s=15)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        os.close(controller)
    screen = shown.decode(errors="replace")
    assert ANSI.search(screen) is not None  # a terminal: the live dashboard, in colour
    visible = ESCAPES.sub("", screen)
    assert "khqrpay demo · Kampot Corner Cafe" in visible
    assert re.search(r"#\s+items\s+amount\s+customer\s+status\s+age\s+checks\s+found in", visible)
    assert "Ctrl-C stops" in visible
    assert "Demo over after" in visible
    assert_no_secret(screen, (tmp_path / "data" / LOG_FILE).read_text())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_seeding_again_splits_the_old_joined_names_and_keeps_staff_changes(
    database: Database,
) -> None:
    clock = FakeClock()
    coffee, latte = CATALOGUE[0], CATALOGUE[6]
    for item, name in ((coffee, coffee.old_name), (latte, "Latte by staff")):
        add_product(
            database,
            sku=item.sku,
            name=name,
            price=item.price,
            stock=item.stock,
            now_ms=clock.now_ms(),
        )
    assert seed_catalogue(database, clock) == len(CATALOGUE) - 2
    names = {p.sku: (p.name, p.name_km) for p in list_products(database)}
    assert names[coffee.sku] == (coffee.english, coffee.khmer)
    assert names[latte.sku] == ("Latte by staff", None)
    assert names[CATALOGUE[1].sku] == (CATALOGUE[1].english, CATALOGUE[1].khmer)
    assert all(name_km for sku, (_, name_km) in names.items() if sku != latte.sku)
    kept = list_products(database)
    assert seed_catalogue(database, clock) == 0
    assert list_products(database) == kept
