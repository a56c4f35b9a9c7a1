"""`khqrpay demo`: the whole thing working on one screen, on SQLite, with nothing to set up.

A Bakong simulator on loopback, a demo café with a small catalogue, orders made through the real
checkout service, pay-later customers (the simulator's, on the shops' reported pattern, their
delays compressed by `acceleration`), a few customers who get it wrong (wrong amount; an old
screenshot paid on top of the new code), and the real worker (verifier, expiry sweep, outbox
relay) in this process, on the real clock. Status changes come from the event bus; the dashboard
re-reads the database. Nothing here decides anything about payments: that is the engine's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import math
import random
import shlex
import signal
import socket
import statistics
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import SecretStr
from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from khqrpay.bakong import BakongClient, BakongMetrics
from khqrpay.clock import Clock, SystemClock
from khqrpay.db import Database, UnitOfWork, migrate
from khqrpay.events import Event, EventBus, create_event_bus
from khqrpay.logging import configure_logging
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest, OrderStatus, Topic
from khqrpay.orders.schedule import NaiveSchedule
from khqrpay.services.checkout import create_order, new_qr_for_order
from khqrpay.services.orders import list_orders, order_details
from khqrpay.services.products import add_product
from khqrpay.services.verification import BAKONG_UNAUTHORIZED_TOPIC
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig
from khqrpay.simulator.server import run_simulator
from khqrpay.worker import Worker

DAY_S = 24 * 3600
# A month of the pay-later pattern in five minutes: one day every ten seconds.
DEFAULT_ACCELERATION = 8640.0
DEFAULT_ORDERS = 12
DEFAULT_SIM_PORT = 8700
DEFAULT_DATA_DIR = Path("data/demo")
MIN_ORDERS = 4  # room for a pay-later customer, a wrong amount, an old screenshot and you
MAX_ORDERS = 100
DATABASE_FILE = "khqrpay.sqlite3"
LOG_FILE = "demo.log"


@dataclass(frozen=True, slots=True)
class DemoShop:
    account: str = "kampot_corner@aclb"
    name: str = "Kampot Corner Cafe"
    city: str = "Phnom Penh"


SHOP = DemoShop()
# The naive schedule shops described, to compare ours with (the schedule bench counts with it too).
NAIVE_SCHEDULE = NaiveSchedule()

SNAPSHOT_INTERVAL_S = 0.5
WIDE_SCREEN = 110  # columns from which the dashboard lists each order's items
PLAIN_TOTALS_INTERVAL_S = 10.0
SIMULATOR_STARTUP_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 10.0
# Real seconds after the start at which the scripted customers act (the pay-later ones follow the
# simulator's drawn delays instead): late enough to see the order pending, early enough that a
# twenty-second run detects them.
WRONG_AMOUNT_AT_S = (4.0, 9.0)
NEW_CODE_PAID_AT_S = (3.0, 5.0)
SCREENSHOT_PAID_AT_S = (8.0, 11.0)

STATUS_STYLE = {
    OrderStatus.PENDING: "yellow",
    OrderStatus.COMPLETED: "bold green",
    OrderStatus.NEEDS_REVIEW: "bold magenta",
    OrderStatus.EXPIRED: "dim",
    OrderStatus.CANCELLED: "dim",
    OrderStatus.REFUNDED: "cyan",
}


class DemoError(ValueError):
    """Demo options or set-up that cannot work; the message says why."""


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


# --- the shop ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    sku: str
    name: str
    price: Money
    stock: int


def _item(sku: str, name: str, price: str, currency: Currency, stock: int) -> CatalogueItem:
    return CatalogueItem(sku, name, Money.parse(price, currency), stock)


CATALOGUE: tuple[CatalogueItem, ...] = (
    _item("ICED-COFFEE", "Iced coffee with condensed milk", "6000", Currency.KHR, 300),
    _item("NUM-PANG", "Num pang pâté sandwich", "8000", Currency.KHR, 120),
    _item("NOM-BANH-CHOK", "Nom banh chok", "7000", Currency.KHR, 80),
    _item("SUGARCANE", "Fresh sugarcane juice", "3000", Currency.KHR, 200),
    _item("NUM-AKAO", "Num akao palm-sugar cake", "2000", Currency.KHR, 150),
    _item("ICED-LATTE", "Iced latte", "2.75", Currency.USD, 250),
    _item("AMOK-SET", "Fish amok lunch set", "4.50", Currency.USD, 60),
    _item("KAMPOT-PEPPER", "Kampot red pepper, 100 g", "6.50", Currency.USD, 40),
    _item("MONDULKIRI-BEANS", "Mondulkiri coffee beans, 250 g", "8.00", Currency.USD, 40),
    _item("KRAMA", "Cotton krama scarf", "5.00", Currency.USD, 30),
)
# Mobile prefixes of Cambodian operators (Cellcard, Smart, Metfone), for customers' phones.
PHONE_PREFIXES = ("012", "017", "077", "085", "089", "010", "015", "069", "070", "086", "097")


def draw_cart(rng: random.Random) -> list[LineRequest]:
    """One to three different products of one currency, one or two of each."""
    currency = rng.choice(list(Currency))
    products = [item for item in CATALOGUE if item.price.currency is currency]
    chosen = rng.sample(products, rng.randint(1, 3))
    return [LineRequest(item.sku, rng.randint(1, 2)) for item in chosen]


def draw_phone(rng: random.Random) -> str | None:
    """Most customers leave a phone number for the receipt; some do not."""
    if rng.random() < 0.3:
        return None
    return f"{rng.choice(PHONE_PREFIXES)} {rng.randrange(1000):03d} {rng.randrange(1000):03d}"


# --- the customers ----------------------------------------------------------------------------


class CustomerKind(enum.Enum):
    PAY_LATER = "pay_later"  # the simulator's customer: pays after a delay drawn from the pattern
    WRONG_AMOUNT = "wrong_amount"  # types a different amount into the banking app
    OLD_SCREENSHOT = "old_screenshot"  # pays the fresh code, then a screenshot of the first one
    BY_HAND = "by_hand"  # left for the person watching, through the banking-app page


def plan_customers(count: int, rng: random.Random) -> tuple[CustomerKind, ...]:
    """Who pays how: one order in six (at least one) pays the wrong amount, one pays twice from
    an old screenshot, one is left to pay by hand; the others are pay-later customers."""
    if count < MIN_ORDERS:
        raise DemoError(f"the demo needs at least {MIN_ORDERS} orders")
    wrong = max(1, count // 6)
    kinds = [CustomerKind.WRONG_AMOUNT] * wrong + [CustomerKind.OLD_SCREENSHOT]
    kinds += [CustomerKind.PAY_LATER] * (count - len(kinds) - 1)
    rng.shuffle(kinds)
    # The last order is yours: the banking-app link on screen stays the same all along.
    return (*kinds, CustomerKind.BY_HAND)


def wrong_amount(total: Money) -> Money:
    """What a customer who mistypes pays: 1,000 riel or 50 cents less (more if the total is
    smaller than that)."""
    step = Money.from_minor(1000 if total.currency is Currency.KHR else 50, total.currency)
    if total.minor > step.minor:
        return Money.from_minor(total.minor - step.minor, total.currency)
    return total + step


@dataclass(frozen=True, slots=True)
class DemoOrder:
    """An order the demo made, and what its customer does."""

    id: int
    total: Money
    items: str
    qr: str
    kind: CustomerKind
    # OLD_SCREENSHOT: the first code, whose screenshot the customer pays after the fresh one.
    first_qr: str | None = field(default=None, repr=False)


def describe_delay(seconds: float) -> str:
    """A pay-later delay for people: `40 s`, `12 min`, `3.1 h`, `4.5 days`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < DAY_S:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY_S:.1f} days"


