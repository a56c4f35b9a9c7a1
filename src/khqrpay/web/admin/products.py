"""The owner's catalogue: list, add, rename (English and Khmer names) and reprice, take off sale
or back on, adjust stock with a reason. Plain forms (a redirect back with a message); every change
is audited by the services."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from khqrpay.money import Currency, Money, MoneyError
from khqrpay.orders.model import OrderError, Product
from khqrpay.services.products import (
    MAX_NAME_LENGTH,
    add_product,
    adjust_stock,
    list_products,
    recent_product_changes,
    set_product_active,
    update_product,
)
from khqrpay.web.admin.pages import Context, Owner, Reason, act, page
from khqrpay.web.context import WebContext
from khqrpay.web.i18n import _

router = APIRouter()
Name = Annotated[str, Form(max_length=MAX_NAME_LENGTH)]
Price = Annotated[str, Form(max_length=32)]
BACK = "/admin/products"


def _values(context: WebContext) -> dict[str, Any]:
    database = context.app.database
    return {
        "products": list_products(database),
        "changes": recent_product_changes(database),
        "currencies": [currency.value for currency in Currency],
    }


@router.get("/admin/products")
async def products_page(request: Request, context: Context, user: Owner) -> Response:
    values = await asyncio.to_thread(_values, context)
    return page(request, "products.html", user, values, section="products")


async def _change(
    request: Request, sku: str, change: Callable[[], Product], message: str
) -> Response:
    return await act(
        request,
        change,
        back=f"{BACK}#product-{sku}",
        message=message,
        refusals=(OrderError, MoneyError),
    )


@router.post("/admin/products")
async def create(
    *,
    request: Request,
    context: Context,
    user: Owner,
    sku: Annotated[str, Form(max_length=64)],
    name: Name,
    price: Price,
    currency: Annotated[Literal["KHR", "USD"], Form()],
    stock: Annotated[int, Form(ge=0)] = 0,
    name_km: Name = "",
) -> Response:
    app = context.app
    return await _change(
        request,
        sku,
        lambda: add_product(
            app.database,
            sku=sku.strip(),
            name=name,
            name_km=name_km,
            price=Money.parse(price, Currency(currency)),
            stock=stock,
            now_ms=app.clock.now_ms(),
            actor=user.actor,
        ),
        _("Product added."),
    )


@router.post("/admin/products/{sku}/update")
async def update(
    *,
    request: Request,
    context: Context,
    user: Owner,
    sku: str,
    name: Name = "",
    name_km: Name = "",
    price: Price = "",
    reason: Reason = "",
) -> Response:
    """New names and/or price (the currency stays); orders already made keep theirs. The form
    always sends the Khmer name as shown, so an empty one removes it."""
    app = context.app
    return await _change(
        request,
        sku,
        lambda: update_product(
            app.database,
            sku,
            name=name or None,
            name_km=name_km,
            price=price or None,
            clock=app.clock,
            actor=user.actor,
            reason=reason,
        ),
        _("Product saved."),
    )


@router.post("/admin/products/{sku}/sale")
async def set_on_sale(
    *,
    request: Request,
    context: Context,
    user: Owner,
    sku: str,
    on_sale: Annotated[Literal["0", "1"], Form()],
    reason: Reason = "",
) -> Response:
    app = context.app
    active = on_sale == "1"
    return await _change(
        request,
        sku,
        lambda: set_product_active(
            app.database, sku, active=active, clock=app.clock, actor=user.actor, reason=reason
        ),
        _("The product is on sale again.") if active else _("The product is off sale."),
    )


@router.post("/admin/products/{sku}/stock")
async def stock(
    *,
    request: Request,
    context: Context,
    user: Owner,
    sku: str,
    by: Annotated[int, Form()],
    reason: Reason = "",
) -> Response:
    """Add units (or take them away: a negative number), with a reason."""
    app = context.app
    return await _change(
        request,
        sku,
        lambda: adjust_stock(
            app.database, sku, by=by, reason=reason, clock=app.clock, actor=user.actor
        ),
        _("Stock adjusted."),
    )
