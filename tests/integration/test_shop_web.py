"""The shop over real HTTP: catalogue, cart, checkout, the payment page and its live status,
I have paid, Download QR, the banking-app link, pay later, My orders and the look-up; security
(tokens not ids, CSRF, rate limits, headers) and both languages.

Pages are the same on both databases: these run on SQLite; what depends on the database (the
engine, the API's idempotency) is tested on both elsewhere.
"""

from __future__ import annotations

import io
import re
from decimal import Decimal

import httpx
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from helpers.web import Browser, Web, event_stream
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.orders.model import OrderStatus, Product
from khqrpay.services.products import add_product, set_product_active, update_product

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _product(
    web: Web,
    sku: str,
    price: str,
    currency: str = "USD",
    stock: int = 10,
    name_km: str | None = None,
) -> Product:
    return add_product(
        web.app.database,
        sku=sku,
        name=f"{sku.title()} drink",
        name_km=name_km,
        price=Money(Decimal(price), Currency(currency)),
        stock=stock,
        now_ms=web.app.clock.now_ms(),
    )


def _orders(web: Web) -> int:
    with web.app.database.read() as uow:
        return int(
            uow.connection.execute(sa.select(sa.func.count()).select_from(t.orders)).scalar_one()
        )


def test_the_catalogue_shows_prices_as_shops_write_them_and_stock_and_hides_what_is_off_sale(
    web: Web,
) -> None:
    _product(web, "LATTE", "1.50", stock=12)
    _product(web, "RICE", "12000", "KHR", stock=3)
    _product(web, "TEA", "1.00", stock=0)
    _product(web, "OLD", "2.00")
    set_product_active(web.app.database, "OLD", active=False, clock=web.app.clock, actor="cli")
    page = web.browser().get("/")
    assert page.status_code == 200
    assert "$1.50" in page.text
    assert "12,000 ៛" in page.text
    assert "12 in stock" in page.text
    assert "Only 3 left" in page.text
    assert "Old drink" not in page.text
    # Sold out: shown, with no form to add it.
    assert "Tea drink" in page.text
    assert "Sold out" in page.text
    assert 'value="TEA"' not in page.text
    assert 'value="LATTE"' in page.text


def test_the_cart_refuses_what_cannot_be_bought_and_keeps_the_rest(web: Web) -> None:
    _product(web, "LATTE", "1.50", stock=2)
    _product(web, "TEA", "1.00", stock=0)
    browser = web.browser()
    browser.add("LATTE", times=3)  # only 2 in stock: the cart keeps 2
    refused = browser.post("/cart/add", {"sku": "TEA"}, headers={"accept": "application/json"})
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == "Sorry, Tea drink is sold out."
    assert browser.post("/cart/add", {"sku": "NOPE"}).status_code == 303  # a form: a notice
    cart = browser.get("/cart")
    assert "That item is not for sale." in cart.text
    assert re.search(r'class="step-count"[^>]*>2<', cart.text)
    assert "Tea drink" not in cart.text
    assert "$3.00" in cart.text


def test_checkout_makes_a_pending_order_with_its_khqr_and_opens_the_payment_page_by_token(
    web: Web,
) -> None:
    latte = _product(web, "LATTE", "1.50", stock=5)
    browser = web.browser()
    browser.add("LATTE", times=2)
    token = browser.checkout(name="  Sokha   Chan ", phone="012 345 678")

    order = web.order(token)
    assert order.status is OrderStatus.PENDING
    assert order.total == Money(Decimal("3.00"), Currency.USD)
    assert (order.customer_name, order.customer_phone) == ("Sokha Chan", "+85512345678")
    with web.app.database.read() as uow:
        assert uow.products.get(latte.id).stock == 5  # taken only when paid
    page = browser.get(f"/pay/{token}")
    assert page.status_code == 200
    assert "Scan to pay" in page.text
    assert "3.00" in page.text
    assert "Download QR" in page.text
    assert f"/pay/{token}/qr.svg" in page.text
    assert browser.get("/cart").text.count("Your cart is empty.") == 1
    # Customers never reach an order by its number.
    assert browser.get(f"/pay/{order.id}").status_code == 404
    assert browser.get("/pay/" + "A" * 32).status_code == 404