def customer_note(order: DemoOrder, delay_s: float | None) -> str:
    """What this order's customer is going to do, in a few words."""
    match order.kind:
        case CustomerKind.PAY_LATER:
            return "never pays" if delay_s is None else f"pays after {describe_delay(delay_s)}"
        case CustomerKind.WRONG_AMOUNT:
            return f"pays {wrong_amount(order.total).display()} instead"
        case CustomerKind.OLD_SCREENSHOT:
            return "pays twice (old screenshot)"
        case CustomerKind.BY_HAND:
            return "you: pay it by hand"


# --- the simulator on loopback ----------------------------------------------------------------


@dataclass(frozen=True)
class SimulatorEndpoint:
    url: str
    port: int
    token: str = field(repr=False)
    # Set when the asked port was taken and another was picked.
    port_note: str | None = None


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


def banking_app_url(simulator_url: str, qr: str) -> str:
    return f"{simulator_url}/_sim/app?qr={quote(qr, safe='')}"


# --- the database ---------------------------------------------------------------------------


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


def seed_catalogue(database: Database, clock: Clock) -> None:
    with database.write() as uow:
        for item in CATALOGUE:
            add_product(
                uow,
                sku=item.sku,
                name=item.name,
                price=item.price,
                stock=item.stock,
                now_ms=clock.now_ms(),
            )


