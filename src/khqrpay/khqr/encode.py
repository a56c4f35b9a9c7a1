"""Build a KHQR string: validate every input, write the fields in the SDK's order, add the CRC."""

from __future__ import annotations

import hashlib
import unicodedata

from khqrpay.khqr import fields as f
from khqrpay.khqr.amounts import amount_to_text
from khqrpay.khqr.crc import CRC_FIELD_HEADER, crc16_ccitt_false
from khqrpay.khqr.errors import KHQRInputError, SdkCode, shown
from khqrpay.khqr.model import EncodedKHQR, KHQRInput
from khqrpay.khqr.tlv import tlv, utf16_length
from khqrpay.money import Currency

_EPOCH_MS_RANGE = range(10 ** (f.TIMESTAMP_DIGITS - 1), 10**f.TIMESTAMP_DIGITS)


def encode(data: KHQRInput, *, now_ms: int) -> EncodedKHQR:
    """The KHQR string for `data`, created at `now_ms` (used only by dynamic QRs, in tag 99).

    Raises `KHQRInputError` naming the input field, the rule and the SDK code where there is one.
    """
    if not isinstance(data, KHQRInput):
        raise KHQRInputError("data", f"expected a KHQRInput, got {type(data).__name__}")
    if type(now_ms) is not int or now_ms not in _EPOCH_MS_RANGE:
        raise KHQRInputError("now_ms", "must be an integer of 13-digit epoch milliseconds")
    currency = data.currency
    if not isinstance(currency, Currency):
        raise KHQRInputError(
            "currency", "must be Currency.KHR or Currency.USD", SdkCode.UNSUPPORTED_CURRENCY
        )

    parts = ["000201", f"0102{f.STATIC if data.amount is None else f.DYNAMIC}"]
    if data.upi_merchant_account is not None:
        upi_field = _field(data.upi_merchant_account, f.UPI_ACCOUNT)
        if currency is Currency.USD:
            raise KHQRInputError(
                "upi_merchant_account",
                "a UnionPay merchant account is not allowed in a USD QR",
                SdkCode.UPI_ACCOUNT_WITH_USD,
            )
        parts.append(upi_field)
    parts.append(_account_template(data))
    parts.append(tlv(f.MERCHANT_CATEGORY_CODE, _mcc(data.mcc)))
    parts.append(f"5303{currency.numeric}")
    if data.amount is not None:
        parts.append(tlv(f.AMOUNT, amount_to_text(data.amount, currency, field="amount")))
    parts.append("5802KH")
    parts.append(_field(data.merchant_name, f.NAME))
    parts.append(_field(data.merchant_city, f.CITY))
    additional_data = [
        _field(value, spec)
        for spec in f.ADDITIONAL_DATA_FIELDS
        if (value := getattr(data, spec.attribute)) is not None
    ]
    if additional_data:
        parts.append(_template(f.ADDITIONAL_DATA, additional_data, "additional data"))
    if language := _language_template(data):
        parts.append(language)
    parts.append(_timestamps(data, now_ms))

    payload = "".join(parts) + CRC_FIELD_HEADER
    payload_bytes = payload.encode("utf-8")
    crc = f"{crc16_ccitt_false(payload_bytes):04X}"
    md5 = hashlib.md5(payload_bytes + crc.encode("ascii"), usedforsecurity=False)
    return EncodedKHQR(qr=payload + crc, md5=md5.hexdigest())


def _field(value: object, spec: f.TextField) -> str:
    """`spec`'s field holding `value`, which must be printable text within the length limit."""
    if type(value) is not str:
        raise KHQRInputError(spec.attribute, f"{spec.label} must be text")
    if not (value.isascii() and value.isprintable()):
        bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cs")), None)
        if bad is not None:
            raise KHQRInputError(
                spec.attribute,
                f"{spec.label} contains the control or surrogate character U+{ord(bad):04X}",
            )
    length = f.check_length(spec, value, field=spec.attribute, error=KHQRInputError)
    return f"{spec.tag}{length:02d}{value}"


