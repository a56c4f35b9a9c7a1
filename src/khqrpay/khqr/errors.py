"""Typed codec errors: each names the field, the rule it broke and the SDK code if any."""

from __future__ import annotations

import enum


class SdkCode(enum.IntEnum):
    """Error codes of the official NBC `bakong-khqr` SDK, so callers can match its numbering."""

    ACCOUNT_ID_REQUIRED = 1
    MERCHANT_NAME_REQUIRED = 2
    ACCOUNT_ID_INVALID = 3
    AMOUNT_INVALID = 4
    MERCHANT_TYPE_REQUIRED = 5
    ACCOUNT_ID_LENGTH_INVALID = 6
    MERCHANT_NAME_LENGTH_INVALID = 7
    KHQR_INVALID = 8
    CURRENCY_REQUIRED = 9
    BILL_NUMBER_LENGTH_INVALID = 10
    STORE_LABEL_LENGTH_INVALID = 11
    TERMINAL_LABEL_LENGTH_INVALID = 12
    PAYLOAD_FORMAT_INDICATOR_LENGTH_INVALID = 16
    POINT_OF_INITIATION_LENGTH_INVALID = 17
    MERCHANT_CATEGORY_CODE_LENGTH_INVALID = 18
    CURRENCY_LENGTH_INVALID = 19
    COUNTRY_CODE_LENGTH_INVALID = 20
    MERCHANT_CITY_LENGTH_INVALID = 21
    CRC_LENGTH_INVALID = 22
    PAYLOAD_FORMAT_INDICATOR_REQUIRED = 23
    CRC_REQUIRED = 24
    MERCHANT_CATEGORY_CODE_REQUIRED = 25
    COUNTRY_CODE_REQUIRED = 26
    MERCHANT_CITY_REQUIRED = 27
    UNSUPPORTED_CURRENCY = 28
    MERCHANT_ID_REQUIRED = 30
    ACQUIRING_BANK_REQUIRED = 31
    MERCHANT_ID_LENGTH_INVALID = 32
    ACQUIRING_BANK_LENGTH_INVALID = 33
    MOBILE_NUMBER_LENGTH_INVALID = 34
    ACCOUNT_INFORMATION_LENGTH_INVALID = 35
    LANGUAGE_PREFERENCE_REQUIRED = 37
    LANGUAGE_PREFERENCE_LENGTH_INVALID = 38
    MERCHANT_NAME_ALT_REQUIRED = 39
    MERCHANT_NAME_ALT_LENGTH_INVALID = 40
    MERCHANT_CITY_ALT_LENGTH_INVALID = 41
    PURPOSE_LENGTH_INVALID = 42
    UPI_ACCOUNT_LENGTH_INVALID = 43
    UPI_ACCOUNT_WITH_USD = 44
    EXPIRATION_REQUIRED = 45
    EXPIRED = 46
    DYNAMIC_WITHOUT_AMOUNT = 47
    POINT_OF_INITIATION_INVALID = 48
    EXPIRATION_LENGTH_INVALID = 49
    EXPIRATION_IN_THE_PAST = 50
    MERCHANT_CATEGORY_CODE_INVALID = 51


class KHQRError(ValueError):
    """A KHQR problem: `field` (an input name or `tag 62/01`), `rule` (a sentence), `code`."""

    def __init__(self, field: str, rule: str, code: SdkCode | None = None) -> None:
        self.field = field
        self.rule = rule
        self.code = code
        suffix = f" [SDK code {int(code)}]" if code is not None else ""
        super().__init__(f"{field}: {rule}{suffix}")

    def __reduce__(self) -> tuple[type[KHQRError], tuple[str, str, SdkCode | None]]:
        return (type(self), (self.field, self.rule, self.code))


class KHQRInputError(KHQRError):
    """`encode` refused its input."""


class KHQRVerifyError(KHQRError):
    """A string that is not a valid KHQR."""


class KHQRDecodeError(KHQRVerifyError):
    """A string that cannot even be decoded; it is therefore also not a valid KHQR."""


def shown(text: str, limit: int = 40) -> str:
    """`text` quoted for an error message, cut short so a huge input cannot flood a log."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"
