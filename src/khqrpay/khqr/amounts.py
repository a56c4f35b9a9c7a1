"""Amounts in tag 54: exact Decimals written the way the official SDK writes them, never rounded."""

from __future__ import annotations

from decimal import Decimal

from khqrpay.khqr.errors import KHQRDecodeError, KHQRError, KHQRInputError, SdkCode, shown
from khqrpay.khqr.fields import MAX_AMOUNT_LENGTH
from khqrpay.money import Currency, Money, MoneyError

# 13 characters hold at most 13 integer digits; checking this first keeps absurd exponents
# (1E+999999) away from any arithmetic.
_MAX_ADJUSTED_EXPONENT = MAX_AMOUNT_LENGTH - 1


def amount_to_text(amount: object, currency: Currency, *, field: str) -> str:
    """Tag 54's text for a positive Decimal amount (`100`, `1.50`, `0.01`); refuse all else."""
    if not isinstance(amount, Decimal):
        raise _invalid(field, f"the amount must be a Decimal, never {type(amount).__name__}")
    if not amount.is_finite():
        raise _invalid(field, f"the amount {amount} is not a finite number")
    if amount <= 0:
        raise _invalid(
            field,
            f"the amount {amount} must be greater than zero (leave it out for a static QR)",
        )
    if amount.adjusted() > _MAX_ADJUSTED_EXPONENT:
        raise _too_long(field, f"{amount:f}")
    text = _money(amount, currency, field).khqr_text()
    if len(text) > MAX_AMOUNT_LENGTH:
        raise _too_long(field, text)
    return text


def amount_from_text(text: str, currency: Currency, *, field: str) -> Money:
    """Read tag 54: plain digits with an optional fraction, exact in the currency, ≤ 13 chars."""
    if len(text) > MAX_AMOUNT_LENGTH:
        raise _too_long(field, text, error=KHQRDecodeError)
    integer, dot, fraction = text.partition(".")
    if not (_is_digits(integer) and (not dot or _is_digits(fraction))):
        raise KHQRDecodeError(
            field, f"the amount {shown(text)} is not a plain decimal number", SdkCode.AMOUNT_INVALID
        )
    return _money(Decimal(text), currency, field, error=KHQRDecodeError)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _money(
    amount: Decimal, currency: Currency, field: str, *, error: type[KHQRError] = KHQRInputError
) -> Money:
    try:
        return Money(amount, currency)
    except MoneyError as exc:
        raise error(field, str(exc), SdkCode.AMOUNT_INVALID) from None


def _invalid(field: str, rule: str) -> KHQRInputError:
    return KHQRInputError(field, rule, SdkCode.AMOUNT_INVALID)


def _too_long(field: str, text: str, *, error: type[KHQRError] = KHQRInputError) -> KHQRError:
    return error(
        field,
        f"the amount {shown(text)} would be {len(text)} characters; "
        f"at most {MAX_AMOUNT_LENGTH} are allowed",
        SdkCode.AMOUNT_INVALID,
    )
