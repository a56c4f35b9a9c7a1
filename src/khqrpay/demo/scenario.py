"""The demo's story: the café and its catalogue, the customers (pay-later ones, wrong amounts, an
old screenshot, you) and what each does, scripted from a seed. The customers buy through the web
app's JSON API over HTTP, as any client of the shop would."""

from __future__ import annotations

import enum
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.money import Currency, Money
from khqrpay.orders.model import LineRequest
from khqrpay.services.checkout import new_qr_for_order
from khqrpay.services.products import add_product, list_products, update_product
from khqrpay.settings import Settings

DAY_S = 24 * 3600
MIN_ORDERS = 4  # room for a pay-later customer, a wrong amount, an old screenshot and you


@dataclass(frozen=True, slots=True)
class DemoShop:
    account: str = "kampot_corner@aclb"
    name: str = "Kampot Corner Cafe"
    city: str = "Phnom Penh"


SHOP = DemoShop()
# Real seconds after the start at which the scripted customers act (the pay-later ones follow the
# simulator's drawn delays instead): late enough to see the order pending, early enough that a
# twenty-second run detects them.
WRONG_AMOUNT_AT_S = (4.0, 9.0)
NEW_CODE_PAID_AT_S = (3.0, 5.0)
SCREENSHOT_PAID_AT_S = (8.0, 11.0)


class DemoError(ValueError):
    """Demo options or set-up that cannot work; the message says why."""


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    sku: str
    english: str
    khmer: str
    price: Money
    stock: int

    @property
    def old_name(self) -> str:
        """The one name demos before Khmer names gave the product: both, joined."""
        return f"{self.english} · {self.khmer}"


def _item(sku: str, english: str, khmer: str, price: str, stock: int) -> CatalogueItem:
    """`price`: the amount and the currency, `"6000 KHR"`."""
    amount, currency = price.split()
    return CatalogueItem(sku, english, khmer, Money.parse(amount, Currency(currency)), stock)


CATALOGUE: tuple[CatalogueItem, ...] = (
    _item("ICED-COFFEE", "Iced coffee", "កាហ្វេទឹកដោះគោទឹកកក", "6000 KHR", 300),
    _item("NUM-PANG", "Num pang pâté sandwich", "នំបុ័ងប៉ាតេ", "8000 KHR", 120),
    _item("NOM-BANH-CHOK", "Nom banh chok", "នំបញ្ចុក", "7000 KHR", 80),
    _item("SUGARCANE", "Sugarcane juice", "ទឹកអំពៅ", "3000 KHR", 200),
    _item("NUM-AKAO", "Num akao cake", "នំអាកោ", "2000 KHR", 150),
    _item("LEMON-TEA", "Iced lemon tea", "តែក្រូចឆ្មាទឹកកក", "4000 KHR", 200),
    _item("ICED-LATTE", "Iced latte", "ឡាតេទឹកកក", "2.75 USD", 250),
    _item("AMOK-SET", "Fish amok lunch set", "អាម៉ុកត្រី", "4.50 USD", 60),
    _item("MANGO-RICE", "Mango sticky rice", "បាយដំណើបស្វាយ", "3.50 USD", 80),
    _item("KAMPOT-PEPPER", "Kampot pepper, 100 g", "ម្រេចកំពត ១០០ ក្រាម", "6.50 USD", 40),
    _item(
        "MONDULKIRI-BEANS",
        "Mondulkiri coffee beans, 250 g",
        "កាហ្វេមណ្ឌលគិរី ២៥០ ក្រាម",
        "8.00 USD",
        40,
    ),
    _item("KRAMA", "Cotton krama scarf", "ក្រមាកប្បាស", "5.00 USD", 30),
)


# Mobile prefixes of Cambodian operators (Cellcard, Smart, Metfone), for customers' phones.
PHONE_PREFIXES = ("012", "017", "077", "085", "089", "010", "015", "069", "070", "086", "097")


def draw_cart(rng: random.Random) -> list[LineRequest]:
    """One to three different products of one currency, one or two of each."""
    currency = rng.choice(list(Currency))
    products = [item for item in CATALOGUE if item.price.currency is currency]
    chosen = rng.sample(products, rng.randint(1, 3))
    return [LineRequest(item.sku, rng.randint(1, 2)) for item in chosen]


