"""Orders in the console over HTTP: the list (filters, search, pages, CSV), the order page, the
three buttons, and the owner's decisions; each answer is the services' schema plus its HTML."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from helpers.console import Console
from khqrpay.orders.model import OrderStatus
from khqrpay.services.orders import order_details
from khqrpay.web.admin.orders import _cell

DAY_MS = 86_400_000
# The buttons and decisions call services proven on both databases; over HTTP, SQLite will do.
# The list's queries are the console's own: both.
http_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def status_of(console: Console, order_id: int) -> OrderStatus:
    return order_details(console.app.database, order_id).order.status


def listed(console: Console, query: str) -> list[int]:
    """The order ids the list shows for a query string, in order."""
    answer = console.client.get(
        f"/admin/orders/live?{query}", headers={"accept": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    html = answer.json()["html"]
    return [int(part.split('"')[0]) for part in html.split('data-order="')[1:]]


# The three buttons ------------------------------------------------------------------------------


@http_only
def test_verify_instantly_completes_a_paid_order_and_shows_the_payment(console: Console) -> None:
    console.as_staff()
    product = console.product(stock=5)
    created = console.order((product, 2))
    transaction = console.pay(created.payment.qr)

    answer = console.post(f"/admin/orders/{created.order.id}/verify")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["result"]["previous_status"] == "PENDING"
    assert body["result"]["status"] == "COMPLETED"
    (check,) = body["result"]["checked"]
    assert check["transaction"]["hash"] == transaction["hash"]
    assert "Paid. The order is now COMPLETED." in body["html"]
    assert transaction["hash"][:8] in body["html"]
    details = order_details(console.app.database, created.order.id)
    assert details.order.status is OrderStatus.COMPLETED
    assert details.audit[-1].actor == "staff:sam"
    page = console.page(f"/admin/orders/{created.order.id}").text
    assert transaction["hash"] in page  # the evidence, in full
    assert 'data-sku="' + product.sku + '">3<' in page  # the stock now


@http_only
def test_verify_instantly_says_bakong_is_unreachable_and_changes_nothing(
    console: Console,
) -> None:
    console.as_staff()
    created = console.order((console.product(), 1))
    console.bank.post("/_sim/faults", json={"seed": 1, "service_unavailable": 1.0})

    answer = console.post(f"/admin/orders/{created.order.id}/verify")

    assert answer.status_code == 200
    assert answer.json()["result"]["checked"][0]["outcome"] == "unavailable"
    assert "Bakong is unreachable: nothing was changed." in answer.json()["html"]
    assert status_of(console, created.order.id) is OrderStatus.PENDING


@http_only
def test_check_payment_status_reports_a_payment_without_recording_it(console: Console) -> None:
    console.as_staff()
    created = console.order((console.product(), 1))
    transaction = console.pay(created.payment.qr)

    answer = console.post(f"/admin/orders/{created.order.id}/check")

    view = answer.json()["result"]
    assert view["status"] == "PENDING"
    (qr,) = view["qrs"]
    assert qr["bakong"] == "paid"
    assert qr["transaction"]["hash"] == transaction["hash"]
    assert "Nothing was changed" in answer.json()["message"]
    assert status_of(console, created.order.id) is OrderStatus.PENDING


@http_only
def test_mark_as_paid_with_a_short_hash_is_checked_with_bakong_and_recorded_with_the_staff(
    console: Console,
) -> None:
    console.as_staff()
    created = console.order((console.product(), 1))
    short_hash = console.pay(created.payment.qr)["hash"][:8]

    answer = console.post(
        f"/admin/orders/{created.order.id}/mark-paid",
        reason="customer showed the receipt",
        hash=short_hash,
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["evidence"]["short_hash"] == short_hash
    details = order_details(console.app.database, created.order.id)
    assert details.order.status is OrderStatus.COMPLETED
    assert (details.audit[-1].actor, details.audit[-1].reason) == (
        "staff:sam",
        "customer showed the receipt",
    )


@http_only
def test_mark_as_paid_is_refused_with_the_reason_shown(console: Console) -> None:
    console.as_staff()
    created = console.order((console.product(), 1))
    path = f"/admin/orders/{created.order.id}/mark-paid"

    no_reason = console.post(path, reason=" ")
    assert no_reason.status_code == 409
    assert "needs a reason" in no_reason.json()["error"]["message"]
    unknown_hash = console.post(path, reason="receipt", hash="0badc0de")
    assert unknown_hash.status_code == 409
    assert "nothing was changed" in unknown_hash.json()["error"]["message"]
    assert status_of(console, created.order.id) is OrderStatus.PENDING

    assert console.post(path, reason="cash at the counter").status_code == 200
    again = console.post(path, reason="cash at the counter")
    assert again.status_code == 409
    assert "COMPLETED" in again.json()["error"]["message"]


@http_only
def test_a_plain_form_post_comes_back_to_the_order_with_the_message(console: Console) -> None:
    """Without JavaScript the buttons still work: a redirect, and the message on the page."""
    console.as_staff()
    created = console.order((console.product(), 1))
    path = f"/admin/orders/{created.order.id}"

    answer = console.post(f"{path}/mark-paid", script=False, reason="cash at the counter")

    assert (answer.status_code, answer.headers["location"]) == (303, path)
    assert "Marked as paid: the order is now COMPLETED." in console.page(path).text
    refused = console.post(f"{path}/mark-paid", script=False, reason="again")
    assert refused.status_code == 303
    assert "cannot be marked paid" in console.page(path).text


# The owner's decisions --------------------------------------------------------------------------


@http_only
def test_an_owner_sees_why_a_short_payment_needs_review_and_accepts_it(console: Console) -> None:
    console.as_owner()
    product = console.product(price="3.00", stock=4)
    created = console.order((product, 1))
    console.pay(created.payment.qr, amount=Decimal("2.00"))
    console.post(f"/admin/orders/{created.order.id}/verify")
    assert status_of(console, created.order.id) is OrderStatus.NEEDS_REVIEW

    page = console.page(f"/admin/orders/{created.order.id}").text
    assert "Why this order needs review" in page
    assert "Short payment" in page
    assert "expected 3.00 USD, paid 2.00 USD" in page

    answer = console.post(
        f"/admin/orders/{created.order.id}/resolve",
        decision="accept",
        reason="the customer paid the rest in cash",
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["status"] == "COMPLETED"
    details = order_details(console.app.database, created.order.id)
    assert details.audit[-1].actor == "staff:olivia"
    assert "Payment accepted" in console.page(f"/admin/orders/{created.order.id}").text


@http_only
def test_an_owner_records_a_refund_with_its_reference(console: Console) -> None:
    console.as_owner()
    created = console.order((console.product(price="3.00"), 1))
    console.pay(created.payment.qr, amount=Decimal("2.00"))
    console.post(f"/admin/orders/{created.order.id}/verify")
    path = f"/admin/orders/{created.order.id}/resolve"

    no_reference = console.post(path, decision="refund", reason="sent back")
    assert no_reference.status_code == 409
    answer = console.post(path, decision="refund", reason="sent back", reference="ABA-7788")

    assert answer.json()["result"]["status"] == "REFUNDED"
    assert answer.json()["result"]["refund_reference"] == "ABA-7788"


@http_only
def test_an_owner_cancels_a_pending_order_but_not_a_paid_one(console: Console) -> None:
    console.as_owner()
    pending = console.order((console.product(), 1))
    answer = console.post(f"/admin/orders/{pending.order.id}/cancel", reason="customer left")
    assert answer.json()["result"]["status"] == "CANCELLED"

    paid = console.order((console.product(), 1))
    console.post(f"/admin/orders/{paid.order.id}/mark-paid", reason="cash")
    refused = console.post(f"/admin/orders/{paid.order.id}/cancel", reason="oops")
    assert refused.status_code == 409
    assert "only a PENDING order can be cancelled" in refused.json()["error"]["message"]


# The list ---------------------------------------------------------------------------------------


@pytest.fixture
def orders(console: Console) -> dict[str, int]:
    """Orders to find: by phone, by payment, by status, a day apart."""
    console.as_staff()
    tea = console.product(name="Tea")
    found = {}
    found["phoned"] = console.order((tea, 1), phone="012 345 678").order.id
    paid = console.order((tea, 2))
    found["paid"] = paid.order.id
    found["hash"] = console.pay(paid.payment.qr)["hash"]
    console.post(f"/admin/orders/{paid.order.id}/verify")
    console.clock.advance(ms=DAY_MS)
    later = console.order((tea, 3))
    found["later"] = later.order.id
    found["md5"] = later.payment.md5
    found["token"] = later.order.public_token
    console.as_staff()  # a day passed: the session ended
    return found


def test_the_list_searches_every_way_staff_know_an_order(
    console: Console, orders: dict[str, int]
) -> None:
    assert listed(console, "q=012345678") == [orders["phoned"]]
    assert listed(console, "q=%2B855+12+345+678") == [orders["phoned"]]
    assert listed(console, "q=345678") == [orders["phoned"]]
    assert listed(console, f"q=ORD-{orders['paid']}") == [orders["paid"]]
    assert listed(console, f"q=%23{orders['later']}") == [orders["later"]]
    assert listed(console, f"q={orders['hash'][:8]}") == [orders["paid"]]  # short hash
    assert listed(console, f"q={orders['hash']}") == [orders["paid"]]
    assert listed(console, f"q={str(orders['md5'])[:10].upper()}") == [orders["later"]]
    assert listed(console, f"q={orders['token']}") == [orders["later"]]
    assert listed(console, "q=nothing-like-this") == []


def test_the_list_filters_by_status_flag_and_dates(
    console: Console, orders: dict[str, int]
) -> None:
    assert listed(console, "status=COMPLETED") == [orders["paid"]]
    assert listed(console, "status=PENDING") == [orders["later"], orders["phoned"]]
    assert listed(console, "flagged=1") == []
    assert listed(console, "from=2026-11-27") == [orders["later"]]
    assert listed(console, "to=2026-11-26") == [orders["paid"], orders["phoned"]]
    bad = console.page("/admin/orders?from=yesterday")
    assert bad.status_code == 400
    assert "is not a date" in bad.text


@http_only
def test_the_list_pages_through_many_orders(console: Console) -> None:
    console.as_staff()
    tea = console.product(stock=100)
    ids = [console.order((tea, 1)).order.id for _ in range(27)]
    first, second = listed(console, "page=1"), listed(console, "page=2")
    assert first == ids[::-1][:25]
    assert second == ids[::-1][25:]
    assert "page 1 of 2" in console.page("/admin/orders").text


def test_the_csv_export_has_every_order_the_filters_select(
    console: Console, orders: dict[str, int]
) -> None:
    answer = console.client.get("/admin/orders.csv?status=PENDING")
    assert answer.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert [int(row["order"]) for row in rows] == [orders["later"], orders["phoned"]]
    phoned = rows[1]
    assert phoned["bill_number"] == f"ORD-{orders['phoned']}"
    assert phoned["total"] == "1.50"
    assert phoned["phone"] == "012 345 678"  # as people write it, and never a number


def test_a_csv_cell_is_never_a_formula() -> None:
    assert _cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert _cell("-2+3") == "'-2+3"
    assert _cell("amount mismatch") == "amount mismatch"
    assert _cell(None) == ""
