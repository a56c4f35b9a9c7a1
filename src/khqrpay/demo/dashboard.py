"""The terminal: a live dashboard on a terminal (rich), plain lines otherwise; a line per event."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from khqrpay.demo.read_model import OrderRow, Snapshot
from khqrpay.demo.scenario import (
    DAY_S,
    SHOP,
    CustomerKind,
    DemoLinks,
    DemoOrder,
    SimulatorEndpoint,
    banking_app_url,
    customer_note,
)
from khqrpay.events import Event, EventError
from khqrpay.orders.events import BakongUnauthorized, OrderStatusChanged, RefundFlagged
from khqrpay.orders.model import OrderStatus

WIDE_SCREEN = 110  # columns from which the dashboard lists each order's items
PLAIN_TOTALS_INTERVAL_S = 10.0
STATUS_STYLE = {
    OrderStatus.PENDING: "yellow",
    OrderStatus.COMPLETED: "bold green",
    OrderStatus.NEEDS_REVIEW: "bold magenta",
    OrderStatus.EXPIRED: "dim",
    OrderStatus.CANCELLED: "dim",
    OrderStatus.REFUNDED: "cyan",
}


def format_duration(seconds: float) -> str:
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


@dataclass(frozen=True)
class DemoScreen:
    """What stays the same during a run: how to reach things, and what each customer does."""

    simulator: SimulatorEndpoint
    links: DemoLinks
    database_url: str
    acceleration: float
    initial_delay_s: float
    fast_interval_s: float
    fresh_window_s: float
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
        # Not one of the simulated customers: someone bought in the shop while the demo ran.
        if order is None:
            return "bought in the shop"
        return customer_note(order, self.delays.get(order_id))

    def orders_command(self, order_id: int) -> str:
        return (
            f"KHQRPAY_DATABASE_URL={shlex.quote(self.database_url)} khqrpay orders show {order_id}"
        )

    def pace_line(self) -> str:
        return (
            f"Customers pay on the shops' pay-later pattern {self.acceleration:,.0f}× faster "
            f"(1 day = {DAY_S / self.acceleration:.3g} s here). The engine runs in real time: "
            f"first check {self.initial_delay_s:g} s after checkout, then every "
            f"{self.fast_interval_s:g} s while an order is fresh ({self.fresh_window_s:g} s)."
        )


def render_dashboard(screen: DemoScreen, snapshot: Snapshot, width: int) -> RenderableType:
    """The live view: how to reach things, one row per order, the totals. Below `WIDE_SCREEN`
    columns the items are left out so that the customer and status stay readable."""
    header = Text()
    header.append("Shop ", style="bold")
    header.append(screen.links.shop)
    header.append(" · Staff console ", style="bold")
    header.append(f"{screen.links.console} (login {screen.links.owner}, password above)\n")
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


def clock_time(ms: int) -> str:
    """Epoch ms as the local wall-clock time, for event lines."""
    return datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S")


def describe_event(event: Event, row: OrderRow | None) -> Text | None:
    """An event as one line for people, or None for events the demo does not show (or cannot
    read)."""
    try:
        typed = event.typed()
    except EventError:
        return None
    line = Text(f"{clock_time(typed.at_ms)}  ")
    match typed:
        case BakongUnauthorized():
            line.append("Bakong refused the token: checks are paused", style="bold red")
            return line
        case OrderStatusChanged():
            line.append(f"#{typed.order_id} {typed.from_status} → ")
            line.append(typed.to_status.value, style=STATUS_STYLE[typed.to_status])
        case RefundFlagged():
            line.append(f"#{typed.order_id} refund flagged", style="bold red")
        case _:
            return None
    if typed.short_hash:
        line.append(f" · Bakong payment {typed.short_hash}")
    if row is not None and row.detection_ms is not None and row.status is OrderStatus.COMPLETED:
        line.append(f" · found {row.detection_ms / 1000:.1f} s after it was paid")
    if typed.reason:
        line.append(f" · {typed.reason}", style="dim")
    return line


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
    lines = [f"khqrpay demo: {SHOP.name} ({SHOP.account})"]
    lines += [f"Note: {note}" for note in screen.links.port_notes]
    lines += screen.links.lines()
    lines += [
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
