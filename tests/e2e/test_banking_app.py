"""The simulator's banking-app page in a real browser: a person opens or pastes a KHQR, sees whom
they pay and how much, presses Pay, and gets a receipt; the payment is then in Bakong's books."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from khqrpay.clock import SystemClock
from khqrpay.khqr import KHQRInput, encode
from khqrpay.money import Currency
from khqrpay.simulator import SimulatorConfig, run_simulator
from khqrpay.simulator.server import RunningSimulator

DAY_MS = 86_400_000


@pytest.fixture
def simulator() -> Iterator[RunningSimulator]:
    with run_simulator(SimulatorConfig(seed=7)) as running:
        yield running


def _qr(amount: Decimal | None, *, expires_in_ms: int = DAY_MS) -> str:
    now_ms = SystemClock().now_ms()
    return encode(
        KHQRInput(
            bakong_account_id="kampot_corner@aclb",
            merchant_name="Kampot Corner Cafe",
            currency=Currency.USD,
            amount=amount,
            bill_number="ORD-12",
            expires_ms=None if amount is None else now_ms + expires_in_ms,
        ),
        now_ms=now_ms,
    ).qr


def _transactions(simulator: RunningSimulator) -> list[dict[str, object]]:
    answer = httpx.get(f"{simulator.url}/_sim/transactions", timeout=5)
    answer.raise_for_status()
    listed: list[dict[str, object]] = answer.json()["transactions"]
    return listed


def test_a_customer_pays_a_dynamic_qr_opened_from_a_link(
    page: Page, simulator: RunningSimulator
) -> None:
    qr = _qr(Decimal("4.50"))
    page.goto(f"{simulator.url}/_sim/app?qr={quote(qr, safe='')}")
    confirm = page.locator("#confirm")
    expect(confirm).to_contain_text("Kampot Corner Cafe")
    expect(confirm).to_contain_text("kampot_corner@aclb")
    expect(confirm).to_contain_text("ORD-12")
    expect(confirm.locator(".amount")).to_have_text("$4.50")

    page.get_by_role("button", name="Pay").click()

    receipt = page.locator("#receipt")
    expect(receipt).to_be_visible()
    expect(receipt.locator("#r-amount")).to_have_text("4.50 USD")
    (paid,) = _transactions(simulator)
    transaction = paid["transaction"]
    assert isinstance(transaction, dict)
    assert transaction["toAccountId"] == "kampot_corner@aclb"
    assert Decimal(str(transaction["amount"])) == Decimal("4.50")
    expect(receipt.locator("#r-hash")).to_have_text(str(transaction["hash"]))
    expect(receipt.locator("#r-short")).to_have_text(str(transaction["hash"])[:8])
    expect(page.locator("#confirm")).to_be_hidden()


def test_a_pasted_static_qr_asks_for_the_amount(page: Page, simulator: RunningSimulator) -> None:
    page.goto(f"{simulator.url}/_sim/app")
    page.locator("textarea[name=qr]").fill(_qr(None))
    page.get_by_role("button", name="Read QR").click()
    expect(page.locator("#confirm")).to_contain_text("Amount in USD")

    page.locator("#amount").fill("2.5")
    page.get_by_role("button", name="Pay").click()

    expect(page.locator("#r-amount")).to_have_text("2.50 USD")
    (paid,) = _transactions(simulator)
    transaction = paid["transaction"]
    assert isinstance(transaction, dict)
    assert Decimal(str(transaction["amount"])) == Decimal("2.50")


def test_a_broken_qr_is_refused_with_the_reason_and_no_pay_button(
    page: Page, simulator: RunningSimulator
) -> None:
    broken = _qr(Decimal("4.50"))[:-4] + "0000"  # wrong CRC
    page.goto(f"{simulator.url}/_sim/app?qr={quote(broken, safe='')}")
    expect(page.get_by_role("alert")).to_contain_text("CRC")
    expect(page.get_by_role("button", name="Pay")).to_have_count(0)
    assert _transactions(simulator) == []


def test_a_payment_refused_by_the_bank_shows_why_and_records_nothing(
    page: Page, simulator: RunningSimulator
) -> None:
    page.goto(f"{simulator.url}/_sim/app")
    page.locator("textarea[name=qr]").fill(_qr(None))
    page.get_by_role("button", name="Read QR").click()
    page.locator("#amount").fill("1.005")  # a third decimal: no bank would send it
    page.get_by_role("button", name="Pay").click()

    expect(page.locator("#pay-error")).to_be_visible()
    expect(page.locator("#receipt")).to_be_hidden()
    expect(page.get_by_role("button", name="Pay")).to_be_enabled()
    assert _transactions(simulator) == []
