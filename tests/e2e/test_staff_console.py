"""The staff console in a real browser, on a real server (`serve_in_thread`) with the Bakong
simulator over HTTP. Two shops: a live one whose verifier worker runs as the web app's background
job (orders complete by themselves), and a quiet one with no worker (only staff find payments).

Screenshots of the dashboard, the orders list, an order page and the webhooks and Telegram pages,
phone (390x844) and desktop (1280x800), go to tests/e2e/screenshots/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pydantic import SecretStr

from helpers.receivers import FakeBotApi, WebhookReceiver, serve
from khqrpay.accounts import Role
from khqrpay.bootstrap import App
from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest, Product
from khqrpay.services.accounts import create_user
from khqrpay.services.checkout import CreatedOrder, create_order
from khqrpay.services.products import add_product
from khqrpay.serving import serve_in_thread
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.server import RunningSimulator
from khqrpay.web.app import create_web_app
from khqrpay.worker import run_worker

SCREENSHOTS = Path(__file__).parent / "screenshots"
SHOP_ACCOUNT = "kampot_corner@aclb"
OWNER = ("olivia", "owner-password-1")
STAFF = ("sam", "staff-password-1")
# A payment found by the worker shows within this long (checks every 0.5 s from 0.5 s old).
FOUND_MS = 15_000
DEVICES = pytest.mark.parametrize(
    ("device", "viewport"),
    [("phone", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 800})],
)
MENU = (
    ("ICED-COFFEE", "Iced coffee with milk", "1.50", "USD", 40),
    ("LIME-JUICE", "Fresh lime juice", "1.25", "USD", 30),
    ("NOM-BANH-CHOK", "Nom banh chok", "8000", "KHR", 20),
    ("MANGO-STICKY", "Mango sticky rice", "2.75", "USD", 12),
)


@dataclass
class Shop:
    url: str
    app: App
    products: dict[str, Product]
    simulator: RunningSimulator

    def order(self, *lines: tuple[str, int], phone: str | None = "012 345 678") -> CreatedOrder:
        return create_order(
            self.app.database,
            lines=[LineRequest(sku, quantity) for sku, quantity in lines],
            phone=phone,
            settings=self.app.settings,
            clock=self.app.clock,
        )

    def pay(self, qr: str, **overrides: str) -> dict[str, object]:
        """Pay a QR as a customer's banking app would (the simulator's control API)."""
        answer = httpx.post(f"{self.simulator.url}/_sim/pay", json={"qr": qr, **overrides})
        assert answer.status_code == 201, answer.text
        transaction: dict[str, object] = answer.json()["transaction"]
        return transaction


@pytest.fixture(scope="module")
def simulator() -> Iterator[RunningSimulator]:
    config = SimulatorConfig(seed=21, known_accounts=frozenset({SHOP_ACCOUNT}))
    with run_simulator(config) as running:
        yield running


@contextmanager
def _shop(
    folder: Path, simulator: RunningSimulator, *, worker: bool, **changes: Any
) -> Iterator[Shop]:
    database = Database.from_url(f"sqlite:///{folder / 'shop.sqlite3'}")
    migrate.upgrade(database)
    clock = SystemClock()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        merchant_account=SHOP_ACCOUNT,
        merchant_name="Kampot Corner Cafe",
        bakong_url=simulator.url,
        bakong_token=SecretStr(simulator.token),
        bakong_timeout_s=2.0,
        schedule_initial_delay_s=0.5,
        schedule_fast_interval_s=0.5,
        worker_poll_interval_s=0.2,
        web_secret_key=SecretStr("e2e-console-secret-0123456789"),
        web_secure_cookies=False,
        **changes,
    )
    app = App(settings=settings, database=database, clock=clock)
    for (name, password), role in ((OWNER, Role.OWNER), (STAFF, Role.STAFF)):
        create_user(database, name=name, role=role, password=password, clock=clock, actor="cli")
    products = {
        sku: add_product(
            database,
            sku=sku,
            name=name,
            price=Money(Decimal(price), Currency(currency)),
            stock=stock,
            now_ms=clock.now_ms(),
        )
        for sku, name, price, currency, stock in MENU
    }
    web = create_web_app(app, background=[run_worker] if worker else [])
    try:
        with serve_in_thread(web, name="staff console") as url:
            yield Shop(url, app, products, simulator)
    finally:
        database.dispose()


def _shop_fixture(*, worker: bool) -> Any:
    @pytest.fixture(scope="module")
    def shop(
        tmp_path_factory: pytest.TempPathFactory, simulator: RunningSimulator
    ) -> Iterator[Shop]:
        folder = tmp_path_factory.mktemp("shop-with-worker" if worker else "shop")
        with _shop(folder, simulator, worker=worker) as running:
            yield running

    return shop


# A shop whose worker finds payments by itself, and a quiet one where only staff find them.
live_shop = _shop_fixture(worker=True)
quiet_shop = _shop_fixture(worker=False)


def log_in(page: Page, shop: Shop, account: tuple[str, str], path: str = "/admin") -> None:
    page.goto(f"{shop.url}{path}")
    expect(page).to_have_url(re.compile(r"/admin/login"))
    page.get_by_label("User name").fill(account[0])
    page.get_by_label("Password").fill(account[1])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def status_badge(page: Page) -> object:
    return page.locator(".order-head .badge").first


def test_a_pending_order_turns_completed_by_itself_when_paid_in_the_banking_app(
    page: Page, live_shop: Shop
) -> None:
    created = live_shop.order(("ICED-COFFEE", 2))
    stock_before = live_shop.products["ICED-COFFEE"].stock
    log_in(page, live_shop, STAFF, f"/admin/orders/{created.order.id}")
    expect(page.locator(".order-head .badge").first).to_have_text("Pending")
    expect(page.locator("[data-sku=ICED-COFFEE]")).to_have_text(str(stock_before))

    bank = page.context.new_page()
    bank.goto(f"{live_shop.simulator.url}/_sim/app?qr={quote(created.payment.qr, safe='')}")
    bank.get_by_role("button", name="Pay").click()
    # The receipt is filled in when the simulator answers: read it once it is there.
    expect(bank.locator("#r-short")).to_have_text(re.compile(r"^[0-9a-f]{8}$"))
    short_hash = bank.locator("#r-short").inner_text()
    bank.close()

    # No reload: the page follows the order.
    expect(page.locator(".order-head .badge").first).to_have_text("Completed", timeout=FOUND_MS)
    expect(page.locator("#evidence .short-hash")).to_have_text(short_hash)
    expect(page.locator("[data-sku=ICED-COFFEE]")).to_have_text(str(stock_before - 2))
    expect(page.locator(".timeline")).to_contain_text("Paid: order completed")


def test_verify_instantly_finds_a_payment_the_worker_has_not_seen(
    page: Page, quiet_shop: Shop
) -> None:
    created = quiet_shop.order(("LIME-JUICE", 1))
    transaction = quiet_shop.pay(created.payment.qr)
    log_in(page, quiet_shop, STAFF, f"/admin/orders/{created.order.id}")
    expect(status_badge(page)).to_have_text("Pending")

    page.get_by_role("button", name="Verify Instantly").click()

    result = page.locator("#action-result")
    expect(result).to_contain_text("Paid. The order is now COMPLETED.")
    expect(result).to_contain_text(str(transaction["hash"])[:8])
    expect(status_badge(page)).to_have_text("Completed")
    expect(page.locator("#evidence .short-hash")).to_have_text(str(transaction["hash"])[:8])
    # Asked again, Verify Instantly says the order is paid already and changes nothing.
    page.get_by_role("button", name="Verify Instantly").click()
    expect(result).to_contain_text("Already paid: nothing to check.")


def test_mark_as_paid_with_a_reason_and_a_short_hash_shows_in_the_timeline(
    page: Page, quiet_shop: Shop
) -> None:
    created = quiet_shop.order(("MANGO-STICKY", 1), ("ICED-COFFEE", 1))
    short_hash = str(quiet_shop.pay(created.payment.qr)["hash"])[:8]
    log_in(page, quiet_shop, STAFF, f"/admin/orders/{created.order.id}")

    page.get_by_role("button", name="Mark as Paid").click()
    dialog = page.locator("#mark-paid-dialog")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Reason").fill("customer showed the ABA receipt at the counter")
    dialog.get_by_label("Bakong hash or short hash").fill(short_hash)
    dialog.get_by_role("button", name="Mark as Paid").click()

    expect(dialog).to_be_hidden()
    expect(page.locator("#action-result")).to_contain_text(short_hash)
    expect(status_badge(page)).to_have_text("Completed")
    timeline = page.locator(".timeline li").first
    expect(timeline).to_contain_text("customer showed the ABA receipt at the counter")
    expect(timeline).to_contain_text("sam")
    expect(timeline).to_contain_text("Mark as Paid")

    # Paid now: a second Mark as Paid is refused with the reason, inside the dialog.
    page.get_by_role("button", name="Mark as Paid").click()
    dialog.get_by_label("Reason").fill("again")
    dialog.get_by_role("button", name="Mark as Paid").click()
    expect(dialog.locator("[data-error]")).to_contain_text("COMPLETED")


def test_an_owner_resolves_a_short_payment_and_the_staff_page_follows(
    browser: Browser, live_shop: Shop
) -> None:
    created = live_shop.order(("NOM-BANH-CHOK", 2))  # 16,000 riel
    live_shop.pay(created.payment.qr, amount="12000")
    path = f"/admin/orders/{created.order.id}"
    with _context(browser) as owner_context, _context(browser) as staff_context:
        staff = staff_context.new_page()
        log_in(staff, live_shop, STAFF, path)
        owner = owner_context.new_page()
        log_in(owner, live_shop, OWNER, path)

        expect(status_badge(owner)).to_have_text("Needs review", timeout=FOUND_MS)
        review = owner.locator(".review")
        expect(review).to_contain_text("Short payment")
        expect(review).to_contain_text("16000 KHR")
        expect(staff.locator(".review")).to_contain_text("The owner decides")

        review.get_by_role("button", name="Accept payment").click()
        dialog = owner.locator("#accept-dialog")
        dialog.get_by_label("Reason").fill("the customer paid the other 4,000 riel in cash")
        dialog.get_by_role("button", name="Accept payment").click()

        expect(status_badge(owner)).to_have_text("Completed")
        # The staff member's page shows the owner's decision without a reload.
        expect(status_badge(staff)).to_have_text("Completed")
        expect(staff.locator(".timeline")).to_contain_text("other 4,000 riel in cash")


def test_the_dashboard_changes_live_while_orders_are_paid(page: Page, live_shop: Shop) -> None:
    log_in(page, live_shop, STAFF)
    pending = page.locator("[data-figure=pending]")
    before = int(pending.inner_text())
    orders = [live_shop.order(("LIME-JUICE", 1)) for _ in range(2)]
    # Both new orders appear by themselves (waiting for both: the page may show one first).
    waiting = before + len(orders)
    expect(pending).to_have_text(str(waiting), timeout=FOUND_MS)
    completed = page.locator("[data-status=COMPLETED]")
    done_before = int(completed.inner_text())

    for created in orders:
        live_shop.pay(created.payment.qr)

    expect(pending).to_have_text(str(waiting - 2), timeout=FOUND_MS)
    expect(completed).to_have_text(str(done_before + 2))
    expect(page.locator("[data-figure=takings]")).to_contain_text("$")


@contextmanager
def _context(browser: Browser, **options: object) -> Iterator[BrowserContext]:
    context = browser.new_context(locale="en-US", **options)  # type: ignore[arg-type]
    try:
        yield context
    finally:
        context.close()


def _busy_day(shop: Shop) -> int:
    """Orders in every state a shop sees in a day; the id of one worth a look (paid short)."""
    orders = [shop.order(("ICED-COFFEE", 1), ("LIME-JUICE", 2)) for _ in range(3)]
    orders += [shop.order(("NOM-BANH-CHOK", 1), phone=None) for _ in range(2)]
    for created in orders[:3]:
        shop.pay(created.payment.qr)
    short = shop.order(("MANGO-STICKY", 2), ("ICED-COFFEE", 1), phone="+855 97 765 4321")
    shop.pay(short.payment.qr, amount="5.00")
    return short.order.id


@DEVICES
def test_screenshots_of_the_console(
    browser: Browser, live_shop: Shop, device: str, viewport: dict[str, int]
) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    order_id = _busy_day(live_shop)
    with _context(browser, viewport=viewport) as context:
        page = context.new_page()
        log_in(page, live_shop, OWNER)
        expect(page.locator("[data-figure=needs-review]")).not_to_have_text("0", timeout=FOUND_MS)
        _assert_whole_menu_in_sight(page, viewport["width"])
        page.screenshot(path=SCREENSHOTS / f"dashboard-{device}.png", full_page=True)

        page.goto(f"{live_shop.url}/admin/orders")
        expect(page.locator("table.orders")).to_be_visible()
        page.screenshot(path=SCREENSHOTS / f"orders-{device}.png", full_page=True)

        page.goto(f"{live_shop.url}/admin/orders/{order_id}")
        expect(status_badge(page)).to_have_text("Needs review", timeout=FOUND_MS)
        page.get_by_role("button", name="Check Payment Status").click()
        expect(page.locator("#action-result")).to_contain_text("What Bakong says now")
        page.screenshot(path=SCREENSHOTS / f"order-{device}.png", full_page=True)


def _assert_whole_menu_in_sight(page: Page, width: int) -> None:
    """Every page of the owner's menu can be seen and tapped without scrolling sideways."""
    links = page.locator(".nav a")
    assert links.count() == 6
    for index in range(links.count()):
        box = links.nth(index).bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= width
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_the_console_speaks_khmer(browser: Browser, quiet_shop: Shop) -> None:
    created = quiet_shop.order(("NOM-BANH-CHOK", 2), phone=None)
    with _context(browser, viewport={"width": 390, "height": 844}) as context:
        page = context.new_page()
        log_in(page, quiet_shop, STAFF, f"/admin/orders/{created.order.id}")
        page.get_by_role("link", name="ខ្មែរ").click()
        expect(page.get_by_role("button", name="ផ្ទៀងផ្ទាត់ភ្លាមៗ")).to_be_visible()
        page.get_by_role("button", name="ពិនិត្យស្ថានភាពការបង់ប្រាក់").click()
        expect(page.locator("#action-result")).to_contain_text("អ្វីដែលបាគងប្រាប់ឥឡូវនេះ")
        page.screenshot(path=SCREENSHOTS / "order-phone-km.png", full_page=True)
        page.goto(f"{quiet_shop.url}/admin")
        expect(page.get_by_role("heading", level=1)).to_have_text("តាមដានការបញ្ជាទិញដែលកំពុងរង់ចាំ")
        page.screenshot(path=SCREENSHOTS / "dashboard-phone-km.png", full_page=True)


