"""Verify a KHQR string completely, with one precise reason when it is not valid.

A QR is refused only for what makes it unpayable or unsafe: a wrong CRC, a structure that cannot be
read, no Bakong account or a malformed one, two account templates (which account is paid?), an
amount that is not an exact positive number in its currency, a field longer than KHQR allows, and
a QR with an amount whose expiry is missing, malformed or past. Everything the official SDK
accepts from its own generator and every bank QR it accepts passes; fields the codec does not
interpret (62/05, 62/10, 62/11, bank templates...) are kept in `unknown_tags`, never refused.
Where this differs from the SDK, and why: `docs/khqr-compatibility.md`.
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
    _check_additional_data(decoded)
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
    # EMV makes tag 01 optional: without it, the amount alone says whether the QR is dynamic.
    point_of_initiation = parsed.decoded.point_of_initiation
    if point_of_initiation not in (None, f.STATIC, f.DYNAMIC):
        raise KHQRVerifyError(
            "tag 01",
            f"the point of initiation is {shown(point_of_initiation)}: 11 (static) or 12 (dynamic)",
            SdkCode.POINT_OF_INITIATION_INVALID,
        )


def _check_account(decoded: DecodedKHQR) -> None:
    template = f.MERCHANT_ACCOUNT if decoded.merchant_type == "merchant" else f.INDIVIDUAL_ACCOUNT

    f.check_length(
        f.ACCOUNT_ID, decoded.bakong_account_id, field=f"tag {template}/00", error=KHQRVerifyError
    )
    if not f.is_account_id(decoded.bakong_account_id):
        raise KHQRVerifyError(
            f"tag {template}/00",
            f"the Bakong account id {shown(decoded.bakong_account_id)} {f.ACCOUNT_ID_FORM}",
            SdkCode.ACCOUNT_ID_INVALID,
        )
    # The payment goes to the Bakong account: a merchant QR without its merchant id or bank
    # name is still payable (the SDK's generator requires them, its verify does not).
    for spec in (f.MERCHANT_ID, f.ACQUIRING_BANK, f.ACCOUNT_INFORMATION):
        value = getattr(decoded, spec.attribute)
        if value is not None:
            f.check_length(spec, value, field=f"tag {template}/{spec.tag}", error=KHQRVerifyError)


def _check_plain_fields(decoded: DecodedKHQR) -> None:
    f.check_mcc(decoded.mcc, field="tag 52", error=KHQRVerifyError)
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


def _check_additional_data(decoded: DecodedKHQR) -> None:
    """KHQR's own sub-fields of 62 within their limits; the others (05 reference label, 10
    merchant tax id, 11 channel, bank templates) are kept in `unknown_tags`, never refused."""
    for spec in f.ADDITIONAL_DATA_FIELDS:
        value = getattr(decoded, spec.attribute)
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
    """A QR with an amount, or one that says it is dynamic, must carry a valid, unexpired tag 99.

    A QR without an amount never has its tag 99 examined: banks put other things there. A bank
    QR with an amount that says 11 (static) is payable like a dynamic one, and is checked as one.
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