def draw_phone(rng: random.Random) -> str | None:
    """Most customers leave a phone number for the receipt; some do not."""
    if rng.random() < 0.3:
        return None
    return f"{rng.choice(PHONE_PREFIXES)} {rng.randrange(1000):03d} {rng.randrange(1000):03d}"


class CustomerKind(enum.Enum):
    PAY_LATER = "pay_later"  # the simulator's customer: pays after a delay drawn from the pattern
    WRONG_AMOUNT = "wrong_amount"  # types a different amount into the banking app
    OLD_SCREENSHOT = "old_screenshot"  # pays the fresh code, then a screenshot of the first one
    BY_HAND = "by_hand"  # left for the person watching, through the banking-app page


def plan_customers(count: int, rng: random.Random) -> tuple[CustomerKind, ...]:
    """Who pays how: one order in six (at least one) pays the wrong amount, one pays twice from
    an old screenshot, one is left to pay by hand; the others are pay-later customers."""
    if count < MIN_ORDERS:
        raise DemoError(f"the demo needs at least {MIN_ORDERS} orders")
    wrong = max(1, count // 6)
    kinds = [CustomerKind.WRONG_AMOUNT] * wrong + [CustomerKind.OLD_SCREENSHOT]
    kinds += [CustomerKind.PAY_LATER] * (count - len(kinds) - 1)
    rng.shuffle(kinds)
    # The last order is yours: the banking-app link on screen stays the same all along.
    return (*kinds, CustomerKind.BY_HAND)


def wrong_amount(total: Money) -> Money:
    """What a customer who mistypes pays: 1,000 riel or 50 cents less (more if the total is
    smaller than that)."""
    step = Money.from_minor(1000 if total.currency is Currency.KHR else 50, total.currency)
    if total.minor > step.minor:
        return Money.from_minor(total.minor - step.minor, total.currency)
    return total + step


@dataclass(frozen=True, slots=True)
class DemoOrder:
    """An order the demo made, and what its customer does."""

    id: int
    total: Money
    items: str
    qr: str
    kind: CustomerKind
    # OLD_SCREENSHOT: the first code, whose screenshot the customer pays after the fresh one.
    first_qr: str | None = field(default=None, repr=False)


def describe_delay(seconds: float) -> str:
    """A pay-later delay for people: `40 s`, `12 min`, `3.1 h`, `4.5 days`."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < DAY_S:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / DAY_S:.1f} days"


def customer_note(order: DemoOrder, delay_s: float | None) -> str:
    """What this order's customer is going to do, in a few words."""
    match order.kind:
        case CustomerKind.PAY_LATER:
            return "never pays" if delay_s is None else f"pays after {describe_delay(delay_s)}"
        case CustomerKind.WRONG_AMOUNT:
            return f"pays {wrong_amount(order.total).display()} instead"
        case CustomerKind.OLD_SCREENSHOT:
            return "pays twice (old screenshot)"
        case CustomerKind.BY_HAND:
            return "you: pay it by hand"


@dataclass(frozen=True)
class SimulatorEndpoint:
    url: str
    port: int
    token: str = field(repr=False)
    # Set when the asked port was taken and another was picked.
    port_note: str | None = None


@dataclass(frozen=True)
class DemoLinks:
    """Where a person goes: the shop, the staff console with the owner's login, the simulator's
    banking-app page; and why a port other than the one asked for is used."""

    shop: str
    console: str
    owner: str
    password: str = field(repr=False)
    banking_app: str
    port_notes: tuple[str, ...] = ()

    def lines(self) -> list[str]:
        """The three lines the README describes, each on its own line."""
        return [
            f"Shop: {self.shop}",
            f"Staff console: {self.console} (login {self.owner}, password {self.password})",
            f"Banking app: {self.banking_app}",
        ]


def banking_app_url(simulator_url: str, qr: str) -> str:
    return f"{simulator_url}/_sim/app?qr={quote(qr, safe='')}"


def seed_catalogue(database: Database, clock: Clock) -> int:
    """Add the catalogue's products the shop does not have yet (a product staff changed stays as
    they left it); how many were added. A product still named as an earlier demo named it,
    "English · Khmer" in one name, gets its two names apart."""
    known = {product.sku: product for product in list_products(database)}
    missing = [item for item in CATALOGUE if item.sku not in known]
    for item in missing:
        add_product(
            database,
            sku=item.sku,
            name=item.english,
            name_km=item.khmer,
            price=item.price,
            stock=item.stock,
            now_ms=clock.now_ms(),
        )
    for item in CATALOGUE:
        kept = known.get(item.sku)
        if kept is not None and kept.name == item.old_name and kept.name_km is None:
            update_product(
                database,
                item.sku,
                name=item.english,
                name_km=item.khmer,
                clock=clock,
                actor="system",
                reason="the demo's English and Khmer names apart",
            )
    return len(missing)


async def buy(api: httpx.AsyncClient, rng: random.Random) -> dict[str, Any]:
    """A customer's order through the JSON API (`api`: its base URL and key); the order as the
    API shows it."""
    body: dict[str, Any] = {
        "lines": [{"sku": line.sku, "quantity": line.quantity} for line in draw_cart(rng)]
    }
    phone = draw_phone(rng)
    if phone is not None:
        body["customer"] = {"phone": phone}
    response = await api.post("/api/v1/orders", json=body)
    if response.status_code != httpx.codes.CREATED:
        raise DemoError(f"the shop refused a customer's order: {response.text}")
    order: dict[str, Any] = response.json()
    return order


async def create_demo_orders(
    api: httpx.AsyncClient,
    *,
    database: Database,
    settings: Settings,
    clock: Clock,
    kinds: Sequence[CustomerKind],
    rng: random.Random,
) -> list[DemoOrder]:
    """One order per customer, each bought through the API; the old-screenshot customer's
    order gets a second, fresh code (as when the payment page is reloaded)."""
    orders = []
    for kind in kinds:
        bought = await buy(api, rng)
        first_qr = None
        qr = bought["qr"]
        if kind is CustomerKind.OLD_SCREENSHOT:
            first_qr = qr
            qr = new_qr_for_order(
                database, order_id=bought["id"], settings=settings, clock=clock
            ).qr
        items = ", ".join(
            f"{line['name']} ×{line['quantity']}" if line["quantity"] > 1 else line["name"]
            for line in bought["lines"]
        )
        total = Money.parse(bought["amount"], Currency(bought["currency"]))
        orders.append(DemoOrder(bought["id"], total, items, qr, kind, first_qr))
    return orders


@dataclass(frozen=True, slots=True)
class ScriptedPayment:
    """A payment the demo makes itself through `/_sim/pay`, `at_s` real seconds after the start."""

    at_s: float
    order_id: int
    qr: str = field(repr=False)
    amount: Decimal | None
    what: str


def script_payments(orders: Sequence[DemoOrder], rng: random.Random) -> list[ScriptedPayment]:
    """The wrong-amount and old-screenshot customers' payments, in time order."""
    script = []
    for order in orders:
        if order.kind is CustomerKind.WRONG_AMOUNT:
            paid = wrong_amount(order.total)
            what = f"pays {paid.display()} for a {order.total.display()} order"
            at_s = rng.uniform(*WRONG_AMOUNT_AT_S)
            script.append(ScriptedPayment(at_s, order.id, order.qr, paid.amount, what))
        elif order.kind is CustomerKind.OLD_SCREENSHOT:
            assert order.first_qr is not None
            new_at_s, old_at_s = (
                rng.uniform(*NEW_CODE_PAID_AT_S),
                rng.uniform(*SCREENSHOT_PAID_AT_S),
            )
            script += [
                ScriptedPayment(new_at_s, order.id, order.qr, None, "pays the new code"),
                ScriptedPayment(
                    old_at_s,
                    order.id,
                    order.first_qr,
                    None,
                    "pays again: a screenshot of the first",
                ),
            ]
    return sorted(script, key=lambda payment: payment.at_s)
