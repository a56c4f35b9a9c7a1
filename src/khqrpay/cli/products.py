"""`khqrpay products ...`: the catalogue."""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli.common import amount, open_database, print_json
from khqrpay.clock import SystemClock
from khqrpay.money import Currency, Money
from khqrpay.orders.model import Product
from khqrpay.services.products import add_product, list_products

app = typer.Typer(help="Add and list products.", no_args_is_help=True)


def product_json(product: Product) -> dict[str, object]:
    return {
        "id": product.id,
        "sku": product.sku,
        "name": product.name,
        "price": amount(product.price),
        "currency": product.price.currency.value,
        "stock": product.stock,
        "active": product.active,
    }


@app.command()
def add(
    sku: Annotated[str, typer.Option(help="Stock-keeping unit, unique (e.g. TEA-1).")],
    name: Annotated[str, typer.Option(help="The product's name.")],
    price: Annotated[str, typer.Option(help="In the currency's usual unit: 1.50 USD, 4000 KHR.")],
    currency: Annotated[str, typer.Option(help="KHR or USD.")],
    stock: Annotated[int, typer.Option(help="Units in stock.")],
) -> None:
    """Add a product."""
    with open_database() as (database, _settings):
        unit_price = Money.parse(price, Currency.parse(currency))
        with database.write() as uow:
            product = add_product(
                uow,
                sku=sku,
                name=name,
                price=unit_price,
                stock=stock,
                now_ms=SystemClock().now_ms(),
                actor="cli",
            )
        print_json(product_json(product))


@app.command("list")
def list_command() -> None:
    """List every product, by SKU."""
    with open_database() as (database, _settings), database.read() as uow:
        print_json([product_json(product) for product in list_products(uow)])
