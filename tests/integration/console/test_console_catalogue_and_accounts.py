"""The owner's pages: products and stock, every change audited with who and why; accounts."""

from __future__ import annotations

import pytest

from helpers.console import Console
from khqrpay.services.accounts import list_users
from khqrpay.services.products import list_products, recent_product_changes

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def flash_after(console: Console, answer_location: str) -> str:
    return console.page(answer_location.split("#", maxsplit=1)[0]).text


def test_an_owner_adds_edits_takes_off_sale_and_restocks_a_product(console: Console) -> None:
    console.as_owner()
    added = console.post(
        "/admin/products",
        script=False,
        sku="KAMPOT-PEPPER",
        name="Kampot pepper tea",
        name_km="តែម្រេចកំពត",
        price="2.50",
        currency="USD",
        stock="5",
    )
    assert added.status_code == 303
    assert "Product added." in flash_after(console, added.headers["location"])
    base = "/admin/products/KAMPOT-PEPPER"
    console.post(
        f"{base}/update",
        script=False,
        name="Kampot pepper tea (hot)",
        name_km="តែម្រេចកំពតក្តៅ",
        price="2.75",
    )
    console.post(f"{base}/stock", script=False, by="-2", reason="two cups broken")
    console.post(f"{base}/sale", script=False, on_sale="0", reason="out of season")

    (product,) = list_products(console.app.database)
    assert (product.name, product.name_km, str(product.price), product.stock, product.active) == (
        "Kampot pepper tea (hot)",
        "តែម្រេចកំពតក្តៅ",
        "2.75 USD",
        3,
        False,
    )
    changes = recent_product_changes(console.app.database)
    assert [change.action for change in changes] == [
        "product_deactivated",
        "stock_adjusted",
        "product_updated",
        "product_added",
    ]
    assert {change.actor for change in changes} == {"staff:olivia"}
    assert changes[1].reason == "two cups broken"
    page = console.page("/admin/products").text
    assert "two cups broken" in page
    assert "Off sale" in page
    # Both names in the list and the edit form; the change of Khmer name in the history.
    assert '<div lang="km">តែម្រេចកំពតក្តៅ</div>' in page
    assert 'name="name_km" maxlength="200" lang="km" value="តែម្រេចកំពតក្តៅ"' in page
    assert "តែម្រេចកំពត → តែម្រេចកំពតក្តៅ" in page
    # The form sends the Khmer name as shown: emptied, it is removed.
    console.post(f"{base}/update", script=False, name_km="")
    assert list_products(console.app.database)[0].name_km is None


def test_a_refused_change_says_why_and_changes_nothing(console: Console) -> None:
    console.as_owner()
    product = console.product(stock=1)
    answer = console.post(
        f"/admin/products/{product.sku}/stock", script=False, by="-3", reason="count"
    )
    assert "cannot take away 3" in flash_after(console, answer.headers["location"])
    no_reason = console.post(f"/admin/products/{product.sku}/stock", by="2", reason="")
    assert no_reason.status_code == 409
    assert "a reason is required" in no_reason.json()["error"]["message"]
    english = console.post(
        f"/admin/products/{product.sku}/update", name="Tea", name_km="Tea", price="9"
    )
    assert english.status_code == 409
    assert "a Khmer name must be written in Khmer script" in english.json()["error"]["message"]
    (unchanged,) = list_products(console.app.database)
    assert (unchanged.stock, unchanged.name_km, unchanged.name) == (1, None, product.name)


def test_an_owner_adds_an_account_that_can_log_in_then_disables_it(console: Console) -> None:
    console.as_owner()
    added = console.post(
        "/admin/users", script=False, name="Dara", role="staff", password="dara-password-1"
    )
    assert "Account added." in flash_after(console, added.headers["location"])
    weak = console.post("/admin/users", name="vanna", role="staff", password="short")
    assert weak.status_code == 409
    assert "10 to 256 characters" in weak.json()["error"]["message"]
    console.post("/admin/users/dara/access", disabled="1")
    assert [u.name for u in list_users(console.app.database) if u.disabled] == ["dara"]
    self_disable = console.post("/admin/users/olivia/access", disabled="1")
    assert self_disable.status_code == 409

    console.client.cookies.clear()
    assert console.login("dara", "dara-password-1").status_code == 401
