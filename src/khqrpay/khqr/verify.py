"""Verify a KHQR string completely, with one precise reason when it is not valid.

Everything the official SDK accepts from its own generator passes. Where the SDK is lenient, this
is strict: an amount that is not a number, KHR with a fraction, a dynamic amount of zero, inner
lengths past their data, both 29 and 30, a merchant template without its id and bank, a missing
point of initiation, a country other than KH, and EMV sub-fields of 62 that KHQR does not carry.
"""

from __future__ import annotations

from khqrpay.khqr import fields as f
from khqrpay.khqr.crc import CRC_FIELD_HEADER, crc_hex
from khqrpay.khqr.decode import ParsedKHQR, parse
from khqrpay.khqr.errors import KHQRDecodeError, KHQRVerifyError, SdkCode, shown
from khqrpay.khqr.model import DecodedKHQR
from khqrpay.money import Currency

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def verify(qr: str, *, now_ms: int | None) -> DecodedKHQR:
    """The decoded QR if `qr` is a valid KHQR at `now_ms`, else `KHQRVerifyError` with the reason.

    `now_ms=None` skips only the check that a dynamic QR has not yet expired.
    """
    if now_ms is not None and type(now_ms) is not int:
        raise KHQRVerifyError("now_ms", "must be epoch milliseconds (an int) or None")
    _check_crc(qr)
    parsed = parse(qr)
    decoded = parsed.decoded
    _check_header(parsed)
    _check_account(decoded)
    _check_plain_fields(decoded)
    _check_additional_data(parsed)
    _check_language(decoded)
    _check_amount_and_expiry(parsed, now_ms)
    return decoded


def _check_crc(qr: object) -> None:
    if not isinstance(qr, str):
        raise KHQRDecodeError("qr", f"a KHQR is text, not {type(qr).__name__}")
    given = qr[-4:]
    if qr[-8:-4] != CRC_FIELD_HEADER or len(given) != 4 or not _HEX_DIGITS.issuperset(given):
        raise KHQRVerifyError(
            "tag 63", "the string does not end with the CRC field 6304XXXX", SdkCode.KHQR_INVALID
        )
    try:
        expected = crc_hex(qr[:-4])
    except UnicodeEncodeError:
        raise KHQRDecodeError("qr", "contains a lone surrogate, which is not text") from None
    if given.upper() != expected:
        raise KHQRVerifyError(
            "tag 63",
            f"the CRC {given} does not match the content (it should be {expected})",
            SdkCode.KHQR_INVALID,
        )


def _check_header(parsed: ParsedKHQR) -> None:
    if parsed.payload_format != f.PAYLOAD_FORMAT_VERSION:
        raise KHQRVerifyError(
            "tag 00",
            f"the payload format indicator is {shown(parsed.payload_format)}; it must be 01",
            SdkCode.PAYLOAD_FORMAT_INDICATOR_LENGTH_INVALID
            if len(parsed.payload_format) != 2
            else None,
        )
    point_of_initiation = parsed.decoded.point_of_initiation
    if point_of_initiation not in (f.STATIC, f.DYNAMIC):
        reason = (
            "is required" if point_of_initiation is None else f"is {shown(point_of_initiation)}"
        )
        raise KHQRVerifyError(
            "tag 01",
            f"the point of initiation {reason}: 11 (static) or 12 (dynamic)",
            SdkCode.POINT_OF_INITIATION_INVALID,
        )


def _check_account(decoded: DecodedKHQR) -> None:
    template = f.MERCHANT_ACCOUNT if decoded.merchant_type == "merchant" else f.INDIVIDUAL_ACCOUNT

    def check(spec: f.TextField, value: str | None, *, required: bool) -> None:
        field = f"tag {template}/{spec.tag}"
        if value is None:
            if required:
                raise KHQRVerifyError(
                    field, f"a merchant QR needs the {spec.label}", spec.empty_code
                )
            return
        f.check_length(spec, value, field=field, error=KHQRVerifyError)

    check(f.ACCOUNT_ID, decoded.bakong_account_id, required=True)
    if not f.is_account_id(decoded.bakong_account_id):
        raise KHQRVerifyError(
            f"tag {template}/00",
            f"the Bakong account id {shown(decoded.bakong_account_id)} {f.ACCOUNT_ID_FORM}",
            SdkCode.ACCOUNT_ID_INVALID,
        )
    is_merchant = decoded.merchant_type == "merchant"
    check(f.MERCHANT_ID, decoded.merchant_id, required=is_merchant)
    check(f.ACQUIRING_BANK, decoded.acquiring_bank, required=is_merchant)
    check(f.ACCOUNT_INFORMATION, decoded.account_information, required=False)


