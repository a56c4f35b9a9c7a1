"""The catalogue, the cart (kept in the signed session) and checkout ("KHQR Payment")."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from khqrpay.money import Currency
from khqrpay.orders.model import (
    MAX_QUANTITY,
    LineRefused,
    NotEnoughStock,
    OrderError,
    normalize_customer_name,
    normalize_phone,
)
from khqrpay.services.checkout import Customer
from khqrpay.services.customers import Cart, check_out, price_cart, products_for_sale
from khqrpay.web.context import WebContext, web_context
from khqrpay.web.i18n import _, local_name
from khqrpay.web.ratelimit import Limit, client_address
from khqrpay.web.shop import session
from khqrpay.web.shop.pages import answer, local_path, render

router = APIRouter()
Context = Annotated[WebContext, Depends(web_context)]
Sku = Annotated[str, Form(min_length=1, max_length=64)]
Quantity = Annotated[int, Form(ge=0, le=MAX_QUANTITY)]
Optional = Annotated[str, Form(max_length=200)]


@router.get("/")
def catalogue(request: Request, context: Context) -> Response:
    # In the order of the names the reader sees (Khmer letters sort in their alphabet's order).
    products = sorted(
        products_for_sale(context.app.database),
        key=lambda product: (local_name(product).casefold(), product.sku),
    )
    return render(
        context, request, "catalogue.html", {"products": products, "in_cart": session.cart(request)}
    )


@router.post("/cart/add")
def add_to_cart(
    request: Request,
    context: Context,
    sku: Sku,
    quantity: Annotated[int, Form(ge=1, le=MAX_QUANTITY)] = 1,  # the catalogue adds one
    back: Annotated[str, Form(max_length=200)] = "/",
) -> Response:
    """Add to the cart; refused (nothing changes) for what is not on sale or sold out."""
    quantities = session.cart(request)
    priced = price_cart(context.app.database, {sku: quantities.get(sku, 0) + quantity})
    back = local_path(back, "/")
    if not priced.lines or not priced.lines[0].product.active:
        return answer(
            request, back=back, kind="bad", message=_("That item is not for sale."), status_code=409
        )
    line = priced.lines[0]
    if line.product.stock == 0:
        return answer(
            request,
            back=back,
            kind="bad",
            message=_("Sorry, %(name)s is sold out.") % {"name": local_name(line.product)},
            status_code=409,
        )
    quantities[sku] = min(line.quantity, line.product.stock)
    session.save_cart(request, quantities)
    kept = session.cart(request)
    return answer(
        request,
        back=back,
        kind="ok",
        message=_("Added %(name)s to your cart.") % {"name": local_name(line.product)},
        data={"cart_count": sum(kept.values()), "sku": sku, "in_cart": kept.get(sku, 0)},
    )


@router.post("/cart/update")
def update_cart(request: Request, sku: Sku, quantity: Quantity) -> Response:
    """Set a line's quantity; 0 removes it."""
    quantities = session.cart(request)
    if quantity == 0:
        quantities.pop(sku, None)
    elif sku in quantities:
        quantities[sku] = quantity
    session.save_cart(request, quantities)
    return RedirectResponse("/cart", status_code=303)


@router.get("/cart")
def show_cart(request: Request, context: Context) -> Response:
    return _cart_page(context, request, _priced(context, request))


def _priced(context: WebContext, request: Request) -> Cart:
    cart = price_cart(context.app.database, session.cart(request))
    if cart.gone:  # products that no longer exist leave the cart quietly
        session.save_cart(request, {line.product.sku: line.quantity for line in cart.lines})
    return cart


def _cart_page(
    context: WebContext,
    request: Request,
    cart: Cart,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        context,
        request,
        "cart.html",
        {"cart": cart, "errors": errors or {}, "typed": typed or {}},
        status_code=status_code,
    )


@router.post("/checkout")
def checkout(
    request: Request,
    context: Context,
    currency: Annotated[str, Form(pattern="^(KHR|USD)$")],
    name: Optional = "",
    phone: Optional = "",
) -> Response:
    """ "KHQR Payment": the order (PENDING) and its code, then the payment page. Stock is checked
    now and taken only when the payment is found."""
    context.limits.hit(Limit.CHECKOUT, client_address(request))
    errors = _customer_errors(name, phone)
    if errors:
        typed = {"name": name, "phone": phone}
        cart = _priced(context, request)
        return _cart_page(context, request, cart, errors=errors, typed=typed, status_code=422)
    try:
        created = check_out(
            context.app.database,
            quantities=session.cart(request),
            currency=Currency(currency),
            customer=Customer(name, phone),
            settings=context.app.settings,
            clock=context.app.clock,
        )
    except OrderError as exc:
        # The cart page already shows what is short or off sale; this is a change meanwhile.
        session.notify(request, "bad", _refusal(exc))
        return RedirectResponse("/cart", status_code=303)
    paid_skus = {line.sku for line in created.lines}
    session.save_cart(
        request, {sku: n for sku, n in session.cart(request).items() if sku not in paid_skus}
    )
    session.remember_orders(request, created.order.public_token)
    return RedirectResponse(f"/pay/{created.order.public_token}", status_code=303)


def _customer_errors(name: str, phone: str) -> dict[str, str]:
    errors = {}
    try:
        normalize_customer_name(name)
    except OrderError:
        errors["name"] = _("Please write your name on one line (at most 100 characters).")
    if phone.strip():
        try:
            normalize_phone(phone)
        except OrderError:
            errors["phone"] = _("Please give a Cambodian phone number, like 012 345 678.")
    return errors


def _refusal(exc: OrderError) -> str:
    if isinstance(exc, NotEnoughStock):
        return _("There is not enough %(sku)s left any more. Please change your cart.") % {
            "sku": exc.sku
        }
    if isinstance(exc, LineRefused):
        return _("%(sku)s is no longer for sale. Please remove it from your cart.") % {
            "sku": exc.sku
        }
    return _("Your order could not be placed. Please check your cart and try again.")
