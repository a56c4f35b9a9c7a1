"""The demo's own rules: options, customers, amounts, the naive count, the port fallback and what
the screen shows. The run itself is tested end to end in tests/integration/test_demo.py."""

from __future__ import annotations

import random
import socket
from collections import Counter
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from rich.console import Console

from khqrpay.demo import (
    CATALOGUE,
    MIN_ORDERS,
    CustomerKind,
    DemoError,
    DemoLinks,
    DemoOptions,
    DemoOrder,
    DemoScreen,
    OrderRow,
    SimulatorEndpoint,
    Snapshot,
    banking_app_url,
    choose_port,
    customer_note,
    database_url,
    describe_delay,
    describe_event,
    draw_cart,
    draw_phone,
    load_secrets,
    plan_customers,
    render_dashboard,
    script_payments,
    serve_simulator,
    wrong_amount,
)
from khqrpay.events import Event
from khqrpay.money import Currency, Money
from khqrpay.orders.model import OrderStatus, normalize_phone
from khqrpay.simulator import SimulatorConfig

START_MS = 1_795_651_200_000
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkZW1vIn0.c2lnbmF0dXJl"
PASSWORD = "owner-password-1234"
USD = Currency.USD
KHR = Currency.KHR


def usd(text: str) -> Money:
    return Money.parse(text, USD)


def khr(text: str) -> Money:
    return Money.parse(text, KHR)


