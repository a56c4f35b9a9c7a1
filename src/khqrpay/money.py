"""Money: an exact Decimal amount in KHR or USD. Never a float, never rounded."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation


class Currency(enum.Enum):
    """The two currencies KHQR carries, with their ISO 4217 numeric codes and minor units."""

    KHR = "KHR"
    USD = "USD"

    @property
    def numeric(self) -> str:
        return _NUMERIC[self]

    @property
    def exponent(self) -> int:
        """Digits after the decimal point in the currency's usual unit (riel are whole)."""
        return _EXPONENT[self]

    @classmethod
    def from_numeric(cls, code: str) -> Currency:
        for currency, numeric in _NUMERIC.items():
            if numeric == code:
                return currency
        raise MoneyError(f"unsupported currency code {code!r}: KHQR carries 116 (KHR) or 840 (USD)")

    @classmethod
    def parse(cls, text: str) -> Currency:
        """Accept `KHR`/`USD` (any case) or the numeric codes `116`/`840`."""
        cleaned = text.strip().upper()
        if cleaned in cls.__members__:
            return cls[cleaned]
        return cls.from_numeric(cleaned)


_NUMERIC = {Currency.KHR: "116", Currency.USD: "840"}
_EXPONENT = {Currency.KHR: 0, Currency.USD: 2}
_PLAIN_DECIMAL = re.compile(r"^\d+(\.\d+)?$")


class MoneyError(ValueError):
    """An amount or currency that cannot be represented exactly."""


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount in one currency; `amount` always has at most the currency's decimals."""

    amount: Decimal
    currency: Currency

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise MoneyError("amounts are Decimal, never float")
        if not self.amount.is_finite():
            raise MoneyError("amount must be a finite number")
        if self.amount < 0:
            raise MoneyError("amount must not be negative")
        exponent = self.amount.as_tuple().exponent
        assert isinstance(exponent, int)
        try:
            needs_rounding = -exponent > self.currency.exponent and (
                self.amount != self.amount.quantize(Decimal(1).scaleb(-self.currency.exponent))
            )
        except InvalidOperation as exc:  # more digits than the decimal context can quantize
            raise MoneyError(f"amount {self.amount} has too many digits") from exc
        if needs_rounding:
            raise MoneyError(
                f"{self.currency.value} allows at most {self.currency.exponent} decimals; "
                f"{self.amount} would need rounding"
            )

    @classmethod
    def parse(cls, text: str, currency: Currency) -> Money:
        """Parse a plain decimal (`1.50`, `4000`) in the usual unit; refuse anything else."""
        cleaned = text.strip()
        if not _PLAIN_DECIMAL.match(cleaned):
            raise MoneyError(f"amount {text!r} is not a plain non-negative decimal number")
        try:
            return cls(Decimal(cleaned), currency)
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid decimals
            raise MoneyError(f"amount {text!r} is not a number") from exc

    @classmethod
    def from_minor(cls, minor: int, currency: Currency) -> Money:
        """From integer minor units (cents for USD, riel for KHR)."""
        if minor < 0:
            raise MoneyError("amount must not be negative")
        return cls(Decimal(minor).scaleb(-currency.exponent), currency)

    @property
    def minor(self) -> int:
        """The amount in integer minor units (exact by construction)."""
        return int(self.amount.scaleb(self.currency.exponent))

    def __add__(self, other: Money) -> Money:
        if other.currency is not self.currency:
            raise MoneyError("cannot add amounts in different currencies")
        return Money.from_minor(self.minor + other.minor, self.currency)

    def __mul__(self, quantity: int) -> Money:
        if not isinstance(quantity, int) or quantity < 0:
            raise MoneyError("a quantity is a non-negative whole number")
        return Money.from_minor(self.minor * quantity, self.currency)

    def same_value(self, other: Money) -> bool:
        """Equal amount and currency, whatever the written precision (1.5 == 1.50)."""
        return self.currency is other.currency and self.minor == other.minor

    def khqr_text(self) -> str:
        """The amount as the official SDK writes it in tag 54: KHR whole; USD `1` or `1.50`."""
        if self.currency is Currency.KHR or self.minor % 100 == 0:
            return str(self.minor // (100 if self.currency is Currency.USD else 1))
        return f"{self.minor // 100}.{self.minor % 100:02d}"

    def display(self) -> str:
        """For people: `4,000 ៛` / `$1.50`."""
        if self.currency is Currency.KHR:
            return f"{self.minor:,} ៛"
        return f"${self.minor // 100:,}.{self.minor % 100:02d}"

    def __str__(self) -> str:
        """For records and messages: every decimal of the currency (`25.00 USD`, `12000 KHR`)."""
        if self.currency is Currency.KHR:
            return f"{self.minor} KHR"
        return f"{self.minor // 100}.{self.minor % 100:02d} USD"