def create_demo_orders(
    database: Database,
    settings: Settings,
    clock: Clock,
    kinds: Sequence[CustomerKind],
    rng: random.Random,
) -> list[DemoOrder]:
    """One order per customer, each through the real checkout; the old-screenshot customer's
    order gets a second, fresh code (as when the payment page is reloaded)."""
    orders = []
    for kind in kinds:
        with database.write() as uow:
            created = create_order(
                uow, lines=draw_cart(rng), phone=draw_phone(rng), settings=settings, clock=clock
            )
            first_qr = None
            qr = created.payment.qr
            if kind is CustomerKind.OLD_SCREENSHOT:
                first_qr = qr
                qr = new_qr_for_order(
                    uow, order_id=created.order.id, settings=settings, clock=clock
                ).qr
        items = ", ".join(
            f"{line.name} ×{line.quantity}" if line.quantity > 1 else line.name
            for line in created.lines
        )
        orders.append(DemoOrder(created.order.id, created.order.total, items, qr, kind, first_qr))
    return orders


# --- what the dashboard shows -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: int
    total: Money
    status: OrderStatus
    created_ms: int
    updated_ms: int
    checks: int
    refund_flag: bool
    review_reason: str | None
    # The first payment found: when Bakong says it was made, and when the engine recorded it.
    paid_ms: int | None
    found_ms: int | None

    @property
    def detection_ms(self) -> int | None:
        if self.paid_ms is None or self.found_ms is None:
            return None
        return max(0, self.found_ms - self.paid_ms)


def _order_row(uow: UnitOfWork, order_id: int) -> OrderRow:
    details = order_details(uow, order_id)
    order = details.order
    first = min(details.evidence, key=lambda recorded: recorded.recorded_ms, default=None)
    return OrderRow(
        id=order.id,
        total=order.total,
        status=order.status,
        created_ms=order.created_ms,
        updated_ms=order.updated_ms,
        # The attempt totals count every check, the one that found the payment included.
        checks=sum(sum(uow.attempts.totals(p.id).values()) for p in details.payments),
        refund_flag=order.refund_flag,
        review_reason=order.review_reason,
        paid_ms=None if first is None else first.evidence.paid_ms,
        found_ms=None if first is None else first.recorded_ms,
    )


def read_orders(database: Database) -> tuple[OrderRow, ...]:
    """Every order with its checks and first payment, from one snapshot."""
    with database.read() as uow:
        orders = sorted(list_orders(uow), key=lambda order: order.id)
        return tuple(_order_row(uow, order.id) for order in orders)


def read_order(database: Database, order_id: int) -> OrderRow:
    with database.read() as uow:
        return _order_row(uow, order_id)


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


@dataclass(frozen=True, slots=True)
class Snapshot:
    at_ms: int
    elapsed_s: float
    orders: tuple[OrderRow, ...]
    bakong_calls: int
    qr_checks: int

    def count(self, status: OrderStatus) -> int:
        return sum(1 for row in self.orders if row.status is status)

    @property
    def refund_flags(self) -> int:
        return sum(1 for row in self.orders if row.refund_flag)

    @property
    def naive_requests(self) -> int:
        def end_ms(row: OrderRow) -> int:
            if row.found_ms is not None:
                return row.found_ms
            return self.at_ms if row.status is OrderStatus.PENDING else row.updated_ms

        return sum(
            NAIVE_SCHEDULE.checks(created_ms=row.created_ms, until_ms=end_ms(row))
            for row in self.orders
        )

    @property
    def detections_s(self) -> list[float]:
        return [row.detection_ms / 1000 for row in self.orders if row.detection_ms is not None]

    @property
    def naive_detections_s(self) -> list[float]:
        return [
            NAIVE_SCHEDULE.detection_ms(created_ms=row.created_ms, paid_ms=row.paid_ms) / 1000
            for row in self.orders
            if row.paid_ms is not None
        ]

    def totals_line(self) -> str:
        return (
            f"pending {self.count(OrderStatus.PENDING)} · "
            f"completed {self.count(OrderStatus.COMPLETED)} · "
            f"needs review {self.count(OrderStatus.NEEDS_REVIEW)} · "
            f"expired {self.count(OrderStatus.EXPIRED)} · "
            f"refund flags ⚑ {self.refund_flags}"
        )

    def bakong_line(self) -> str:
        return (
            f"Bakong calls {self.bakong_calls:,} (QR codes checked in them: {self.qr_checks:,}) · "
            f"the naive schedule (every order on its own every 2 s from 1 min) "
            f"would have made {self.naive_requests:,}"
        )

    def detection_line(self) -> str:
        found = self.detections_s
        if not found:
            return "no payment found yet"
        naive = self.naive_detections_s
        return (
            f"payment → found: median {statistics.median(found):.1f} s, "
            f"slowest {max(found):.1f} s ({len(found)} payment{'' if len(found) == 1 else 's'}); "
            f"the naive schedule: median {statistics.median(naive):.1f} s, "
            f"slowest {max(naive):.1f} s"
        )


