"""The customer's whole flow in a real browser, on phone and desktop, in English and Khmer: the
shop served over HTTP with the verifier worker running beside it and the Bakong simulator.

Add to cart → checkout → the payment page → Download QR (the PNG decodes to the order's KHQR) →
pay that code in the simulator's banking-app page → the page turns into the receipt by itself,
within a second of the completion, without a reload. Pay later → My orders → paid later → the
list shows it paid by itself. Screenshots of every page go to tests/e2e/screenshots/.
"""

from __future__ import annotations

import io
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import pytest
import zxingcpp
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pydantic import SecretStr

from khqrpay.bootstrap import App
from khqrpay.clock import SystemClock
from khqrpay.db import Database, migrate
from khqrpay.money import Currency, Money
from khqrpay.orders.model import Order
from khqrpay.services.products import add_product
from khqrpay.serving import serve_in_thread
from khqrpay.settings import Settings
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.web.app import create_web_app
from khqrpay.worker import run_worker

SCREENSHOTS = Path(__file__).parent / "screenshots"
MERCHANT_ACCOUNT = "kampot_corner@aclb"
VIEWPORTS = {
    "phone": {"width": 390, "height": 844},
    "desktop": {"width": 1280, "height": 800},
}
# SKU, English name, Khmer name (the croissant has none: Khmer readers see the English).
PRODUCTS = [
    ("LATTE", "Iced latte", "ឡាតេទឹកកក", "2.50", "USD", 40),
    ("AMERICANO", "Americano", "អាមេរិកាណូ", "1.75", "USD", 3),
    ("CROISSANT", "Butter croissant", None, "2.00", "USD", 15),
    ("TEA", "Lemon tea", "តែក្រូចឆ្មា", "1.25", "USD", 0),
    ("NUM-PANG", "Num pang", "នំបុ័ង", "6000", "KHR", 12),
    ("MANGO", "Mango sticky rice", "បាយដំណើបស្វាយ", "8000", "KHR", 8),
]


@dataclass
class LiveShop:
    url: str
    simulator_url: str
    database: Database

    def order(self, token: str) -> Order:
        with self.database.read() as uow:
            return uow.orders.by_token(token)


@pytest.fixture(scope="module")
def live_shop() -> Iterator[LiveShop]:
    """The shop on SQLite with the worker in its process (as `khqrpay serve` runs it), checking
    the simulator on the fast schedule of a customer watching; secure cookies as in production
    (browsers keep them on http://127.0.0.1)."""
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'shop.sqlite3'}"
        database = Database.from_url(url)
        migrate.upgrade(database)
        clock = SystemClock()
        for sku, name, name_km, price, currency, stock in PRODUCTS:
            add_product(
                database,
                sku=sku,
                name=name,
                name_km=name_km,
                price=Money(Decimal(price), Currency(currency)),
                stock=stock,
                now_ms=clock.now_ms(),
            )
        config = SimulatorConfig(
            token=SecretStr("e2e-simulator-token-0123"),
            known_accounts=frozenset({MERCHANT_ACCOUNT}),
        )
        with run_simulator(config) as simulator:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                database_url=url,
                bakong_url=simulator.url,
                bakong_token=SecretStr(simulator.token),
                merchant_account=MERCHANT_ACCOUNT,
                merchant_name="Kampot Corner Cafe",
                web_secret_key=SecretStr("e2e-secret-key-0123456789abcdef"),
                schedule_initial_delay_s=0,
                schedule_fast_interval_s=0.5,
                worker_poll_interval_s=0.1,
            )
            app = App(settings=settings, database=database, clock=clock)
            web = create_web_app(app, background=[run_worker])
            with serve_in_thread(web, name="e2e-shop") as base:
                yield LiveShop(base, simulator.url, database)
        database.dispose()


@pytest.fixture(params=list(VIEWPORTS))
def viewport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def context(browser: Browser, viewport: str) -> Iterator[BrowserContext]:
    opened = browser.new_context(
        viewport=VIEWPORTS[viewport],  # type: ignore[arg-type]
        device_scale_factor=2 if viewport == "phone" else 1,
        is_mobile=viewport == "phone",
        has_touch=viewport == "phone",
        locale="en-US",
        accept_downloads=True,
    )
    yield opened
    opened.close()


def _shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _token(page: Page) -> str:
    match = re.search(r"/pay/([A-Za-z0-9_-]{32})", page.url)
    assert match, page.url
    return match.group(1)


def _download_qr(page: Page) -> str:
    """Download QR, as a customer saving the code; what a banking app reads from it."""
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download QR|ទាញយក QR")).first.click()
    path = download.value.path()
    assert download.value.suggested_filename.endswith(".png")
    (decoded,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(Path(path).read_bytes())))
    return decoded.text


def _pay_in_banking_app(context: BrowserContext, shop: LiveShop, qr: str) -> None:
    """The customer pays the saved code in their banking app (the simulator's page)."""
    app = context.new_page()
    app.goto(f"{shop.simulator_url}/_sim/app?qr={quote(qr, safe='')}")
    app.get_by_role("button", name="Pay").click()
    expect(app.locator("#receipt")).to_be_visible()
    app.close()