@DEVICES
def test_an_owner_gives_a_product_its_khmer_name(
    browser: Browser, quiet_shop: Shop, device: str, viewport: dict[str, int]
) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    khmer = "ទឹកក្រូចឆ្មាស្រស់" if device == "phone" else "ទឹកក្រូចឆ្មា"
    with _context(browser, viewport=viewport) as context:
        page = context.new_page()
        log_in(page, quiet_shop, OWNER, "/admin/products")
        row = page.locator("#product-LIME-JUICE")
        row.get_by_text("Change").click()
        row.get_by_label("Khmer name").fill(khmer)
        row.get_by_role("button", name="Save").click()
        expect(page.locator("#product-LIME-JUICE [lang=km]").first).to_have_text(khmer)
        page.locator("#product-LIME-JUICE").get_by_text("Change").click()
        expect(page.locator("#product-LIME-JUICE").get_by_label("Khmer name")).to_have_value(khmer)
        page.screenshot(path=SCREENSHOTS / f"products-edit-{device}.png", full_page=True)


BOT_TOKEN = "123456789:AAe2e-bot-token"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def screenshots(page: Page, name: str) -> None:
    """The page as it is, on a phone and on a desk."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for device, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        # From the top: the sticky menu would otherwise be drawn where the page was scrolled to.
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=SCREENSHOTS / f"{name}-{device}.png", full_page=True)


def _reload_until(page: Page, check: Any, timeout_ms: int = FOUND_MS) -> None:
    """Reload a page that does not follow changes by itself until `check()` holds."""
    for _ in range(timeout_ms // 250):
        if check():
            return
        page.wait_for_timeout(250)
        page.reload()
    assert check()


def test_an_owner_adds_a_webhook_sees_its_secret_once_and_replays_a_delivery(
    browser: Browser, live_shop: Shop
) -> None:
    receiver = WebhookReceiver()
    with serve(receiver) as receiver_url, _context(browser, viewport=PHONE) as context:
        page = context.new_page()
        log_in(page, live_shop, OWNER, "/admin/webhooks")
        page.get_by_label("Address (URL)").fill(f"{receiver_url}/khqr")
        page.get_by_label("Order paid and completed").check()
        page.get_by_label("Allow private addresses").check()
        page.get_by_role("button", name="Add endpoint").click()
        secret = page.locator("#webhook-secret")
        expect(secret).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/=]{32}$"))
        shown = secret.inner_text()
        screenshots(page, "webhook-added")
        page.get_by_role("link", name="Done").click()
        expect(page.locator(".endpoint-url").last).to_have_text(f"{receiver_url}/khqr")
        assert shown not in page.content()

        created = live_shop.order(("LIME-JUICE", 1))
        live_shop.pay(created.payment.qr)
        page.locator(".endpoint").last.get_by_role("link", name="Delivery log").click()
        row = page.locator("tr", has=page.locator(f'a[href="/admin/orders/{created.order.id}"]'))
        _reload_until(page, lambda: row.count() == 1 and "Delivered" in row.inner_text())
        expect(row.locator("[data-tries]")).to_have_text("1")
        (first,) = receiver.taken()
        assert first.json()["data"]["order"]["id"] == created.order.id
        screenshots(page, "webhook-deliveries")

        row.get_by_role("button", name="Replay").click()
        expect(page.locator(".notice.ok")).to_contain_text("will be sent again")
        _reload_until(page, lambda: row.locator("[data-tries]").inner_text() == "2")
        expect(row.locator(".badge")).to_have_text("Delivered")
        assert [r.body for r in receiver.taken()] == [first.body, first.body]
        assert {r.headers["webhook-id"] for r in receiver.taken()} == {first.headers["webhook-id"]}

        page.goto(f"{live_shop.url}/admin/webhooks")
        page.get_by_text("Add an endpoint").click()
        page.get_by_label("Address (URL)").fill("http://10.0.0.7/pos")
        page.get_by_label("Order placed").check()
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.locator("#add-error")).to_contain_text("10.0.0.7 is this computer")
        screenshots(page, "webhooks")


def test_the_telegram_page_shows_the_alerts_sent(
    browser: Browser, simulator: RunningSimulator, tmp_path: Path
) -> None:
    bot = FakeBotApi(token=BOT_TOKEN)
    with (
        serve(bot) as bot_url,
        _shop(
            tmp_path,
            simulator,
            worker=True,
            telegram_bot_token=SecretStr(BOT_TOKEN),
            telegram_chats="-1001234567890:km,-1009876543210:en",
            telegram_api_url=bot_url,
        ) as shop,
        _context(browser, viewport=PHONE) as context,
    ):
        created = shop.order(("ICED-COFFEE", 1))
        shop.pay(created.payment.qr)
        page = context.new_page()
        log_in(page, shop, OWNER, "/admin/telegram")
        rows = page.locator("table.alerts tbody tr")
        _reload_until(
            page, lambda: rows.count() == 2 and "Waiting" not in rows.all_inner_texts()[0]
        )
        expect(rows.first).to_contain_text("Payment received")
        expect(rows.first).to_contain_text("Delivered")
        assert BOT_TOKEN not in page.content()
        assert len(bot.sent) == 2
        screenshots(page, "telegram")