def test_a_cart_in_two_currencies_pays_one_and_keeps_the_other(web: Web) -> None:
    _product(web, "LATTE", "1.50")
    _product(web, "RICE", "12000", "KHR")
    browser = web.browser()
    browser.add("LATTE")
    browser.add("RICE")
    cart = browser.get("/cart")
    assert "One KHQR pays one currency" in cart.text
    token = browser.checkout("KHR")
    assert web.order(token).total == Money(Decimal(12000), Currency.KHR)
    cart = browser.get("/cart")
    assert "Latte drink" in cart.text
    assert "Rice drink" not in cart.text


def test_bad_checkout_input_is_refused_with_a_clear_page_and_nothing_saved(web: Web) -> None:
    _product(web, "LATTE", "1.50")
    browser = web.browser()
    browser.add("LATTE")
    bad_phone = browser.post("/checkout", {"currency": "USD", "phone": "+1 555 0100"})
    assert bad_phone.status_code == 422
    assert "Please give a Cambodian phone number" in bad_phone.text
    assert 'value="+1 555 0100"' in bad_phone.text  # what they typed is kept
    bad_field = browser.post("/checkout", {"currency": "EUR"})
    assert bad_field.status_code == 422
    assert "Traceback" not in bad_field.text
    no_csrf = browser.http.post("/checkout", data={"currency": "USD"})
    assert no_csrf.status_code == 403
    assert _orders(web) == 0


def test_stock_is_checked_at_checkout(web: Web) -> None:
    _product(web, "LATTE", "1.50", stock=2)
    browser = web.browser()
    browser.add("LATTE", times=2)
    with web.app.database.write() as uow:
        uow.connection.execute(t.products.update().values(stock=1))
    cart = browser.get("/cart")
    assert "Only 1 left: please take fewer." in cart.text
    refused = browser.post("/checkout", {"currency": "USD"})
    assert refused.status_code == 303
    assert refused.headers["location"] == "/cart"
    assert "There is not enough LATTE left" in browser.get("/cart").text
    assert _orders(web) == 0


@pytest.fixture
def web_changes() -> dict[str, object]:
    return {
        "web_rate_checkout": "3/minute",
        "web_rate_paid_per_order": "2/minute",
        "web_rate_paid_per_client": "5/minute",
        "web_rate_lookup": "3/minute",
    }


def test_checkout_is_rate_limited_per_client(web: Web) -> None:
    _product(web, "LATTE", "1.50", stock=100)
    browser = web.browser()
    for _ in range(3):
        browser.add("LATTE")
        browser.checkout()
    browser.add("LATTE")
    limited = browser.post("/checkout", {"currency": "USD"})
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert _orders(web) == 3


def _ordered(web: Web, browser_language: str = "en") -> tuple[Browser, str]:
    _product(web, "LATTE", "1.50")
    browser = web.browser(browser_language)
    browser.add("LATTE")
    return browser, browser.checkout(phone="012345678")


def test_opening_the_payment_page_watches_the_order(web: Web) -> None:
    browser, token = _ordered(web)
    before = web.payments(token)[0]
    assert before.hot_until_ms is None
    browser.get(f"/pay/{token}")
    after = web.payments(token)[0]
    assert after.hot_until_ms is not None
    assert after.hot_until_ms > web.app.clock.now_ms()


