"""The KHQR field table: tags, limits and SDK codes, shared by the encoder and the verifier."""

from __future__ import annotations

from dataclasses import dataclass

from khqrpay.khqr.errors import KHQRError, SdkCode, shown
from khqrpay.khqr.tlv import utf16_length

# Top-level tags.
PAYLOAD_FORMAT = "00"
POINT_OF_INITIATION = "01"
UPI_MERCHANT_ACCOUNT = "15"
INDIVIDUAL_ACCOUNT = "29"
MERCHANT_ACCOUNT = "30"
MERCHANT_CATEGORY_CODE = "52"
CURRENCY = "53"
AMOUNT = "54"
COUNTRY = "58"
MERCHANT_NAME = "59"
MERCHANT_CITY = "60"
ADDITIONAL_DATA = "62"
CRC = "63"
LANGUAGE_TEMPLATE = "64"
TIMESTAMPS = "99"

PAYLOAD_FORMAT_VERSION = "01"
STATIC = "11"
DYNAMIC = "12"

# Sub-tags of 99.
CREATION_TIME = "00"
EXPIRATION_TIME = "01"

MAX_VALUE_LENGTH = 99  # two length digits
MAX_PAYLOAD_LENGTH = 512  # the EMV merchant-presented QR limit; bounds all parsing work
MAX_AMOUNT_LENGTH = 13
TIMESTAMP_DIGITS = 13
MCC_DIGITS = 4

# Required top-level tags, in the order the SDK reports them missing (29/30 is checked apart).
REQUIRED_TAGS: tuple[tuple[str, str, SdkCode], ...] = (
    (PAYLOAD_FORMAT, "payload format indicator", SdkCode.PAYLOAD_FORMAT_INDICATOR_REQUIRED),
    (MERCHANT_CATEGORY_CODE, "merchant category code", SdkCode.MERCHANT_CATEGORY_CODE_REQUIRED),
    (CURRENCY, "currency", SdkCode.CURRENCY_REQUIRED),
    (COUNTRY, "country code", SdkCode.COUNTRY_CODE_REQUIRED),
    (MERCHANT_NAME, "merchant name", SdkCode.MERCHANT_NAME_REQUIRED),
    (MERCHANT_CITY, "merchant city", SdkCode.MERCHANT_CITY_REQUIRED),
)


@dataclass(frozen=True, slots=True)
class TextField:
    """A free-text field: where it sits, how long it may be, and the SDK code for too long."""

    attribute: str  # the name on KHQRInput and DecodedKHQR
    label: str  # words for error messages
    tag: str  # the tag, or the sub-tag inside its template
    max_length: int
    length_code: SdkCode | None
    empty_code: SdkCode | None = None


ACCOUNT_ID = TextField(
    "bakong_account_id",
    "Bakong account id",
    "00",
    32,
    SdkCode.ACCOUNT_ID_LENGTH_INVALID,
    SdkCode.ACCOUNT_ID_REQUIRED,
)
ACCOUNT_INFORMATION = TextField(
    "account_information",
    "account information",
    "01",
    32,
    SdkCode.ACCOUNT_INFORMATION_LENGTH_INVALID,
)
MERCHANT_ID = TextField(
    "merchant_id",
    "merchant id",
    "01",
    32,
    SdkCode.MERCHANT_ID_LENGTH_INVALID,
    SdkCode.MERCHANT_ID_REQUIRED,
)
ACQUIRING_BANK = TextField(
    "acquiring_bank",
    "acquiring bank",
    "02",
    32,
    SdkCode.ACQUIRING_BANK_LENGTH_INVALID,
    SdkCode.ACQUIRING_BANK_REQUIRED,
)
NAME = TextField(
    "merchant_name",
    "merchant name",
    MERCHANT_NAME,
    25,
    SdkCode.MERCHANT_NAME_LENGTH_INVALID,
    SdkCode.MERCHANT_NAME_REQUIRED,
)
CITY = TextField(
    "merchant_city",
    "merchant city",
    MERCHANT_CITY,
    15,
    SdkCode.MERCHANT_CITY_LENGTH_INVALID,
    SdkCode.MERCHANT_CITY_REQUIRED,
)
UPI_ACCOUNT = TextField(
    "upi_merchant_account",
    "UnionPay merchant account",
    UPI_MERCHANT_ACCOUNT,
    99,
    SdkCode.UPI_ACCOUNT_LENGTH_INVALID,
)