@pytest.mark.parametrize(
    ("changes", "option"),
    [
        ({"orders": MIN_ORDERS - 1}, "--orders"),
        ({"orders": 101}, "--orders"),
        ({"acceleration": 0.0}, "--acceleration"),
        ({"acceleration": float("inf")}, "--acceleration"),
        ({"duration_s": -1.0}, "--duration"),
        ({"duration_s": float("nan")}, "--duration"),
        ({"sim_port": 70_000}, "--sim-port"),
    ],
)
def test_options_refuse_what_cannot_work(changes: dict[str, float], option: str) -> None:
    with pytest.raises(DemoError, match=option):
        DemoOptions(**changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("count", [MIN_ORDERS, 12, 100])
def test_every_plan_has_each_kind_of_customer_and_leaves_the_last_order_to_you(
    count: int,
) -> None:
    kinds = plan_customers(count, random.Random(count))
    tally = Counter(kinds)
    assert len(kinds) == count
    assert kinds[-1] is CustomerKind.BY_HAND
    assert tally[CustomerKind.BY_HAND] == 1
    assert tally[CustomerKind.OLD_SCREENSHOT] == 1
    assert tally[CustomerKind.WRONG_AMOUNT] == max(1, count // 6)
    assert tally[CustomerKind.PAY_LATER] == count - 2 - max(1, count // 6)


def test_a_plan_is_repeatable_with_a_seed_and_refuses_too_few_orders() -> None:
    assert plan_customers(30, random.Random(5)) == plan_customers(30, random.Random(5))
    with pytest.raises(DemoError):
        plan_customers(MIN_ORDERS - 1, random.Random(1))


@pytest.mark.parametrize(
    ("total", "paid"),
    [
        (khr("12000"), khr("11000")),
        (khr("1000"), khr("2000")),
        (usd("2.75"), usd("2.25")),
        (usd("0.50"), usd("1.00")),
    ],
)
def test_a_wrong_amount_is_off_by_a_typing_slip_and_never_the_total(
    total: Money, paid: Money
) -> None:
    assert wrong_amount(total) == paid
    assert not wrong_amount(total).same_value(total)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(40, "40 s"), (720, "12 min"), (3.1 * 3600, "3.1 h"), (4.5 * 86_400, "4.5 days")],
)
def test_delays_are_told_in_the_unit_people_use(seconds: float, text: str) -> None:
    assert describe_delay(seconds) == text


def test_carts_hold_one_currency_and_phones_are_cambodian() -> None:
    rng = random.Random(7)
    prices = {item.sku: item.price for item in CATALOGUE}
    for _ in range(200):
        cart = draw_cart(rng)
        assert 1 <= len(cart) <= 3
        assert len({line.sku for line in cart}) == len(cart)
        assert len({prices[line.sku].currency for line in cart}) == 1
        phone = draw_phone(rng)
        if phone is not None:
            assert normalize_phone(phone).startswith("+855")


def test_the_port_in_use_is_replaced_by_a_free_one_with_a_note() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy_port = taken.getsockname()[1]
        port, note = choose_port(busy_port)
        assert port == 0
        assert note is not None
        assert f"port {busy_port} is taken" in note
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    assert choose_port(free_port) == (free_port, None)


def test_the_simulator_serves_on_the_port_asked_for() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    with serve_simulator(SimulatorConfig(), free_port) as endpoint:
        assert endpoint.port == free_port
        assert endpoint.url == f"http://127.0.0.1:{free_port}"
        assert endpoint.port_note is None


def test_the_banking_app_link_carries_the_whole_qr() -> None:
    qr = "00020101021229220018kampot_corner@aclb5204599953031165802KH5918Kampot Corner Cafe&x=1"
    url = banking_app_url("http://127.0.0.1:8700", qr)
    parts = urlsplit(url)
    assert parts.path == "/_sim/app"
    assert parse_qs(parts.query) == {"qr": [qr]}


def test_the_data_is_kept_and_reset_removes_only_the_demos_files(tmp_path: Path) -> None:
    names = [
        "khqrpay.sqlite3",
        "khqrpay.sqlite3-wal",
        "khqrpay.sqlite3-shm",
        "demo-secrets.json",
        "bakong-simulator.jsonl",
        "demo.log",
    ]
    for name in names:
        (tmp_path / name).write_text("old")
    (tmp_path / "notes.txt").write_text("keep me")
    url = database_url(tmp_path, reset=False)
    assert url == f"sqlite:///{(tmp_path / 'khqrpay.sqlite3').resolve()}"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([*names, "notes.txt"])
    assert database_url(tmp_path, reset=True) == url
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_secrets_are_made_once_owner_only_and_read_back(tmp_path: Path) -> None:
    made, new = load_secrets(tmp_path)
    assert new
    assert (tmp_path / "demo-secrets.json").stat().st_mode & 0o777 == 0o600
    again, new_again = load_secrets(tmp_path)
    assert (again, new_again) == (made, False)
    assert again.owner_password == made.owner_password
    assert made.owner_password not in repr(made)
    (tmp_path / "demo-secrets.json").write_text("{")
    with pytest.raises(DemoError, match="--reset"):
        load_secrets(tmp_path)


def test_the_links_are_three_lines_a_person_and_a_test_can_read() -> None:
    links = screen(order(1, CustomerKind.BY_HAND)).links
    assert links.lines() == [
        "Shop: http://127.0.0.1:8000/",
        f"Staff console: http://127.0.0.1:8000/admin (login owner, password {PASSWORD})",
        "Banking app: http://127.0.0.1:8700/_sim/app",
    ]
    assert PASSWORD not in repr(links)


LATTE = Money.parse("2.75", USD)


def order(order_id: int, kind: CustomerKind, total: Money = LATTE) -> DemoOrder:
    first_qr = f"first-qr-{order_id}" if kind is CustomerKind.OLD_SCREENSHOT else None
    return DemoOrder(order_id, total, "Iced latte", f"qr-{order_id}", kind, first_qr)


def test_the_script_pays_wrong_amounts_and_the_screenshot_after_the_new_code() -> None:
    orders = [
        order(1, CustomerKind.PAY_LATER),
        order(2, CustomerKind.WRONG_AMOUNT, khr("12000")),
        order(3, CustomerKind.OLD_SCREENSHOT),
        order(4, CustomerKind.BY_HAND),
    ]
    script = script_payments(orders, random.Random(3))
    assert [payment.at_s for payment in script] == sorted(payment.at_s for payment in script)
    assert {payment.order_id for payment in script} == {2, 3}
    (wrong,) = [payment for payment in script if payment.order_id == 2]
    assert (wrong.qr, wrong.amount) == ("qr-2", Decimal("11000"))
    new_code, screenshot = [payment for payment in script if payment.order_id == 3]
    assert (new_code.qr, screenshot.qr) == ("qr-3", "first-qr-3")
    assert new_code.at_s < screenshot.at_s
    assert new_code.amount is None
    assert screenshot.amount is None


def test_customer_notes_say_what_each_customer_does() -> None:
    assert customer_note(order(1, CustomerKind.PAY_LATER), 3 * 3600) == "pays after 3.0 h"
    assert customer_note(order(1, CustomerKind.PAY_LATER), None) == "never pays"
    wrong = order(2, CustomerKind.WRONG_AMOUNT, usd("4.50"))
    assert customer_note(wrong, None) == "pays $4.00 instead"
    assert "by hand" in customer_note(order(3, CustomerKind.BY_HAND), None)
    assert screen(order(1, CustomerKind.PAY_LATER)).note(9) == "bought in the shop"


def row(
    order_id: int,
    status: OrderStatus,
    *,
    created_ms: int = START_MS,
    paid_ms: int | None = None,
    found_ms: int | None = None,
    refund_flag: bool = False,
) -> OrderRow:
    return OrderRow(
        id=order_id,
        total=usd("2.75"),
        status=status,
        created_ms=created_ms,
        updated_ms=found_ms or created_ms,
        checks=3,
        refund_flag=refund_flag,
        review_reason=None,
        paid_ms=paid_ms,
        found_ms=found_ms,
    )


def snapshot(*rows: OrderRow, at_ms: int = START_MS + 120_000) -> Snapshot:
    return Snapshot(at_ms=at_ms, elapsed_s=120.0, orders=rows, bakong_calls=40, qr_checks=300)


def test_snapshot_totals_detection_and_naive_count() -> None:
    shot = snapshot(
        row(1, OrderStatus.COMPLETED, paid_ms=START_MS + 1_000, found_ms=START_MS + 3_000),
        row(2, OrderStatus.COMPLETED, paid_ms=START_MS + 70_000, found_ms=START_MS + 71_000),
        row(3, OrderStatus.NEEDS_REVIEW, paid_ms=START_MS + 4_000, found_ms=START_MS + 8_000),
        row(4, OrderStatus.PENDING),
        row(5, OrderStatus.COMPLETED, paid_ms=START_MS, found_ms=START_MS + 500, refund_flag=True),
    )
    assert shot.totals_line() == (
        "pending 1 · completed 3 · needs review 1 · expired 0 · refund flags ⚑ 1"
    )
    assert sorted(shot.detections_s) == [0.5, 1.0, 2.0, 4.0]
    assert "median 1.5 s, slowest 4.0 s (4 payments)" in shot.detection_line()
    # Naively: orders 1, 3 and 5 wait for the check at one minute (59, 56 and 60 s); order 2,
    # paid at 70 s, is found at its next 2 s check (0 s).
    assert "the naive schedule: median 57.5 s, slowest 60.0 s" in shot.detection_line()
    # Order 2 was found at 71 s (6 naive checks: 60, 62, ... 70 s); order 4 is still pending at
    # 120 s (31 checks: 60 ... 120 s); the others were found before the naive first check.
    assert shot.naive_requests == 6 + 31
    assert "Bakong calls 40" in shot.bakong_line()
    assert "would have made 37" in shot.bakong_line()


def screen(*orders: DemoOrder) -> DemoScreen:
    return DemoScreen(
        simulator=SimulatorEndpoint("http://127.0.0.1:8700", 8700, TOKEN),
        links=DemoLinks(
            shop="http://127.0.0.1:8000/",
            console="http://127.0.0.1:8000/admin",
            owner="owner",
            password=PASSWORD,
            banking_app="http://127.0.0.1:8700/_sim/app",
        ),
        database_url="sqlite:////tmp/demo data/khqrpay.sqlite3",
        acceleration=8640.0,
        initial_delay_s=5.0,
        fast_interval_s=2.0,
        fresh_window_s=30.0,
        duration_s=None,
        orders=orders,
        delays={1: 7200.0},
    )


def test_the_order_to_pay_by_hand_is_yours_while_pending_then_any_pending_one() -> None:
    shown = screen(
        order(1, CustomerKind.PAY_LATER),
        order(2, CustomerKind.WRONG_AMOUNT),
        order(3, CustomerKind.BY_HAND),
    )
    pending = OrderStatus.PENDING
    mine = shown.hand_order(snapshot(row(1, pending), row(2, pending), row(3, pending)))
    assert mine is not None
    assert mine.id == 3
    other = shown.hand_order(
        snapshot(row(1, OrderStatus.COMPLETED), row(2, pending), row(3, OrderStatus.COMPLETED))
    )
    assert other is not None
    assert other.id == 2
    assert shown.hand_order(snapshot(row(1, OrderStatus.COMPLETED))) is None


def test_the_dashboard_shows_orders_link_and_commands_but_never_the_token() -> None:
    shown = screen(order(1, CustomerKind.PAY_LATER), order(3, CustomerKind.BY_HAND))
    shot = snapshot(
        row(1, OrderStatus.COMPLETED, paid_ms=START_MS + 1_000, found_ms=START_MS + 2_500),
        row(3, OrderStatus.PENDING),
    )
    console = Console(record=True, width=160, force_terminal=True, color_system="truecolor")
    console.print(render_dashboard(shown, shot, console.width))
    text = console.export_text()
    html = console.export_html()
    assert "COMPLETED" in text
    assert "PENDING" in text
    assert "1.5 s" in text  # order 1: found 1.5 s after the payment
    assert "pays after 2.0 h" in text
    assert "Pay order #3 ($2.75) by hand" in text
    assert "KHQRPAY_DATABASE_URL='sqlite:////tmp/demo data/khqrpay.sqlite3'" in text
    assert "khqrpay orders show 3" in text
    assert "2:00" in text  # both orders are two minutes old
    assert "Iced latte" in text
    assert "Shop http://127.0.0.1:8000/" in text
    assert "Staff console http://127.0.0.1:8000/admin (login owner, password above)" in text
    assert TOKEN not in text
    assert TOKEN not in html
    assert PASSWORD not in text  # printed once above the dashboard, not kept on screen
    assert repr(shown.simulator).count(TOKEN) == 0


def test_a_narrow_dashboard_leaves_the_items_out_but_keeps_customer_and_status() -> None:
    shown = screen(order(1, CustomerKind.PAY_LATER), order(3, CustomerKind.BY_HAND))
    shot = snapshot(row(1, OrderStatus.COMPLETED, refund_flag=True), row(3, OrderStatus.PENDING))
    console = Console(record=True, width=80)
    console.print(render_dashboard(shown, shot, console.width))
    text = console.export_text()
    assert "Iced latte" not in text
    assert "pays after 2.0 h" in text
    assert "COMPLETED ⚑" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_events_become_one_line_each_and_others_are_skipped() -> None:
    completed = Event(
        "order.status_changed",
        7,
        {
            "order_id": 7,
            "at_ms": START_MS,
            "from": "PENDING",
            "to": "COMPLETED",
            "reason": None,
            "short_hash": "3f2a9c1b",
        },
        outbox_id=1,
    )
    found = row(7, OrderStatus.COMPLETED, paid_ms=START_MS - 2_000, found_ms=START_MS - 100)
    line = describe_event(completed, found)
    assert line is not None
    assert "#7 PENDING → COMPLETED · Bakong payment 3f2a9c1b" in line.plain
    assert "found 1.9 s after it was paid" in line.plain
    flagged = Event(
        "order.refund_flagged",
        7,
        {"order_id": 7, "at_ms": START_MS, "reason": "paid twice", "short_hash": "0badf00d"},
    )
    flagged_line = describe_event(flagged, None)
    assert flagged_line is not None
    assert "#7 refund flagged · Bakong payment 0badf00d · paid twice" in flagged_line.plain
    assert describe_event(Event("order.created", 7, {"order_id": 7}), None) is None


def test_once_nothing_is_pending_the_dashboard_says_so_instead_of_a_link() -> None:
    shown = screen(order(1, CustomerKind.PAY_LATER), order(3, CustomerKind.BY_HAND))
    shot = snapshot(row(1, OrderStatus.COMPLETED), row(3, OrderStatus.NEEDS_REVIEW))
    console = Console(record=True, width=120)
    console.print(render_dashboard(shown, shot, console.width))
    text = console.export_text()
    assert "No order is waiting for its payment any more." in text
    assert "by hand" not in text.split("╰")[0]  # the header panel


def test_a_damaged_simulator_journal_stops_the_demo_with_what_to_do(tmp_path: Path) -> None:
    journal = tmp_path / "bakong-simulator.jsonl"
    journal.write_text('{"hash": "ab')
    with (
        pytest.raises(DemoError, match=r"journal is damaged.*line 1.*--reset"),
        serve_simulator(SimulatorConfig(journal=journal), 0),
    ):
        pass