def _fill_cart(page: Page, shop: LiveShop) -> None:
    """A croissant and an iced latte, added without leaving the catalogue."""
    page.goto(shop.url)
    for sku in ("CROISSANT", "LATTE"):
        page.locator(f"form[data-add-to-cart]:has(input[value='{sku}']) button").click()
        expect(page.locator(f"[data-in-cart='{sku}']")).to_be_visible()
    expect(page.locator(".cart-link .count")).to_have_text("2")


def test_a_customer_pays_and_the_page_turns_into_the_receipt_by_itself(
    context: BrowserContext, live_shop: LiveShop, viewport: str
) -> None:
    page = context.new_page()
    page.goto(live_shop.url)
    expect(page.get_by_role("heading", level=1)).to_have_text("Kampot Corner Cafe")
    _shot(page, f"en-{viewport}-1-catalogue")
    _fill_cart(page, live_shop)
    page.get_by_role("link", name=re.compile("Cart")).click()
    expect(page.get_by_role("heading", name="Your cart")).to_be_visible()
    page.get_by_label("Your name").fill("Sokha")
    page.get_by_label("Phone number").fill("012 345 678")
    _shot(page, f"en-{viewport}-2-cart")
    page.get_by_role("button", name=re.compile("KHQR Payment")).click()

    expect(page.get_by_role("heading", name="Scan to pay")).to_be_visible()
    expect(page.locator(".khqr-amount")).to_contain_text("4.50")
    token = _token(page)
    assert page.url.endswith(f"/pay/{token}")  # the order's unguessable token, not its number
    _shot(page, f"en-{viewport}-3-pay")
    qr = _download_qr(page)
    with live_shop.database.read() as uow:
        assert qr == uow.payments.for_order(live_shop.order(token).id)[0].qr

    page.evaluate("window.stillTheSamePage = true")
    _pay_in_banking_app(context, live_shop, qr)
    expect(page.get_by_role("heading", name="Payment received")).to_be_visible(timeout=15_000)
    assert page.evaluate("window.stillTheSamePage") is True  # no reload
    order = live_shop.order(token)
    assert order.completed_ms is not None
    shown_ms = int(page.locator("[data-live-order]").get_attribute("data-changed-at") or 0)
    assert 0 <= shown_ms - order.completed_ms < 1000, "the receipt came more than 1 s late"
    expect(page.locator(".receipt-amount")).to_have_text("$4.50")
    _shot(page, f"en-{viewport}-4-paid")


def test_pay_later_then_my_orders_shows_it_paid_by_itself(
    context: BrowserContext, live_shop: LiveShop, viewport: str
) -> None:
    page = context.new_page()
    _fill_cart(page, live_shop)
    page.goto(f"{live_shop.url}/cart")
    page.get_by_role("button", name=re.compile("KHQR Payment")).click()
    token = _token(page)
    page.get_by_role("link", name="Pay later").click()
    expect(page.get_by_role("heading", name="Your order is saved")).to_be_visible()
    _shot(page, f"en-{viewport}-5-later")
    qr = _download_qr(page)

    page.get_by_role("link", name="My orders").first.click()
    item = page.locator(f"li.order-item:has(a[href='/pay/{token}'])")
    expect(item.locator("[data-status-badge]")).to_have_text("Waiting for payment")
    _shot(page, f"en-{viewport}-6-orders-pending")
    page.evaluate("window.stillTheSamePage = true")
    _pay_in_banking_app(context, live_shop, qr)
    expect(item.locator("[data-status-badge]")).to_have_text("Paid", timeout=15_000)
    assert page.evaluate("window.stillTheSamePage") is True
    _shot(page, f"en-{viewport}-7-orders-paid")


def test_the_shop_switches_to_khmer_and_stays_in_khmer(
    context: BrowserContext, live_shop: LiveShop, viewport: str
) -> None:
    page = context.new_page()
    page.goto(live_shop.url)
    page.get_by_role("link", name="ខ្មែរ").click()
    expect(page.locator("html")).to_have_attribute("lang", "km")
    expect(page.get_by_role("link", name="កន្ត្រក")).to_be_visible()
    expect(page.get_by_role("heading", name="ឡាតេទឹកកក")).to_be_visible()
    expect(page.get_by_role("heading", name="Butter croissant")).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("Iced latte")
    _shot(page, f"km-{viewport}-1-catalogue")
    _fill_cart(page, live_shop)
    page.goto(f"{live_shop.url}/cart")  # the choice is remembered
    expect(page.get_by_role("heading", name="កន្ត្រករបស់អ្នក")).to_be_visible()
    expect(page.locator("main")).to_contain_text("ឡាតេទឹកកក")
    _shot(page, f"km-{viewport}-2-cart")
    page.get_by_role("button", name=re.compile("បង់តាម KHQR")).click()
    expect(page.get_by_role("heading", name="ស្កេនដើម្បីបង់ប្រាក់")).to_be_visible()
    _shot(page, f"km-{viewport}-3-pay")
    qr = _download_qr(page)
    _pay_in_banking_app(context, live_shop, qr)
    expect(page.get_by_role("heading", name="បានទទួលការទូទាត់")).to_be_visible(timeout=15_000)
    expect(page.locator("main")).to_contain_text("1 × ឡាតេទឹកកក")
    _shot(page, f"km-{viewport}-4-paid")
    page.goto(f"{live_shop.url}/orders")
    expect(page.get_by_role("heading", name="ការបញ្ជាទិញរបស់ខ្ញុំ", level=1)).to_be_visible()
    _shot(page, f"km-{viewport}-5-orders")