def test_i_have_paid_finds_the_payment_at_once_and_the_stream_announces_it(web: Web) -> None:
    browser, token = _ordered(web)
    page = browser.get(f"/pay/{token}")
    after = re.search(r"events\?after=(\d+)", page.text)
    assert after is not None
    with event_stream(browser.http, f"/pay/{token}/events?after={after.group(1)}") as stream:
        web.pay(web.payments(token)[0].qr)
        answer = browser.post(f"/pay/{token}/paid", headers={"accept": "application/json"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"kind": "ok", "message": "Payment received. Thank you!"}
        event = stream.wait_for(lambda event: event.data["status"] == "COMPLETED")
        assert event.data["topic"] == "order.status_changed"
        assert event.id is not None
    assert web.order(token).status is OrderStatus.COMPLETED
    with web.app.database.read() as uow:
        actors = {entry.actor for entry in uow.audit.for_order(web.order(token).id)}
    assert "customer" in actors
    receipt = browser.get(f"/pay/{token}/panel")
    assert "Payment received" in receipt.text
    assert "Bakong reference" in receipt.text
    assert browser.get(f"/pay/{token}/status").json()["status"] == "COMPLETED"


def test_i_have_paid_before_paying_says_not_yet_and_is_rate_limited_per_order(web: Web) -> None:
    browser, token = _ordered(web)
    json_accept = {"accept": "application/json"}
    first = browser.post(f"/pay/{token}/paid", headers=json_accept)
    assert first.status_code == 200
    assert first.json()["kind"] == "warn"
    assert "not seen your payment yet" in first.json()["message"]
    browser.post(f"/pay/{token}/paid", headers=json_accept)
    limited = browser.post(f"/pay/{token}/paid", headers=json_accept)
    assert limited.status_code == 429
    assert limited.headers["retry-after"]
    assert "Please wait" in limited.json()["error"]["message"]
    # Another customer's order is not held back by this one's limit.
    other, other_token = _second_order(web)
    assert other.post(f"/pay/{other_token}/paid", headers=json_accept).status_code == 200


def _second_order(web: Web) -> tuple[Browser, str]:
    browser = web.browser()
    browser.add("LATTE")
    return browser, browser.checkout()


def test_i_have_paid_is_rate_limited_per_client(web: Web) -> None:
    browser, token = _ordered(web)
    tokens = [token]
    for _ in range(2):
        browser.add("LATTE")
        tokens.append(browser.checkout())
    json_accept = {"accept": "application/json"}
    answers = [
        browser.post(f"/pay/{each}/paid", headers=json_accept).status_code
        for each in tokens
        for _ in range(2)
    ]
    # Each order's own limit (2 a minute) is never reached; the client's (5) is.
    assert answers == [200] * 5 + [429]


def test_a_dropped_stream_resumes_from_last_event_id_and_loses_nothing(web: Web) -> None:
    browser, token = _ordered(web)
    order = web.order(token)
    with web.app.database.read() as uow:
        created = uow.outbox.after(0, limit=10, order_id=order.id)[-1].id
    # Events written while no stream was open (the proxy dropped it)...
    web.pay(web.payments(token)[0].qr)
    browser.post(f"/pay/{token}/paid")
    # ...are replayed to the browser reconnecting with its Last-Event-ID.
    with event_stream(
        browser.http,
        f"/pay/{token}/events?after=0",
        headers={"last-event-id": str(created)},
    ) as stream:
        replayed = stream.wait_for(lambda event: event.data["status"] == "COMPLETED")
    assert int(replayed.id or 0) > created
    assert all(int(event.id or 0) > created for event in stream.events)


def test_download_qr_is_a_png_card_that_decodes_to_the_orders_khqr(web: Web) -> None:
    browser, token = _ordered(web)
    download = browser.get(f"/pay/{token}/khqr.png")
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert "attachment" in download.headers["content-disposition"]
    (decoded,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(download.content)))
    assert decoded.text == web.payments(token)[0].qr
    svg = browser.get(f"/pay/{token}/qr.svg")
    assert svg.headers["content-type"] == "image/svg+xml"
    assert b"<svg" in svg.content


def test_open_in_banking_app_goes_to_bakongs_link(web: Web) -> None:
    browser, token = _ordered(web)
    response = browser.get(f"/pay/{token}/app")
    assert response.status_code == 303
    assert response.headers["location"].startswith("https://bakong.page.link/")


