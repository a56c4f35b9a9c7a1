"""The JSON API over real HTTP: keys, every endpoint and its errors, idempotency (two identical
requests at the same moment too, on both databases), a client seeing only its own orders."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from helpers.web import Web, api_client, event_stream
from khqrpay.db import tables as t
from khqrpay.money import Currency, Money
from khqrpay.services.api_clients import create_api_key, revoke_api_key
from khqrpay.services.products import add_product, set_product_active

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def web_changes() -> dict[str, object]:
    return {"web_rate_api_key": "40/minute", "web_rate_api_bakong": "5/minute"}


@pytest.fixture
def tea(web: Web) -> None:
    add_product(
        web.app.database,
        sku="TEA",
        name="Lemon tea",
        name_km="តែក្រូចឆ្មា",
        price=Money(Decimal("1.25"), Currency.USD),
        stock=5,
        now_ms=web.app.clock.now_ms(),
    )


def _key(web: Web, client: str = "pos-1") -> str:
    return create_api_key(web.app.database, client, clock=web.app.clock, actor="cli").secret


@pytest.fixture
def api(web: Web) -> Iterator[httpx.Client]:
    with api_client(web.url, _key(web)) as client:
        yield client


def _orders(web: Web) -> int:
    with web.app.database.read() as uow:
        return int(
            uow.connection.execute(sa.select(sa.func.count()).select_from(t.orders)).scalar_one()
        )


BY_AMOUNT = {"amount": "1.50", "currency": "USD", "reference": "INV-0042"}


@SQLITE_ONLY
def test_requests_without_a_valid_key_are_refused(web: Web) -> None:
    key = _key(web)
    for headers in ({}, {"authorization": "Bearer khqr_nope"}, {"authorization": "Basic eDp5"}):
        answer = httpx.get(f"{web.url}/api/v1/products", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    revoke_api_key(web.app.database, "pos-1", clock=web.app.clock, actor="cli")
    revoked = httpx.get(f"{web.url}/api/v1/products", headers={"authorization": f"Bearer {key}"})
    assert revoked.status_code == 401


@SQLITE_ONLY
@pytest.mark.usefixtures("tea")
def test_an_order_from_lines_answers_201_with_its_khqr_and_links(
    web: Web, api: httpx.Client
) -> None:
    answer = api.post(
        "/api/v1/orders",
        json={"lines": [{"sku": "TEA", "quantity": 2}], "customer": {"name": "Dara"}},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "PENDING"
    assert (body["amount"], body["currency"], body["reference"]) == ("2.50", "USD", None)
    assert body["qr"].startswith("000201")
    assert len(body["md5"]) == 32
    assert body["expires_at"].endswith("Z")
    assert body["lines"] == [
        {
            "sku": "TEA",
            "name": "Lemon tea",
            "name_km": "តែក្រូចឆ្មា",
            "unit_price": "1.25",
            "quantity": 2,
            "total": "2.50",
        }
    ]
    assert body["customer"] == {"name": "Dara", "phone": None}
    order = web.app.database
    with order.read() as uow:
        token = uow.orders.get(body["id"]).public_token
        assert uow.products.by_skus(["TEA"])["TEA"].stock == 5  # stock is taken on payment
    assert body["links"] == {
        "payment_page": f"{web.url}/pay/{token}",
        "qr_png": f"{web.url}/api/v1/orders/{body['id']}/qr.png",
        "qr_svg": f"{web.url}/api/v1/orders/{body['id']}/qr.svg",
        "events": f"{web.url}/api/v1/orders/{body['id']}/events",
    }
    assert api.get(f"/api/v1/orders/{body['id']}").json() == body


@SQLITE_ONLY
@pytest.mark.usefixtures("tea")
def test_an_order_by_amount_completes_when_paid_and_takes_no_stock(
    web: Web, api: httpx.Client
) -> None:
    created = api.post("/api/v1/orders", json=BY_AMOUNT)
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["amount"], body["reference"], body["lines"]) == ("1.50", "INV-0042", [])
    web.pay(body["qr"])
    checked = api.get(f"/api/v1/orders/{body['id']}/check")
    assert checked.status_code == 200
    assert checked.json()["qrs"][0]["bakong"] == "paid"
    assert checked.json()["status"] == "PENDING"  # Check Payment Status changes nothing
    verified = api.post(f"/api/v1/orders/{body['id']}/verify")
    assert verified.status_code == 200
    assert verified.json()["status"] == "COMPLETED"
    order = api.get(f"/api/v1/orders/{body['id']}").json()
    assert order["status"] == "COMPLETED"
    assert Decimal(order["payments"][0]["amount"]) == Decimal("1.50")  # as Bakong wrote it
    with web.app.database.read() as uow:
        assert uow.products.by_skus(["TEA"])["TEA"].stock == 5
        actors = {entry.actor for entry in uow.audit.for_order(body["id"])}
    assert "api:pos-1" in actors


INVALID = [
    ({"lines": [{"sku": "TEA", "quantity": 0}]}, "lines.0.quantity"),
    ({"lines": [{"sku": "TEA", "quantity": "2"}]}, "lines.0.quantity"),
    ({"lines": [{"sku": "bad sku!", "quantity": 1}]}, "lines.0.sku"),
    ({"lines": []}, "lines"),
    ({"amount": 1.5, "currency": "USD", "reference": "R-1"}, "amount"),
    ({"amount": "1.505", "currency": "USD", "reference": "R-1"}, "amount"),
    ({"amount": "1.5", "currency": "KHR", "reference": "R-1"}, "amount"),
    ({"amount": "1.50", "currency": "EUR", "reference": "R-1"}, "currency"),
    ({"amount": "1.50", "currency": "USD", "reference": "INV\n42"}, "reference"),
    ({**BY_AMOUNT, "customer": {"phone": "+1 555 0100"}}, "customer.phone"),
    ({**BY_AMOUNT, "customer": {"name": "x" * 101}}, "customer.name"),
    ({**BY_AMOUNT, "tip": "1"}, "tip"),
]


@SQLITE_ONLY
@pytest.mark.parametrize(("body", "field"), INVALID)
def test_invalid_input_is_422_naming_the_field_and_saves_nothing(
    web: Web, api: httpx.Client, body: dict[str, Any], field: str
) -> None:
    answer = api.post("/api/v1/orders", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["field"] == field
    assert error["message"].startswith(f"{field}:")
    assert _orders(web) == 0


@SQLITE_ONLY
@pytest.mark.parametrize(
    "body",
    [{}, {"lines": [{"sku": "TEA", "quantity": 1}], **BY_AMOUNT}, {"amount": "1.50"}],
)
def test_an_order_needs_lines_or_an_amount_with_its_currency_and_reference(
    web: Web, api: httpx.Client, body: dict[str, Any]
) -> None:
    answer = api.post("/api/v1/orders", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_input"
    assert _orders(web) == 0


@SQLITE_ONLY
@pytest.mark.usefixtures("tea")
def test_lines_the_shop_cannot_sell_are_refused_with_their_own_codes(
    web: Web, api: httpx.Client
) -> None:
    for sku, stock in (("GONE", 0), ("OLD", 5)):
        add_product(
            web.app.database,
            sku=sku,
            name=sku.title(),
            price=Money(Decimal("1.00"), Currency.USD),
            stock=stock,
            now_ms=web.app.clock.now_ms(),
        )
    set_product_active(web.app.database, "OLD", active=False, clock=web.app.clock, actor="cli")
    cases = [
        ([("TEA", 1), ("NOPE", 1)], 422, "unknown_sku", "lines.1.sku"),
        ([("TEA", 6)], 409, "insufficient_stock", "lines.0"),
        ([("TEA", 1), ("GONE", 1)], 409, "insufficient_stock", "lines.1"),
        ([("OLD", 1)], 409, "not_for_sale", "lines.0"),
    ]
    for lines, status, code, field in cases:
        body = {"lines": [{"sku": sku, "quantity": n} for sku, n in lines]}
        answer = api.post("/api/v1/orders", json=body)
        assert answer.status_code == status, answer.text
        assert (answer.json()["error"]["code"], answer.json()["error"]["field"]) == (code, field)
    assert _orders(web) == 0


@SQLITE_ONLY
def test_the_same_idempotency_key_gives_the_same_order_and_refuses_another_body(
    web: Web, api: httpx.Client
) -> None:
    key = {"idempotency-key": "order-7f3a"}
    first = api.post("/api/v1/orders", json=BY_AMOUNT, headers=key)
    again = api.post("/api/v1/orders", json=dict(reversed(BY_AMOUNT.items())), headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    other = api.post("/api/v1/orders", json={**BY_AMOUNT, "amount": "2.00"}, headers=key)
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    # Keys belong to their client: another client's same key is another request.
    with api_client(web.url, _key(web, "pos-2")) as second:
        elsewhere = second.post("/api/v1/orders", json=BY_AMOUNT, headers=key)
    assert elsewhere.status_code == 201
    assert elsewhere.json()["id"] != first.json()["id"]
    bad = api.post("/api/v1/orders", json=BY_AMOUNT, headers={"idempotency-key": "has space"})
    assert bad.status_code == 422
    assert _orders(web) == 2


def test_two_identical_requests_at_the_same_moment_make_one_order(web: Web) -> None:
    key = _key(web)
    barrier = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def send() -> None:
        with api_client(web.url, key) as client:
            barrier.wait()
            answers.append(
                client.post(
                    "/api/v1/orders", json=BY_AMOUNT, headers={"idempotency-key": "same-moment"}
                )
            )

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(answer.status_code for answer in answers) == [200] * 5 + [201]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert _orders(web) == 1


@SQLITE_ONLY
@pytest.mark.usefixtures("tea")
def test_a_client_sees_only_its_own_orders(web: Web, api: httpx.Client) -> None:
    mine = api.post("/api/v1/orders", json=BY_AMOUNT).json()["id"]
    browser = web.browser()
    browser.add("TEA")
    shop_token = browser.checkout()
    shop_order = web.order(shop_token).id
    with api_client(web.url, _key(web, "pos-2")) as other:
        theirs = other.post("/api/v1/orders", json=BY_AMOUNT).json()["id"]
        assert other.get(f"/api/v1/orders/{mine}").status_code == 404
    for order_id in (theirs, shop_order, 999_999):
        for path in ("", "/check", "/qr.png", "/qr.svg", "/events"):
            answer = api.get(f"/api/v1/orders/{order_id}{path}")
            assert answer.status_code == 404, (order_id, path)
            assert answer.json()["error"]["code"] == "not_found"
        assert api.post(f"/api/v1/orders/{order_id}/verify").status_code == 404
    assert [order["id"] for order in api.get("/api/v1/orders").json()["orders"]] == [mine]


@SQLITE_ONLY
def test_listing_pages_through_orders_with_filters(web: Web, api: httpx.Client) -> None:
    ids = [
        api.post("/api/v1/orders", json={**BY_AMOUNT, "reference": f"INV-{n}"}).json()["id"]
        for n in range(5)
    ]
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({} if cursor is None else {"cursor": cursor})
        page = api.get("/api/v1/orders", params=params).json()
        seen += [order["id"] for order in page["orders"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    assert api.get("/api/v1/orders", params={"status": "COMPLETED"}).json()["orders"] == []
    assert len(api.get("/api/v1/orders", params={"status": "PENDING"}).json()["orders"]) == 5
    changed_since = {"since": "2100-01-01T00:00:00Z"}
    assert api.get("/api/v1/orders", params=changed_since).json()["orders"] == []
    assert (
        len(
            api.get("/api/v1/orders", params={"since": "2000-01-01T07:00:00+07:00"}).json()[
                "orders"
            ]
        )
        == 5
    )
    for params, field in (
        ({"cursor": "bm90LWEtY3Vyc29y"}, "cursor"),
        ({"since": "2026-12-01T00:00:00"}, "since"),
        ({"status": "PAID"}, "status"),
        ({"limit": 0}, "limit"),
    ):
        answer = api.get("/api/v1/orders", params=params)
        assert answer.status_code == 422, params
        assert answer.json()["error"]["field"] == field


@SQLITE_ONLY
def test_the_qr_images_are_the_orders_current_code(web: Web, api: httpx.Client) -> None:
    body = api.post("/api/v1/orders", json=BY_AMOUNT).json()
    for style in ("card", "code"):
        png = api.get(f"/api/v1/orders/{body['id']}/qr.png", params={"style": style})
        assert png.headers["content-type"] == "image/png"
        (decoded,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png.content)))
        assert decoded.text == body["qr"]
    svg = api.get(f"/api/v1/orders/{body['id']}/qr.svg")
    assert svg.headers["content-type"] == "image/svg+xml"
    assert b"KHQR" in svg.content


@SQLITE_ONLY
def test_the_events_stream_replays_the_order_and_resumes_after_last_event_id(
    web: Web, api: httpx.Client
) -> None:
    body = api.post("/api/v1/orders", json=BY_AMOUNT).json()
    path = f"/api/v1/orders/{body['id']}/events"
    with event_stream(api, path) as stream:
        created = stream.wait_for(lambda event: event.data["topic"] == "order.created")
        assert created.data["order_id"] == body["id"]
    web.pay(body["qr"])
    api.post(f"/api/v1/orders/{body['id']}/verify")
    with event_stream(api, path, headers={"last-event-id": created.id or ""}) as resumed:
        done = resumed.wait_for(lambda event: event.data.get("to") == "COMPLETED")
    assert int(done.id or 0) > int(created.id or 0)
    assert all(event.data["topic"] != "order.created" for event in resumed.events)


def _watched(web: Web, order_id: int) -> bool:
    with web.app.database.read() as uow:
        (payment,) = uow.payments.for_order(order_id)
    return payment.hot_until_ms is not None and payment.hot_until_ms > web.app.clock.now_ms()


def test_a_till_asking_about_a_pending_order_watches_it(web: Web, api: httpx.Client) -> None:
    """Polling the order, showing its code or following its events is a customer about to pay,
    as the order's page is: the order is checked every watched interval."""
    asked, shown, followed = (api.post("/api/v1/orders", json=BY_AMOUNT).json() for _ in "abc")
    assert not any(_watched(web, order["id"]) for order in (asked, shown, followed))

    api.get(f"/api/v1/orders/{asked['id']}").raise_for_status()
    api.get(f"/api/v1/orders/{shown['id']}/qr.svg").raise_for_status()
    with event_stream(api, f"/api/v1/orders/{followed['id']}/events") as stream:
        stream.wait_for(lambda event: event.data["topic"] == "order.created")
        # The stream's watch is written beside it, not before its first event.
        deadline = time.monotonic() + 5
        while not _watched(web, followed["id"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _watched(web, followed["id"])

    assert _watched(web, asked["id"])
    assert _watched(web, shown["id"])


@SQLITE_ONLY
@pytest.mark.usefixtures("tea")
def test_products_lists_what_is_on_sale(api: httpx.Client) -> None:
    (tea,) = api.get("/api/v1/products").json()
    assert tea == {
        "id": tea["id"],
        "sku": "TEA",
        "name": "Lemon tea",
        "name_km": "តែក្រូចឆ្មា",
        "price": "1.25",
        "currency": "USD",
        "stock": 5,
        "active": True,
    }


@SQLITE_ONLY
def test_a_key_is_rate_limited_and_told_when_to_come_back(web: Web, api: httpx.Client) -> None:
    body = api.post("/api/v1/orders", json=BY_AMOUNT).json()
    bakong = [api.post(f"/api/v1/orders/{body['id']}/verify").status_code for _ in range(6)]
    assert bakong == [200] * 5 + [429]
    answers = [api.get("/api/v1/products") for _ in range(40)]
    limited = answers[-1]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["retry-after"]) >= 1
