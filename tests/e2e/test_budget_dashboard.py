"""The staff dashboard when Bakong refuses the md5 list and the request budget cannot keep up: it
says so plainly (one QR a call, within the budget; how many orders are behind schedule), in
English and Khmer. Screenshots, phone (390x844) and desktop (1280x800), go to
tests/e2e/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect
from test_staff_console import OWNER, SCREENSHOTS, _context, _shop, log_in, simulator

from khqrpay.db import tables as t
from khqrpay.simulator.server import RunningSimulator

BEHIND = 3
__all__ = ["simulator"]  # the console tests' simulator fixture, used here too


@pytest.mark.parametrize(
    ("device", "viewport"),
    [("phone", {"width": 390, "height": 844}), ("desktop", {"width": 1280, "height": 800})],
)
def test_the_dashboard_says_when_checks_run_one_by_one_and_late(
    browser: Browser,
    simulator: RunningSimulator,
    tmp_path: Path,
    device: str,
    viewport: dict[str, int],
) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    with _shop(tmp_path, simulator, worker=False) as shop:
        now_ms = shop.app.clock.now_ms()
        created = [shop.order(("ICED-COFFEE", 1)) for _ in range(BEHIND + 1)]
        with shop.app.database.write() as uow:
            # What a worker records when Bakong refuses the list, and checks a minute late.
            uow.budget.set_list_refused_until(now_ms + 10 * 60_000)
            uow.budget.add_calls(now_ms - now_ms % 1000, 54, prune_before_ms=0)
            uow.connection.execute(
                t.khqr_payments.update()
                .where(t.khqr_payments.c.id.in_([c.payment.id for c in created[:BEHIND]]))
                .values(next_check_ms=now_ms - 60_000)
            )
        with _context(browser, viewport=viewport) as context:
            page = context.new_page()
            log_in(page, shop, OWNER)
            expect(page.locator(".banner").first).to_contain_text(
                "One QR code per call, within 60 calls a minute."
            )
            expect(page.locator("[data-figure=behind]")).to_contain_text(
                f"{BEHIND} orders are behind schedule."
            )
            expect(page.locator("[data-figure=budget]")).to_have_text(
                "54 of 60 calls in the last minute"
            )
            page.screenshot(path=SCREENSHOTS / f"dashboard-budget-{device}.png", full_page=True)
            if device == "phone":
                page.get_by_role("link", name="ខ្មែរ").click()
                expect(page.locator("[data-figure=behind]")).to_contain_text(
                    f"ការបញ្ជាទិញ {BEHIND} កំពុងយឺតពេលពិនិត្យ។"
                )
                page.screenshot(path=SCREENSHOTS / "dashboard-budget-phone-km.png", full_page=True)
