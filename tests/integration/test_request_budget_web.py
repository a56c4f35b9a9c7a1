""" "I have paid" pressed again and again, in many tabs, on many orders: the presses never take more
of the Bakong request budget than the customers' share, and the customer is told plainly that the
payment is checked next (the order is watched: the verifier checks it first)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.budget import counted_since_ms
from khqrpay.services.manual import VerifyResult
from khqrpay.services.products import add_product

if TYPE_CHECKING:
    from helpers.web import Web

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def web_changes() -> dict[str, object]:
    # 30 calls a minute, 6 kept for staff: customers' presses may take 12, at most 2 in 10 s.
    # The per-order and per-client limits are lifted: the budget alone must hold.
    return {
        "bakong_max_calls_per_min": 30,
        "bakong_staff_reserved_calls_per_min": 6,
        "web_rate_paid_per_order": "1000/minute",
        "web_rate_paid_per_client": "1000/minute",
    }


def test_i_have_paid_spam_never_takes_more_than_the_customers_share(web: Web) -> None:
    add_product(
        web.app.database,
        sku="LATTE",
        name="Latte",
        price=Money(Decimal("1.50"), Currency.USD),
        stock=100,
        now_ms=web.app.clock.now_ms(),
    )
    tabs, tokens = [], []
    for _ in range(3):
        tab = web.browser()
        tab.add("LATTE")
        tabs.append(tab)
        tokens.append(tab.checkout())
    json_accept = {"accept": "application/json"}
    messages = []
    for _ in range(8):  # every 11 s for 88 s, each tab presses for each order
        messages += [
            tab.post(f"/pay/{token}/paid", headers=json_accept).json()["message"]
            for tab in tabs
            for token in tokens
        ]
        web.app.clock.advance(seconds=11)
    # 72 presses; 2 asked each time (the pace), so never more than the customers' 12 a minute.
    assert sum("not seen your payment yet" in message for message in messages) == 16
    assert sum("Yours is next in line" in message for message in messages) == 56

    now_ms = web.app.clock.now_ms()
    with web.app.database.read() as uow:
        assert uow.budget.calls_since(counted_since_ms(now_ms)) <= 12
        asked = uow.connection.execute(
            sa.select(sa.func.count()).select_from(t.verification_attempts)
        ).scalar_one()
        watched = [uow.payments.for_order(uow.orders.by_token(token).id)[0] for token in tokens]
    assert asked == 16  # one QR a call: the rest deferred, none asked
    assert all(payment.hot_until_ms is not None for payment in watched)

    # Staff in another process (its own client, the same budget): the presses left the
    # verifier's share and the staff's reserve untouched, so Verify Instantly asks Bakong.
    async def verify_as_staff() -> VerifyResult:
        async with web.app.bakong() as bakong:
            order_id = watched[0].order_id
            return await bakong.staff.verify_instantly(order_id, actor="staff:dara")

    result = asyncio.run(verify_as_staff())
    assert (len(result.checks), result.deferred) == (1, 0)