def test_the_payment_page_works_when_bakong_cannot_make_the_link(web: Web) -> None:
    browser, token = _ordered(web)
    httpx.post(
        f"{web.simulator.url}/_sim/faults", json={"seed": 1, "service_unavailable": 1.0}
    ).raise_for_status()
    response = browser.get(f"/pay/{token}/app")
    assert response.status_code == 303
    assert response.headers["location"] == f"/pay/{token}"
    page = browser.get(f"/pay/{token}")
    assert "could not be opened from here just now" in page.text
    assert "Download QR" in page.text


def test_pay_later_keeps_the_order_pending_and_offers_the_code(web: Web) -> None:
    browser, token = _ordered(web)
    later = browser.get(f"/pay/{token}/later")
    assert later.status_code == 200
    assert "Your order is saved" in later.text
    assert f"/pay/{token}/khqr.png" in later.text
    assert web.order(token).status is OrderStatus.PENDING


def test_an_expired_order_says_so_kindly_and_can_be_ordered_again(web: Web) -> None:
    browser, token = _ordered(web)
    with web.app.database.write() as uow:
        order = uow.orders.by_token(token)
        uow.orders.transition(
            order.id, expected=OrderStatus.PENDING, target=OrderStatus.EXPIRED, now_ms=1
        )
    page = browser.get(f"/pay/{token}")
    assert "This order has expired" in page.text
    assert "Nothing was charged" in page.text
    again = browser.post(f"/pay/{token}/again")
    assert again.status_code == 303
    new_token = again.headers["location"].removeprefix("/pay/")
    assert new_token != token
    assert web.order(new_token).status is OrderStatus.PENDING
    assert web.order(new_token).total == web.order(token).total


def test_my_orders_lists_this_browsers_orders_only(web: Web) -> None:
    browser, token = _ordered(web)
    mine = browser.get("/orders")
    assert f"/pay/{token}" in mine.text
    assert "Waiting for payment" in mine.text
    stranger = web.browser().get("/orders")
    assert f"/pay/{token}" not in stranger.text
    assert "No orders on this phone or computer yet." in stranger.text


def test_finding_orders_needs_the_phone_and_the_link_and_shows_others_minimally(
    web: Web,
) -> None:
    _, first = _ordered(web)
    second_browser = web.browser()
    second_browser.add("LATTE")
    second = second_browser.checkout(phone="012 345 678")
    newcomer = web.browser()
    wrong_phone = newcomer.post("/orders/find", {"phone": "099 999 999", "link": first})
    assert wrong_phone.status_code == 404
    assert "No order matches this phone number and link" in wrong_phone.text
    phone_only = newcomer.post("/orders/find", {"phone": "012 345 678", "link": "nothing"})
    assert phone_only.status_code == 404
    assert f"/pay/{second}" not in phone_only.text

    found = newcomer.post(
        "/orders/find", {"phone": "012345678", "link": f"https://shop.example/pay/{first}"}
    )
    assert found.status_code == 200
    assert "Other orders with this phone number" in found.text
    # The other order is listed by date, amount and status only: never its link or code.
    assert f"/pay/{second}" not in found.text
    assert second not in found.text
    assert f"/pay/{first}" in newcomer.get("/orders").text


def test_the_look_up_is_rate_limited(web: Web) -> None:
    browser = web.browser()
    answers = [
        browser.post("/orders/find", {"phone": "012345678", "link": "x"}).status_code
        for _ in range(4)
    ]
    assert answers == [404, 404, 404, 429]


def test_my_orders_follows_its_orders_live(web: Web) -> None:
    browser, token = _ordered(web)
    page = browser.get("/orders")
    after = re.search(r"/orders/events\?after=(\d+)", page.text)
    assert after is not None
    with event_stream(browser.http, f"/orders/events?after={after.group(1)}") as stream:
        web.pay(web.payments(token)[0].qr)
        browser.post(f"/pay/{token}/paid")
        stream.wait_for(lambda event: event.data["status"] == "COMPLETED")
    assert "Paid" in browser.get("/orders/panel").text


def test_pages_carry_the_security_headers_and_no_inline_script_or_style(web: Web) -> None:
    browser, token = _ordered(web)
    for path in ("/", "/cart", f"/pay/{token}", f"/pay/{token}/later", "/orders"):
        page = browser.get(path)
        assert page.status_code == 200, path
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text), path
        assert " style=" not in page.text, path
        assert not re.search(r"\son[a-z]+=", page.text), path
    assert browser.get(f"/pay/{token}").headers["cache-control"] == "no-store"


