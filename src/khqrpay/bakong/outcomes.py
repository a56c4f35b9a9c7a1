"""What a Bakong check can answer: typed, immutable, and distinct from the errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from khqrpay.money import Currency, Money


@dataclass(frozen=True, slots=True)
class Transaction:
    """A transfer Bakong knows. It proves only that it exists: the merchant still compares
    amount, currency and `to_account_id` with the order."""

    hash: str
    amount: Decimal
    currency: str
    to_account_id: str
    from_account_id: str | None
    created_ms: int
    acknowledged_ms: int | None
    description: str | None
    tracking_status: str | None
    receiver_bank: str | None
    receiver_bank_account: str | None
    instruction_ref: str | None
    external_ref: str | None

    @property
    def short_hash(self) -> str:
        """The first 8 hex digits, what a customer reads off a receipt."""
        return self.hash[:8]

    def money(self) -> Money:
        """The amount as Money; raises MoneyError for a currency or precision KHQR cannot carry."""
        return Money(self.amount, Currency.parse(self.currency))


@dataclass(frozen=True, slots=True)
class Paid:
    """A transaction exists for the key checked."""

    kind: ClassVar[str] = "paid"
    transaction: Transaction


@dataclass(frozen=True, slots=True)
class NotFound:
    """No transaction yet (errorCode 1): the customer has not paid, or not yet."""

    kind: ClassVar[str] = "not_found"
    message: str = ""


@dataclass(frozen=True, slots=True)
class Failed:
    """Bakong recorded the transfer as failed (errorCode 3)."""

    kind: ClassVar[str] = "failed"
    message: str = ""


@dataclass(frozen=True, slots=True)
class StaticQr:
    """The md5 belongs to a static QR, which Bakong cannot check by md5 (errorCode 2)."""

    kind: ClassVar[str] = "static_qr"
    message: str = ""


CheckResult = Paid | NotFound | Failed | StaticQr


class AccountState(enum.Enum):
    EXISTS = "exists"
    NOT_FOUND = "not_found"  # errorCode 11
    INVALID = "invalid"  # errorCode 12


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """The answer of the account check for `account_id`."""

    account_id: str
    state: AccountState
    message: str = ""

    @property
    def exists(self) -> bool:
        return self.state is AccountState.EXISTS
