"""What a customer's browser keeps in its signed session cookie: the cart (SKU → quantity), the
tokens of its orders ("My orders"), and one-time notices shown on the next page.

The cookie is signed, not encrypted, and holds nothing but these. Its size is bounded: a cookie
is at most 4 KB, so the cart keeps MAX_CART_LINES lines and My orders the newest
MAX_REMEMBERED_ORDERS orders.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from khqrpay.orders.model import MAX_QUANTITY

MAX_CART_LINES = 30
MAX_REMEMBERED_ORDERS = 40
_CART = "cart"
_ORDERS = "orders"
_NOTICE = "notice"
# What checkout's `secrets.token_urlsafe(24)` makes: 32 URL-safe characters.
TOKEN = re.compile(r"^[A-Za-z0-9_-]{32}$")
_TOKEN_IN_TEXT = re.compile(r"(?:^|/)([A-Za-z0-9_-]{32})(?:[/?#]|$)")


def cart(request: Request) -> dict[str, int]:
    """SKU → quantity; anything unexpected in the cookie is dropped, never trusted."""
    stored = request.session.get(_CART)
    if not isinstance(stored, dict):
        return {}
    return {
        sku: quantity
        for sku, quantity in stored.items()
        if isinstance(sku, str)
        and isinstance(quantity, int)
        and not isinstance(quantity, bool)
        and 0 < quantity <= MAX_QUANTITY
    }


def save_cart(request: Request, quantities: dict[str, int]) -> None:
    kept = {sku: quantity for sku, quantity in quantities.items() if quantity > 0}
    request.session[_CART] = dict(list(kept.items())[:MAX_CART_LINES])


def remembered_orders(request: Request) -> list[str]:
    """The tokens of this browser's orders, newest first."""
    stored = request.session.get(_ORDERS)
    if not isinstance(stored, list):
        return []
    return [token for token in stored if isinstance(token, str) and TOKEN.match(token)]


def remember_orders(request: Request, *tokens: str) -> None:
    """Put orders at the top of My orders (the newest are kept)."""
    current = [token for token in remembered_orders(request) if token not in tokens]
    request.session[_ORDERS] = [*tokens, *current][:MAX_REMEMBERED_ORDERS]


def token_in(text: str) -> str | None:
    """The order token in what a customer pasted: the payment page's link, or the token."""
    cleaned = text.strip()
    if TOKEN.match(cleaned):
        return cleaned
    match = _TOKEN_IN_TEXT.search(cleaned)
    return match.group(1) if match else None


def notify(request: Request, kind: str, message: str) -> None:
    """A notice for the next page this browser opens (`kind`: ok, warn or bad)."""
    request.session[_NOTICE] = {"kind": kind, "message": message}


def take_notice(request: Request) -> dict[str, Any] | None:
    notice = request.session.pop(_NOTICE, None)
    return notice if isinstance(notice, dict) else None
