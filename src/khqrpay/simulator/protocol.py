"""The Bakong Open API wire format: error codes, messages and the response envelope.

Messages are the ones in `shared/reference/bakong-api.md`; the success messages of the account
check, deep link and token endpoints come from the Open API document's samples.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from khqrpay.money import Currency, Money


class ErrorCode(enum.IntEnum):
    NOT_FOUND = 1
    STATIC_QR = 2
    FAILED = 3
    DEEPLINK_PROVIDER = 4
    MISSING_FIELDS = 5
    UNAUTHORIZED = 6
    NOT_REGISTERED = 10
    ACCOUNT_NOT_FOUND = 11
    ACCOUNT_INVALID = 12


ERROR_MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.NOT_FOUND: "Transaction could not be found. Please check and try again.",
    ErrorCode.STATIC_QR: "Sorry, the system does not support static QR code.",
    ErrorCode.FAILED: "Transaction failed.",
    ErrorCode.DEEPLINK_PROVIDER: "Error requesting deeplink from provider.",
    ErrorCode.MISSING_FIELDS: "Missing required fields.",
    ErrorCode.UNAUTHORIZED: "Unauthorized, not yet requested for token or code invalid",
    ErrorCode.NOT_REGISTERED: "Not registered yet",
    ErrorCode.ACCOUNT_NOT_FOUND: "Account ID not found",
    ErrorCode.ACCOUNT_INVALID: "Account ID is invalid.",
}

TRANSACTION_FOUND = "Getting transaction successfully."
ACCOUNT_EXISTS = "Account ID exists"
DEEPLINK_MADE = "Getting deep link successfully"
TOKEN_ISSUED = "Token has been issued"  # noqa: S105 - a message, not a secret
LIST_LIMIT = 50


class ItemStatus(enum.Enum):
    """The outcome of looking one key up, as list items name it."""

    SUCCESS = "SUCCESS"
    NOT_FOUND = "NOT_FOUND"
    STATIC_QR = "STATIC_QR"
    FAILED = "FAILED"

    @property
    def error_code(self) -> ErrorCode | None:
        return _STATUS_ERRORS[self]


_STATUS_ERRORS: dict[ItemStatus, ErrorCode | None] = {
    ItemStatus.SUCCESS: None,
    ItemStatus.NOT_FOUND: ErrorCode.NOT_FOUND,
    ItemStatus.STATIC_QR: ErrorCode.STATIC_QR,
    ItemStatus.FAILED: ErrorCode.FAILED,
}


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP status and the JSON envelope to send."""

    status: int
    body: dict[str, Any]


def success(data: Any, message: str) -> Reply:
    return Reply(
        200, {"responseCode": 0, "responseMessage": message, "errorCode": None, "data": data}
    )


def failure(code: ErrorCode, *, status: int = 200) -> Reply:
    return Reply(
        status,
        {
            "responseCode": 1,
            "responseMessage": ERROR_MESSAGES[code],
            "errorCode": code.value,
            "data": None,
        },
    )


def amount_json(money: Money, *, whole_usd_as_integer: bool) -> int | float:
    """The amount as the service writes it: a JSON number (`9800`, `1.0` or `1`, `0.01`).

    JSON has no decimal type, so USD goes out through a float; the value is checked to survive the
    trip exactly (two decimals always do), and no arithmetic is ever done on it.
    """
    if money.currency is Currency.KHR:
        return money.minor
    if whole_usd_as_integer and money.amount == money.amount.to_integral_value():
        return int(money.amount)
    wire = float(money.amount)
    if Decimal(repr(wire)) != money.amount:  # pragma: no cover - Money allows at most 2 decimals
        raise ValueError(f"{money} has no exact JSON number")
    return wire


def parse_json(raw: bytes) -> Any:
    """Request JSON with every non-integer number as a Decimal, never a float."""
    return json.loads(raw, parse_float=Decimal)