def format_duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


@dataclass(frozen=True)
class DemoScreen:
    """What stays the same during a run: how to reach things, and what each customer does."""

    simulator: SimulatorEndpoint
    database_url: str
    acceleration: float
    initial_delay_s: float
    fast_interval_s: float
    duration_s: float | None
    orders: tuple[DemoOrder, ...]
    # The pay-later customers' drawn delays (None: never pays), by order id.
    delays: Mapping[int, float | None]

    def hand_order(self, snapshot: Snapshot) -> DemoOrder | None:
        """The order to pay by hand: yours while it is pending, otherwise any pending one."""
        pending = {row.id for row in snapshot.orders if row.status is OrderStatus.PENDING}
        candidates = sorted(
            (order for order in self.orders if order.id in pending),
            key=lambda order: (order.kind is not CustomerKind.BY_HAND, order.id),
        )
        return candidates[0] if candidates else None

    def note(self, order_id: int) -> str:
        order = next((order for order in self.orders if order.id == order_id), None)
        return "" if order is None else customer_note(order, self.delays.get(order_id))

    def orders_command(self, order_id: int) -> str:
        return (
            f"KHQRPAY_DATABASE_URL={shlex.quote(self.database_url)} khqrpay orders show {order_id}"
        )

    def pace_line(self) -> str:
        return (
            f"Customers pay on the shops' pay-later pattern {self.acceleration:,.0f}× faster "
            f"(1 day = {DAY_S / self.acceleration:.3g} s here). The engine runs in real time: "
            f"first check {self.initial_delay_s:g} s after checkout, then every "
            f"{self.fast_interval_s:g} s while an order is fresh."
        )