# Tag 62.
BILL_NUMBER = TextField("bill_number", "bill number", "01", 25, SdkCode.BILL_NUMBER_LENGTH_INVALID)
MOBILE_NUMBER = TextField(
    "mobile_number", "mobile number", "02", 25, SdkCode.MOBILE_NUMBER_LENGTH_INVALID
)
STORE_LABEL = TextField("store_label", "store label", "03", 25, SdkCode.STORE_LABEL_LENGTH_INVALID)
TERMINAL_LABEL = TextField(
    "terminal_label", "terminal label", "07", 25, SdkCode.TERMINAL_LABEL_LENGTH_INVALID
)
PURPOSE = TextField("purpose", "purpose of transaction", "08", 25, SdkCode.PURPOSE_LENGTH_INVALID)
ADDITIONAL_DATA_FIELDS = (BILL_NUMBER, MOBILE_NUMBER, STORE_LABEL, TERMINAL_LABEL, PURPOSE)

# Tag 64, in the order they are written.
LANGUAGE_PREFERENCE = TextField(
    "language_preference",
    "language preference",
    "00",
    2,
    SdkCode.LANGUAGE_PREFERENCE_LENGTH_INVALID,
    SdkCode.LANGUAGE_PREFERENCE_REQUIRED,
)
NAME_ALT = TextField(
    "merchant_name_alt",
    "merchant name in the alternate language",
    "01",
    25,
    SdkCode.MERCHANT_NAME_ALT_LENGTH_INVALID,
    SdkCode.MERCHANT_NAME_ALT_REQUIRED,
)
CITY_ALT = TextField(
    "merchant_city_alt",
    "merchant city in the alternate language",
    "02",
    15,
    SdkCode.MERCHANT_CITY_ALT_LENGTH_INVALID,
)
LANGUAGE_FIELDS: tuple[TextField, ...] = (LANGUAGE_PREFERENCE, NAME_ALT, CITY_ALT)

ACCOUNT_ID_FORM = "is not of the form name@bank (one '@', no spaces)"


def is_account_id(text: str) -> bool:
    """`name@bank`: one `@` between two non-empty parts, no white space."""
    name, _, bank = text.partition("@")
    return bool(name) and bool(bank) and "@" not in bank and text.split() == [text]


def check_length(spec: TextField, value: str, *, field: str, error: type[KHQRError]) -> int:
    """The value's length in code units; an error if it is empty or longer than the limit."""
    length = utf16_length(value)
    if length == 0:
        raise error(field, f"{spec.label} must not be empty", spec.empty_code or spec.length_code)
    if length > spec.max_length:
        raise error(
            field,
            f"{spec.label} is {length} characters (UTF-16 code units) long; "
            f"at most {spec.max_length} are allowed",
            spec.length_code,
        )
    return length


def check_mcc(mcc: str, *, field: str, error: type[KHQRError]) -> None:
    """The merchant category code: exactly `MCC_DIGITS` ASCII digits."""
    if not (mcc.isascii() and mcc.isdigit()):
        raise error(
            field,
            f"the merchant category code {shown(mcc)} must be digits",
            SdkCode.MERCHANT_CATEGORY_CODE_INVALID,
        )
    if len(mcc) != MCC_DIGITS:
        raise error(
            field,
            f"the merchant category code {shown(mcc)} must be exactly {MCC_DIGITS} digits",
            SdkCode.MERCHANT_CATEGORY_CODE_LENGTH_INVALID,
        )
