"""`khqrpay products ...`: the catalogue."""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli.common import open_app, print_json
from khqrpay.money import Currency, Money
from khqrpay.services.products import add_product, list_products
from khqrpay.services.schemas import ProductView

app = typer.Typer(help="Add and list products.", no_args_is_help=True)


@app.command()
def add(
    sku: Annotated[str, typer.Option(help="Stock-keeping unit, unique (e.g. TEA-1).")],
    name: Annotated[str, typer.Option(help="The product's name.")],
    price: Annotated[str, typer.Option(help="In the currency's usual unit: 1.50 USD, 4000 KHR.")],
    currency: Annotated[str, typer.Option(help="KHR or USD.")],
    stock: Annotated[int, typer.Option(help="Units in stock.")],
) -> None:
    """Add a product."""
    with open_app() as app:
        product = add_product(
            app.database,
            sku=sku,
            name=name,
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