def render_dashboard(screen: DemoScreen, snapshot: Snapshot, width: int) -> RenderableType:
    """The live view: how to reach things, one row per order, the totals. Below `WIDE_SCREEN`
    columns the items are left out so that the customer and status stay readable."""
    header = Text()
    header.append("Bakong simulator ", style="bold")
    header.append(screen.simulator.url)
    header.append(f" · running {format_duration(snapshot.elapsed_s)}")
    if screen.duration_s is not None:
        header.append(f" of {format_duration(screen.duration_s)}")
    header.append(" · Ctrl-C stops\n", style="dim")
    header.append(screen.pace_line() + "\n", style="dim")
    hand = screen.hand_order(snapshot)
    if hand is not None:
        url = banking_app_url(screen.simulator.url, hand.qr)
        header.append(f"Pay order #{hand.id} ({hand.total.display()}) by hand: ", style="bold")
        header.append("open the banking app", style=f"underline link {url}")
        header.append(" (full link printed above)\n", style="dim")
        header.append("Look at it: ", style="bold")
        header.append(screen.orders_command(hand.id))
    else:
        header.append("No order is waiting for its payment any more.", style="bold")
    wide = width >= WIDE_SCREEN
    table = Table(box=box.SIMPLE_HEAD, expand=True, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    if wide:
        table.add_column("items", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("customer", ratio=2, min_width=20, no_wrap=True, overflow="ellipsis")
    table.add_column("status", no_wrap=True)
    table.add_column("age", justify="right", no_wrap=True)
    table.add_column("checks", justify="right", no_wrap=True)
    # From the payment (Bakong's time) to the engine recording it.
    table.add_column("found in", justify="right", no_wrap=True)
    items = {order.id: order.items for order in screen.orders}
    for row in snapshot.orders:
        status = Text(row.status.value, style=STATUS_STYLE[row.status])
        if row.refund_flag:
            status.append(" ⚑", style="bold red")
        detection = row.detection_ms
        table.add_row(
            str(row.id),
            *([items.get(row.id, "")] if wide else []),
            row.total.display(),
            screen.note(row.id),
            status,
            format_duration((snapshot.at_ms - row.created_ms) / 1000),
            str(row.checks),
            "" if detection is None else f"{detection / 1000:.1f} s",
        )
    totals = Text()
    totals.append(snapshot.totals_line() + "\n", style="bold")
    totals.append(snapshot.bakong_line() + "\n")
    totals.append(snapshot.detection_line())
    return Group(
        Panel(header, title=f"khqrpay demo · {SHOP.name}", title_align="left"),
        table,
        totals,
    )


# --- events -----------------------------------------------------------------------------------


def clock_time(ms: int) -> str:
    """Epoch ms as the local wall-clock time, for event lines."""
    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


def describe_event(event: Event, row: OrderRow | None) -> Text | None:
    """An event as one line for people, or None for events the demo does not show."""
    payload = event.payload
    at = clock_time(int(payload.get("at_ms", 0))) if payload.get("at_ms") else "--:--:--"
    line = Text(f"{at}  ")
    if event.topic == BAKONG_UNAUTHORIZED_TOPIC:
        line.append("Bakong refused the token: checks are paused", style="bold red")
        return line
    if event.topic == Topic.ORDER_STATUS_CHANGED:
        target = OrderStatus(str(payload.get("to")))
        line.append(f"#{event.order_id} {payload.get('from')} → ")
        line.append(target.value, style=STATUS_STYLE[target])
    elif event.topic == Topic.ORDER_REFUND_FLAGGED:
        line.append(f"#{event.order_id} refund flagged", style="bold red")
    else:
        return None
    if payload.get("short_hash"):
        line.append(f" · Bakong payment {payload['short_hash']}")
    if row is not None and row.detection_ms is not None and row.status is OrderStatus.COMPLETED:
        line.append(f" · found {row.detection_ms / 1000:.1f} s after it was paid")
    if payload.get("reason"):
        line.append(f" · {payload['reason']}", style="dim")
    return line


# --- output: a live dashboard on a terminal, plain lines otherwise -----------------------------


class DemoOutput:
    """Prints lines and keeps the dashboard current; plain lines when stdout is not a terminal."""

    def __init__(self, console: Console, screen: DemoScreen) -> None:
        self._console = console
        self._screen = screen
        self._live: Live | None = None
        self._next_totals_s = PLAIN_TOTALS_INTERVAL_S
        self._announced_hand: int | None = None

    def __enter__(self) -> DemoOutput:
        if self._console.is_terminal:
            self._live = Live(console=self._console, auto_refresh=False, transient=False)
            self._live.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._live is not None:
            self._live.stop()

    def line(self, text: Text | str) -> None:
        # Soft wrap: a long link stays one line that the terminal wraps, so it can be copied.
        self._console.print(text, soft_wrap=True, highlight=False)

    def update(self, snapshot: Snapshot) -> None:
        hand = self._screen.hand_order(snapshot)
        if hand is not None and hand.id != self._announced_hand:
            self._announced_hand = hand.id
            self.line(
                f"Pay order #{hand.id} ({hand.total.display()}) by hand in the banking app: "
                f"{banking_app_url(self._screen.simulator.url, hand.qr)}"
            )
        if self._live is not None:
            view = render_dashboard(self._screen, snapshot, self._console.width)
            self._live.update(view, refresh=True)
        elif snapshot.elapsed_s >= self._next_totals_s:
            self._next_totals_s += PLAIN_TOTALS_INTERVAL_S
            self.line(f"[{format_duration(snapshot.elapsed_s)}] {snapshot.totals_line()}")


def intro_lines(screen: DemoScreen, log_path: Path) -> list[str]:
    simulator = screen.simulator
    lines = [f"khqrpay demo: {SHOP.name} ({SHOP.account})"]
    if simulator.port_note:
        lines.append(f"Note: {simulator.port_note}")
    lines += [
        f"Bakong simulator: {simulator.url} (banking app: {simulator.url}/_sim/app)",
        f"Database: {screen.database_url} · log: {log_path}",
        screen.pace_line(),
        f"{len(screen.orders)} orders created; their customers:",
    ]
    for order in screen.orders:
        line = f"  #{order.id} {order.total.display()}: {screen.note(order.id)}"
        delay_s = screen.delays.get(order.id)
        if delay_s is not None:
            line += f" = {delay_s / screen.acceleration:.1f} s from now"
        lines.append(line)
    return lines


def summary_lines(screen: DemoScreen, snapshot: Snapshot) -> list[str]:
    return [
        f"Demo over after {format_duration(snapshot.elapsed_s)}: {len(snapshot.orders)} orders — "
        f"{snapshot.totals_line()}.",
        snapshot.bakong_line() + ".",
        snapshot.detection_line().capitalize() + ".",
        "Orders stay in the database: "
        f"KHQRPAY_DATABASE_URL={shlex.quote(screen.database_url)} khqrpay orders list",
    ]


# --- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptedPayment:
    """A payment the demo makes itself through `/_sim/pay`, `at_s` real seconds after the start."""

    at_s: float
    order_id: int
    qr: str = field(repr=False)
    amount: Decimal | None
    what: str


def script_payments(orders: Sequence[DemoOrder], rng: random.Random) -> list[ScriptedPayment]:
    """The wrong-amount and old-screenshot customers' payments, in time order."""
    script = []
    for order in orders:
        if order.kind is CustomerKind.WRONG_AMOUNT:
            paid = wrong_amount(order.total)
            what = f"pays {paid.display()} for a {order.total.display()} order"
            at_s = rng.uniform(*WRONG_AMOUNT_AT_S)
            script.append(ScriptedPayment(at_s, order.id, order.qr, paid.amount, what))
        elif order.kind is CustomerKind.OLD_SCREENSHOT:
            assert order.first_qr is not None
            new_at_s, old_at_s = (
                rng.uniform(*NEW_CODE_PAID_AT_S),
                rng.uniform(*SCREENSHOT_PAID_AT_S),
            )
            script += [
                ScriptedPayment(new_at_s, order.id, order.qr, None, "pays the new code"),
                ScriptedPayment(
                    old_at_s,
                    order.id,
                    order.first_qr,
                    None,
                    "pays again: a screenshot of the first",
                ),
            ]
    return sorted(script, key=lambda payment: payment.at_s)


@dataclass(frozen=True)
class _Prepared:
    """What `run_demo` sets up before the event loop starts."""

    options: DemoOptions
    settings: Settings
    database: Database
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
            database = Database.from_url(database_url)
            try:
                migrate.upgrade(database)
                seed_catalogue(database, clock)
                kinds = plan_customers(options.orders, rng)
                orders = tuple(create_demo_orders(database, settings, clock, kinds, rng))
                prepared = _Prepared(
                    options,
                    settings,
                    database,
                    simulator,
                    orders,
                    tuple(script_payments(orders, rng)),
                    log_path,
                )
                return asyncio.run(DemoRun(prepared, clock, console).run())
            finally:
                database.dispose()


class DemoRun:
    """The event-loop part: customers, worker, event printer and dashboard, then the summary."""

    def __init__(self, prepared: _Prepared, clock: Clock, console: Console) -> None:
        self._prepared = prepared
        self._clock = clock
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
        bus = create_event_bus(prepared.settings.database_url)
        try:
            async with (
                BakongClient(
                    settings=prepared.settings, clock=self._clock, metrics=self._metrics
                ) as client,
                httpx.AsyncClient(
                    base_url=prepared.simulator.url, timeout=CONTROL_TIMEOUT_S
                ) as control,
            ):
                screen = DemoScreen(
                    simulator=prepared.simulator,
                    database_url=prepared.settings.database_url,
                    acceleration=prepared.options.acceleration,
                    initial_delay_s=prepared.settings.schedule_initial_delay_s,
                    fast_interval_s=prepared.settings.schedule_fast_interval_s,
                    duration_s=prepared.options.duration_s,
                    orders=prepared.orders,
                    delays=await hand_to_customers(control, prepared.orders),
                )
                with DemoOutput(self._console, screen) as out:
                    for text in intro_lines(screen, prepared.log_path):
                        out.line(text)
                    final = await self._run_worker(client, control, bus, out)
                for text in summary_lines(screen, final):
                    out.line(text)
                return final
        finally:
            await bus.aclose()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def _run_worker(
        self, client: BakongClient, control: httpx.AsyncClient, bus: EventBus, out: DemoOutput
    ) -> Snapshot:
        prepared = self._prepared
        worker = Worker(
            settings=prepared.settings,
            database=prepared.database,
            client=client,
            bus=bus,
            clock=self._clock,
        )
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
        rows = await asyncio.to_thread(read_orders, self._prepared.database)
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
            if worker.done():
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
                row = await asyncio.to_thread(read_order, self._prepared.database, event.order_id)
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