def _account_template(data: KHQRInput) -> str:
    """Tag 29 (individual: account, [information], [bank]) or 30 (merchant: all three)."""
    account_field = _field(data.bakong_account_id, f.ACCOUNT_ID)
    account = data.bakong_account_id
    if not f.is_account_id(account):
        raise KHQRInputError(
            "bakong_account_id",
            f"{shown(account)} {f.ACCOUNT_ID_FORM}",
            SdkCode.ACCOUNT_ID_INVALID,
        )
    sub_fields = [account_field]
    if data.merchant_id is not None:
        if data.account_information is not None:
            raise KHQRInputError(
                "account_information",
                "account information belongs in an individual (tag 29) QR; "
                "a merchant QR (with a merchant_id) has no place for it",
            )
        sub_fields.append(_field(data.merchant_id, f.MERCHANT_ID))
        if data.acquiring_bank is None:
            raise KHQRInputError(
                "acquiring_bank",
                "a merchant QR (with a merchant_id) needs the acquiring bank",
                SdkCode.ACQUIRING_BANK_REQUIRED,
            )
        sub_fields.append(_field(data.acquiring_bank, f.ACQUIRING_BANK))
        return _template(f.MERCHANT_ACCOUNT, sub_fields, "merchant account")
    if data.account_information is not None:
        sub_fields.append(_field(data.account_information, f.ACCOUNT_INFORMATION))
    if data.acquiring_bank is not None:
        sub_fields.append(_field(data.acquiring_bank, f.ACQUIRING_BANK))
    return _template(f.INDIVIDUAL_ACCOUNT, sub_fields, "individual account")


def _template(tag: str, sub_fields: list[str], label: str) -> str:
    """A template field; refused if its sub-fields do not fit the two length digits."""
    value = "".join(sub_fields)
    length = utf16_length(value)
    if length > f.MAX_VALUE_LENGTH:
        raise KHQRInputError(
            f"tag {tag}",
            f"the {label} template would be {length} characters long; a template holds at "
            f"most {f.MAX_VALUE_LENGTH}, so shorten its fields",
        )
    return f"{tag}{length:02d}{value}"


def _mcc(mcc: object) -> str:
    if type(mcc) is not str:
        raise KHQRInputError("mcc", "the merchant category code must be text")
    f.check_mcc(mcc, field="mcc", error=KHQRInputError)
    return mcc


def _language_template(data: KHQRInput) -> str | None:
    """Tag 64: the language, the name in it and optionally the city; the first two go together."""
    preference, name_alt, city_alt = (
        data.language_preference,
        data.merchant_name_alt,
        data.merchant_city_alt,
    )
    if preference is None and name_alt is None and city_alt is None:
        return None
    if preference is None:
        raise KHQRInputError(
            "language_preference",
            "an alternate-language name or city needs the language preference (e.g. 'km')",
            SdkCode.LANGUAGE_PREFERENCE_REQUIRED,
        )
    if name_alt is None:
        raise KHQRInputError(
            "merchant_name_alt",
            "a language preference needs the merchant name in that language",
            SdkCode.MERCHANT_NAME_ALT_REQUIRED,
        )
    preference_field = _field(preference, f.LANGUAGE_PREFERENCE)
    if not (preference.isascii() and preference.isalpha() and len(preference) == 2):
        raise KHQRInputError(
            "language_preference",
            f"{shown(preference)} is not a two-letter language code such as 'km'",
            SdkCode.LANGUAGE_PREFERENCE_LENGTH_INVALID,
        )
    sub_fields = [
        preference_field,
        _field(name_alt, f.NAME_ALT),
    ]
    if city_alt is not None:
        sub_fields.append(_field(city_alt, f.CITY_ALT))
    return _template(f.LANGUAGE_TEMPLATE, sub_fields, "language")


def _timestamps(data: KHQRInput, now_ms: int) -> str:
    """Tag 99 of a dynamic QR (created `now_ms`, expiring `expires_ms`); nothing if static."""
    expires_ms = data.expires_ms
    if data.amount is None:
        if expires_ms is not None:
            raise KHQRInputError(
                "expires_ms", "only a dynamic QR (one with an amount) expires; leave it out"
            )
        return ""
    if expires_ms is None:
        raise KHQRInputError(
            "expires_ms",
            "a dynamic QR (one with an amount) needs an expiration time",
            SdkCode.EXPIRATION_REQUIRED,
        )
    if type(expires_ms) is not int:
        raise KHQRInputError(
            "expires_ms",
            f"the expiration time {shown(str(expires_ms))} is not an integer of epoch milliseconds",
            SdkCode.EXPIRATION_REQUIRED,
        )
    if expires_ms not in _EPOCH_MS_RANGE:
        raise KHQRInputError(
            "expires_ms",
            f"the expiration time {shown(str(expires_ms))} is not 13-digit epoch milliseconds",
            SdkCode.EXPIRATION_LENGTH_INVALID,
        )
    if expires_ms < now_ms:
        raise KHQRInputError(
            "expires_ms",
            f"the expiration time {expires_ms} is before the creation time {now_ms}",
            SdkCode.EXPIRATION_IN_THE_PAST,
        )
    return f"99340013{now_ms}0113{expires_ms}"
