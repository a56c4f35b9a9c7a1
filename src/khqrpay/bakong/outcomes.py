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
    amount, currency and `to_account_id` with the order.

    Bakong may leave out every field but hash, amount and currency: None means "not stated".
    `received_ms` is when this client received the answer (our clock), the fallback for a
    payment time Bakong does not give.
    """

    hash: str
    amount: Decimal
    currency: str
    received_ms: int
    to_account_id: str | None = None
    from_account_id: str | None = None
    created_ms: int | None = None
    acknowledged_ms: int | None = None
    description: str | None = None
    tracking_status: str | None = None
    receiver_bank: str | None = None
    receiver_bank_account: str | None = None
    instruction_ref: str | None = None
    external_ref: str | None = None

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


# `accountStatus` values that mean the account takes no payments. Another value that is not
# ACTIVE is reported, not refused: Bakong has not documented them all.
CLOSED_ACCOUNT_STATUSES = frozenset(
    {"INACTIVE", "CLOSED", "BLOCKED", "SUSPENDED", "DORMANT", "FROZEN", "DISABLED", "TERMINATED"}
)
ACTIVE_ACCOUNT_STATUS = "ACTIVE"


@dataclass(frozen=True, slots=True)
class AccountStatus:
    """The answer of the account check for `account_id`; the details are None when not stated
    (older answers carry no `data`)."""

    account_id: str
    state: AccountState
    message: str = ""
    account_status: str | None = None
    can_receive: bool | None = None
    frozen: bool | None = None
    kyc_status: str | None = None

    @property
    def exists(self) -> bool:
        return self.state is AccountState.EXISTS

    def receiving_problems(self) -> tuple[str, ...]:
        """Why payments to this account cannot arrive; empty when nothing says they cannot."""
        if self.state is AccountState.NOT_FOUND:
            return ("Bakong does not know this account",)
        if self.state is AccountState.INVALID:
            return ("Bakong says this account id is invalid",)
        problems = []
        if self.can_receive is False:
            problems.append("Bakong says it cannot receive payments (canReceive false)")
        if self.frozen:
            problems.append("the account is frozen")
        if (self.account_status or "").strip().upper() in CLOSED_ACCOUNT_STATUSES:
            problems.append(f"its status is {self.account_status}")
        return tuple(problems)

    def remarks(self) -> tuple[str, ...]:
        """What is worth a look but does not stop payments: an undocumented status, the KYC."""
        remarks = []
        status = (self.account_status or "").strip().upper()
        if status and status != ACTIVE_ACCOUNT_STATUS and status not in CLOSED_ACCOUNT_STATUSES:
            remarks.append(f"its status is {self.account_status!r}, which Bakong does not document")
        if self.kyc_status is not None:
            remarks.append(f"its KYC status is {self.kyc_status!r}")
        return tuple(remarks)
