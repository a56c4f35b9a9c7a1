"""`khqrpay products ...`: the catalogue: add, list, edit, take off sale, adjust stock."""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli.common import Reason, Staff, open_app, print_json, staff_actor
from khqrpay.money import Currency, Money
from khqrpay.services.products import (
    add_product,
    adjust_stock,
    list_products,
    set_product_active,
    update_product,
)
from khqrpay.services.schemas import ProductView

app = typer.Typer(help="Add, list and edit products.", no_args_is_help=True)
Sku = Annotated[str, typer.Argument(help="The product's SKU.")]
OptionalReason = Annotated[str | None, typer.Option(help="Why, for the audit trail.")]


@app.command()
def add(
    *,
    sku: Annotated[str, typer.Option(help="Stock-keeping unit, unique (e.g. TEA-1).")],
    name: Annotated[str, typer.Option(help="The product's name, in English.")],
    price: Annotated[str, typer.Option(help="In the currency's usual unit: 1.50 USD, 4000 KHR.")],
    currency: Annotated[str, typer.Option(help="KHR or USD.")],
    stock: Annotated[int, typer.Option(help="Units in stock.")],
    name_km: Annotated[
        str | None, typer.Option(help="Its name in Khmer, shown to Khmer readers.")
    ] = None,
) -> None:
    """Add a product."""
    with open_app() as app:
        product = add_product(
            app.database,
            sku=sku,
            name=name,
            name_km=name_km,
            price=Money.parse(price, Currency.parse(currency)),
            stock=stock,
            now_ms=app.clock.now_ms(),
            actor="cli",
        )
        print_json(ProductView.of(product).json_dict())


@app.command("list")
def list_command() -> None:
    """List every product, by SKU."""
    with open_app() as app:
        products = list_products(app.database)
    print_json([ProductView.of(product).json_dict() for product in products])


@app.command()
def update(
    sku: Sku,
    *,
    name: Annotated[str | None, typer.Option(help="The new English name.")] = None,
    name_km: Annotated[str | None, typer.Option(help='The new Khmer name; "" removes it.')] = None,
    price: Annotated[
        str | None, typer.Option(help="The new price, in the product's currency (it stays).")
    ] = None,
    reason: OptionalReason = None,
    staff: Staff = None,
) -> None:
    """Change a product's names and/or price; orders already made keep theirs."""
    with open_app() as app:
        product = update_product(
            app.database,
            sku,
            name=name,
            name_km=name_km,
            price=price,
            clock=app.clock,
            actor=staff_actor(staff),
            reason=reason,
        )
    print_json(ProductView.of(product).json_dict())


def _set_active(sku: str, *, active: bool, reason: str | None, staff: str | None) -> None:
    with open_app() as app:
        product = set_product_active(
            app.database,
            sku,
            active=active,
            clock=app.clock,
            actor=staff_actor(staff),
            reason=reason,
        )
    print_json(ProductView.of(product).json_dict())


@app.command()
def deactivate(sku: Sku, reason: OptionalReason = None, staff: Staff = None) -> None:
    """Take a product off sale: it cannot be ordered; its pending orders still complete."""
    _set_active(sku, active=False, reason=reason, staff=staff)


@app.command()
def activate(sku: Sku, reason: OptionalReason = None, staff: Staff = None) -> None:
    """Put a product back on sale."""
    _set_active(sku, active=True, reason=reason, staff=staff)


@app.command("adjust-stock")
def adjust_stock_command(
    sku: Sku,
    by: Annotated[
        int, typer.Option(help="Units to add; negative to take away (stock never below 0).")
    ],
    reason: Reason,
    staff: Staff = None,
) -> None:
    """Add or take away stock, with a reason."""
    with open_app() as app:
        product = adjust_stock(
            app.database, sku, by=by, reason=reason, clock=app.clock, actor=staff_actor(staff)
        )
    print_json(ProductView.of(product).json_dict())