def test_a_request_body_over_the_limit_is_refused(web: Web) -> None:
    browser = web.browser()
    response = browser.post("/checkout", {"currency": "USD", "name": "x" * 70_000})
    assert response.status_code == 413


def test_the_shop_speaks_khmer_when_asked_and_remembers_it(web: Web) -> None:
    _product(web, "LATTE", "1.50")
    khmer = web.browser("km").get("/")
    assert '<html lang="km">' in khmer.text
    assert "បន្ថែម" in khmer.text
    browser = web.browser()
    switched = browser.get("/language/km?back=/cart")
    assert switched.status_code == 303
    assert switched.headers["location"] == "/cart"
    assert "កន្ត្រករបស់អ្នក" in browser.get("/cart").text


def test_each_language_sees_its_product_names_and_orders_keep_them(web: Web) -> None:
    _product(web, "AMOK", "4.50", name_km="អាម៉ុកត្រី")
    _product(web, "LATTE", "1.50")  # no Khmer name: Khmer readers see the English one
    english, khmer = web.browser(), web.browser("km")
    tokens = {}
    for browser in (english, khmer):
        browser.add("AMOK")
        browser.add("LATTE")
        tokens[browser] = browser.checkout(phone="012345678")
    update_product(web.app.database, "AMOK", name_km="អាម៉ុក", clock=web.app.clock, actor="cli")
    for path in ("/", f"/pay/{tokens[khmer]}", "/orders"):
        page = khmer.get(path).text
        assert "Latte drink" in page, path
        assert "Amok drink" not in page, path
    catalogue = khmer.get("/").text
    assert "អាម៉ុក" in catalogue
    assert "អាម៉ុកត្រី" not in catalogue  # renamed
    # Sorted by the name shown: Latin letters before Khmer ones, Amok before Latte.
    assert catalogue.index("<h2>Latte drink</h2>") < catalogue.index("<h2>អាម៉ុក</h2>")
    english_catalogue = english.get("/").text
    shown = english_catalogue.index("<h2>Amok drink</h2>"), english_catalogue.index("<h2>Latte")
    assert shown[0] < shown[1]
    # The order keeps the name it was made with.
    assert "អាម៉ុកត្រី" in khmer.get(f"/pay/{tokens[khmer]}").text
    assert "1 × អាម៉ុកត្រី" in khmer.get("/orders").text
    for browser in (english, khmer):
        browser.add("AMOK")
    cart = khmer.get("/cart").text
    assert "អាម៉ុក" in cart
    assert "អាម៉ុកត្រី" not in cart
    for path in ("/", "/cart", f"/pay/{tokens[english]}", "/orders"):
        page = english.get(path).text
        assert "Amok drink" in page, path
        assert "អាម៉ុក" not in page, path


@pytest.mark.parametrize(
    ("path", "heading", "next_step"),
    [
        (
            [OrderStatus.NEEDS_REVIEW],
            "Your payment is being checked",
            "You do not need to pay again",
        ),
        ([OrderStatus.CANCELLED], "This order was cancelled", "Order again with a new code"),
        (
            [OrderStatus.NEEDS_REVIEW, OrderStatus.REFUNDED],
            "This order was refunded",
            "The shop gave your payment back.",
        ),
    ],
)
def test_every_end_of_an_order_is_told_kindly_with_what_to_do_next(
    web: Web, path: list[OrderStatus], heading: str, next_step: str
) -> None:
    browser, token = _ordered(web)
    order = web.order(token)
    with web.app.database.write() as uow:
        current = OrderStatus.PENDING
        for status in path:
            uow.orders.transition(order.id, expected=current, target=status, now_ms=1)
            current = status
    page = browser.get(f"/pay/{token}")
    assert heading in page.text
    assert next_step in page.text
    assert "Scan to pay" not in page.text
    assert "Download QR" not in page.text
