"""Row-mapping helpers the repositories share."""

from __future__ import annotations

from khqrpay.money import Currency, Money


def money(minor: int, currency: str) -> Money:
    """A stored `*_minor` amount and its `currency` column as `Money`."""
    return Money.from_minor(minor, Currency(currency))