def _check_plain_fields(decoded: DecodedKHQR) -> None:
    f.check_mcc(decoded.mcc, field="tag 52", error=KHQRVerifyError)
    if decoded.country != f.COUNTRY_KH:
        raise KHQRVerifyError("tag 58", f"the country is {shown(decoded.country)}; KHQR is KH")
    f.check_length(f.NAME, decoded.merchant_name, field="tag 59", error=KHQRVerifyError)
    f.check_length(f.CITY, decoded.merchant_city, field="tag 60", error=KHQRVerifyError)
    if decoded.upi_merchant_account is not None:
        f.check_length(
            f.UPI_ACCOUNT, decoded.upi_merchant_account, field="tag 15", error=KHQRVerifyError
        )
        if decoded.currency is Currency.USD:
            raise KHQRVerifyError(
                "tag 15",
                "a UnionPay merchant account is not allowed in a USD QR",
                SdkCode.UPI_ACCOUNT_WITH_USD,
            )


def _check_additional_data(parsed: ParsedKHQR) -> None:
    for sub_tag in parsed.additional_data_tags:
        if f.is_foreign_additional_data_tag(sub_tag):
            raise KHQRVerifyError(
                f"tag 62/{sub_tag}",
                "is an EMV additional-data field that KHQR does not carry "
                "(KHQR uses 01, 02, 03, 07 and 08; 50-99 are payment-system templates)",
            )
    if not parsed.additional_data_tags:
        return
    for spec in f.ADDITIONAL_DATA_FIELDS:
        value = getattr(parsed.decoded, spec.attribute)
        if value is not None:
            f.check_length(spec, value, field=f"tag 62/{spec.tag}", error=KHQRVerifyError)


def _check_language(decoded: DecodedKHQR) -> None:
    preference = decoded.language_preference
    name_alt = decoded.merchant_name_alt
    if preference is None:
        if name_alt is not None or decoded.merchant_city_alt is not None:
            raise KHQRVerifyError(
                "tag 64/00",
                "an alternate-language name or city needs the language preference",
                SdkCode.LANGUAGE_PREFERENCE_REQUIRED,
            )
        return
    f.check_length(f.LANGUAGE_PREFERENCE, preference, field="tag 64/00", error=KHQRVerifyError)
    if name_alt is None:
        raise KHQRVerifyError(
            "tag 64/01",
            "a language preference needs the merchant name in that language",
            SdkCode.MERCHANT_NAME_ALT_REQUIRED,
        )
    f.check_length(f.NAME_ALT, name_alt, field="tag 64/01", error=KHQRVerifyError)
    if decoded.merchant_city_alt is not None:
        f.check_length(
            f.CITY_ALT, decoded.merchant_city_alt, field="tag 64/02", error=KHQRVerifyError
        )


def _check_amount_and_expiry(parsed: ParsedKHQR, now_ms: int | None) -> None:
    """A QR with an amount, or one that says it is dynamic, must be a complete dynamic QR.

    A static QR's tag 99 is never examined: banks put other things there.
    """
    decoded = parsed.decoded
    if decoded.amount is None:
        if decoded.dynamic:
            raise KHQRVerifyError(
                "tag 54",
                "a dynamic QR (01 = 12) needs an amount",
                SdkCode.DYNAMIC_WITHOUT_AMOUNT,
            )
        return
    if decoded.amount <= 0:
        raise KHQRVerifyError(
            "tag 54",
            f"the amount {parsed.amount_text} must be greater than zero",
            SdkCode.AMOUNT_INVALID,
        )
    if parsed.timestamps_error is not None:
        raise parsed.timestamps_error
    timestamps = parsed.timestamps or {}
    expiration = _timestamp(timestamps, f.EXPIRATION_TIME, "expiration")
    creation = _timestamp(timestamps, f.CREATION_TIME, "creation")
    if expiration < creation:
        raise KHQRVerifyError(
            "tag 99/01",
            f"the expiration time {expiration} is before the creation time {creation}",
            SdkCode.EXPIRATION_IN_THE_PAST,
        )
    if not decoded.dynamic:
        raise KHQRVerifyError(
            "tag 01",
            "a QR with an amount must say it is dynamic (12), not static (11)",
            SdkCode.POINT_OF_INITIATION_INVALID,
        )
    if now_ms is not None and now_ms > expiration:
        raise KHQRVerifyError(
            "tag 99/01",
            f"this dynamic KHQR expired at {expiration}; it is now {now_ms}",
            SdkCode.EXPIRED,
        )


def _timestamp(timestamps: dict[str, str], sub_tag: str, label: str) -> int:
    field = f"tag 99/{sub_tag}"
    text = timestamps.get(sub_tag)
    if text is None:
        raise KHQRVerifyError(
            field,
            f"a QR with an amount needs its {label} time in tag 99",
            SdkCode.EXPIRATION_REQUIRED if sub_tag == f.EXPIRATION_TIME else None,
        )
    if not (len(text) == f.TIMESTAMP_DIGITS and text.isascii() and text.isdigit()):
        raise KHQRVerifyError(
            field,
            f"the {label} time {shown(text)} is not 13-digit epoch milliseconds",
            SdkCode.EXPIRATION_LENGTH_INVALID if sub_tag == f.EXPIRATION_TIME else None,
        )
    return int(text)
