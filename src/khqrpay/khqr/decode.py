"""Take a KHQR string apart into a typed `DecodedKHQR`, with a bounded parser.

`decode` checks structure: well-formed fields and templates (29, 30, 62, 64), no repeated tag, the
required tags present, the CRC field last, a supported currency and an amount that is an exact
number in it. It does not check the CRC, lengths or the dynamic/expiry rules: `verify` does.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from khqrpay.khqr import fields as f
from khqrpay.khqr.amounts import amount_from_text
from khqrpay.khqr.errors import KHQRDecodeError, SdkCode, shown
from khqrpay.khqr.model import DecodedKHQR
from khqrpay.khqr.tlv import field_name, from_code_units, has_astral, parse_fields, to_code_units
from khqrpay.money import Currency, MoneyError

_KNOWN_TAGS = frozenset(
    {
        f.PAYLOAD_FORMAT,
        f.POINT_OF_INITIATION,
        f.UPI_MERCHANT_ACCOUNT,
        f.INDIVIDUAL_ACCOUNT,
        f.MERCHANT_ACCOUNT,
        f.MERCHANT_CATEGORY_CODE,
        f.CURRENCY,
        f.AMOUNT,
        f.COUNTRY,
        f.MERCHANT_NAME,
        f.MERCHANT_CITY,
        f.ADDITIONAL_DATA,
        f.CRC,
        f.LANGUAGE_TEMPLATE,
        f.TIMESTAMPS,
    }
)
_TEMPLATE_TAGS = frozenset(
    {
        f.INDIVIDUAL_ACCOUNT,
        f.MERCHANT_ACCOUNT,
        f.ADDITIONAL_DATA,
        f.LANGUAGE_TEMPLATE,
        f.TIMESTAMPS,
    }
)
_ACCOUNT_SUB_TAGS = frozenset({f.ACCOUNT_ID.tag, f.MERCHANT_ID.tag, f.ACQUIRING_BANK.tag})
_LANGUAGE_SUB_TAGS = frozenset(spec.tag for spec in f.LANGUAGE_FIELDS)
_ADDITIONAL_DATA_SUB_TAGS = frozenset(spec.tag for spec in f.ADDITIONAL_DATA_FIELDS)


class ParsedKHQR(NamedTuple):
    """A decoded QR plus the raw facts `verify` needs that the typed object does not keep."""

    decoded: DecodedKHQR
    payload_format: str
    amount_text: str | None
    # Tag 99's sub-fields, or why tag 99 is not a template (a static bank QR may carry anything).
    timestamps: dict[str, str] | None
    timestamps_error: KHQRDecodeError | None


def decode(qr: str) -> DecodedKHQR:
    """Decode any KHQR (individual, merchant, bank QRs with unknown tags); `KHQRDecodeError`."""
    return parse(qr).decoded


def parse(qr: str) -> ParsedKHQR:
    """`decode`, keeping what `verify` needs on top."""
    if not isinstance(qr, str):
        raise KHQRDecodeError("qr", f"a KHQR is text, not {type(qr).__name__}")
    if len(qr) > f.MAX_PAYLOAD_LENGTH:
        raise _too_long(len(qr))
    try:
        qr_bytes = qr.encode("utf-8")
    except UnicodeEncodeError:
        raise KHQRDecodeError("qr", "contains a lone surrogate, which is not text") from None
    astral = has_astral(qr)
    if astral:
        if len(units := to_code_units(qr)) > f.MAX_PAYLOAD_LENGTH:
            raise _too_long(len(units))
        values = {
            tag: value if tag in _TEMPLATE_TAGS else from_code_units(value)
            for tag, value in parse_fields(units).items()
        }
    else:
        values = parse_fields(qr)
    _check_required(values)
    unknown_tags = (
        []
        if _KNOWN_TAGS.issuperset(values)
        else [(tag, value) for tag, value in values.items() if tag not in _KNOWN_TAGS]
    )

    account_tag = f.MERCHANT_ACCOUNT if f.MERCHANT_ACCOUNT in values else f.INDIVIDUAL_ACCOUNT
    account = _sub_fields(values, account_tag, astral, _ACCOUNT_SUB_TAGS, unknown_tags)
    account_id = account.get(f.ACCOUNT_ID.tag)
    if not account_id:
        raise KHQRDecodeError(
            field_name(account_tag, f.ACCOUNT_ID.tag),
            "the Bakong account id is required",
            SdkCode.ACCOUNT_ID_REQUIRED,
        )
    is_merchant = account_tag == f.MERCHANT_ACCOUNT

    try:
        currency = Currency.from_numeric(values[f.CURRENCY])
    except MoneyError:
        raise KHQRDecodeError(
            field_name("", f.CURRENCY),
            f"currency {shown(values[f.CURRENCY])} is not 116 (KHR) or 840 (USD)",
            SdkCode.UNSUPPORTED_CURRENCY,
        ) from None
    amount_text = values.get(f.AMOUNT)
    money = (
        None
        if amount_text is None
        else amount_from_text(amount_text, currency, field=field_name("", f.AMOUNT))
    )
    additional = _sub_fields(
        values, f.ADDITIONAL_DATA, astral, _ADDITIONAL_DATA_SUB_TAGS, unknown_tags
    )
    language = _sub_fields(values, f.LANGUAGE_TEMPLATE, astral, _LANGUAGE_SUB_TAGS, unknown_tags)

    timestamps: dict[str, str] | None = None
    timestamps_error: KHQRDecodeError | None = None
    creation_ms = expiration_ms = None
    if f.TIMESTAMPS in values:
        try:
            timestamps = _sub_fields(values, f.TIMESTAMPS, astral, frozenset(), None)
        except KHQRDecodeError as exc:
            # A static bank QR may carry anything in 99; verify raises this for a dynamic one.
            timestamps_error = exc
            raw = values[f.TIMESTAMPS]
            unknown_tags.append((f.TIMESTAMPS, from_code_units(raw) if astral else raw))
        else:
            creation_ms = _epoch_ms(timestamps.get(f.CREATION_TIME))
            expiration_ms = _epoch_ms(timestamps.get(f.EXPIRATION_TIME))
            read_as_timestamps = frozenset(
                sub
                for sub, moment in (
                    (f.CREATION_TIME, creation_ms),
                    (f.EXPIRATION_TIME, expiration_ms),
                )
                if moment is not None
            )
            _keep_unknown(f.TIMESTAMPS, timestamps, read_as_timestamps, unknown_tags)

    point_of_initiation = values.get(f.POINT_OF_INITIATION)
    decoded = DecodedKHQR(
        qr=qr,
        md5=hashlib.md5(qr_bytes, usedforsecurity=False).hexdigest(),
        crc=values[f.CRC],
        merchant_type="merchant" if is_merchant else "individual",
        bakong_account_id=account_id,
        merchant_id=account.get(f.MERCHANT_ID.tag) if is_merchant else None,
        acquiring_bank=account.get(f.ACQUIRING_BANK.tag),
        account_information=None if is_merchant else account.get(f.ACCOUNT_INFORMATION.tag),
        merchant_name=values[f.MERCHANT_NAME],
        merchant_city=values[f.MERCHANT_CITY],
        currency=currency,
        amount=None if money is None else money.amount,
        money=money,
        point_of_initiation=point_of_initiation,
        dynamic=point_of_initiation == f.DYNAMIC,
        mcc=values[f.MERCHANT_CATEGORY_CODE],
        country=values[f.COUNTRY],
        bill_number=additional.get(f.BILL_NUMBER.tag),
        mobile_number=additional.get(f.MOBILE_NUMBER.tag),
        store_label=additional.get(f.STORE_LABEL.tag),
        terminal_label=additional.get(f.TERMINAL_LABEL.tag),
        purpose=additional.get(f.PURPOSE.tag),
        upi_merchant_account=values.get(f.UPI_MERCHANT_ACCOUNT),
        language_preference=language.get(f.LANGUAGE_PREFERENCE.tag),
        merchant_name_alt=language.get(f.NAME_ALT.tag),
        merchant_city_alt=language.get(f.CITY_ALT.tag),
        creation_ms=creation_ms,
        expiration_ms=expiration_ms,
        unknown_tags=tuple(unknown_tags),
    )
    return ParsedKHQR(
        decoded=decoded,
        payload_format=values[f.PAYLOAD_FORMAT],
        amount_text=amount_text,
        timestamps=timestamps,
        timestamps_error=timestamps_error,
    )


def _sub_fields(
    values: dict[str, str],
    tag: str,
    astral: bool,
    known: frozenset[str],
    unknown_tags: list[tuple[str, str]] | None,
) -> dict[str, str]:
    """Template `tag`'s sub-fields as text (none if it is absent); unknown ones are listed."""
    if tag not in values:
        return {}
    subs = parse_fields(values[tag], tag)
    if astral:
        subs = {sub: from_code_units(value) for sub, value in subs.items()}
    if unknown_tags is not None:
        _keep_unknown(tag, subs, known, unknown_tags)
    return subs


def _keep_unknown(
    tag: str, subs: dict[str, str], known: frozenset[str], unknown_tags: list[tuple[str, str]]
) -> None:
    if not known.issuperset(subs):
        unknown_tags.extend((f"{tag}/{sub}", v) for sub, v in subs.items() if sub not in known)


def _check_required(values: dict[str, str]) -> None:
    if f.CRC not in values:
        raise KHQRDecodeError("tag 63", "the CRC field is required", SdkCode.CRC_REQUIRED)
    if next(reversed(values)) != f.CRC:
        raise KHQRDecodeError("tag 63", "the CRC field must be the last field")
    if f.INDIVIDUAL_ACCOUNT in values and f.MERCHANT_ACCOUNT in values:
        raise KHQRDecodeError(
            "tag 30",
            "both an individual (29) and a merchant (30) account template; a KHQR has one",
        )
    if f.INDIVIDUAL_ACCOUNT not in values and f.MERCHANT_ACCOUNT not in values:
        raise KHQRDecodeError(
            "tag 29",
            "an account template, individual (29) or merchant (30), is required",
            SdkCode.MERCHANT_TYPE_REQUIRED,
        )
    for tag, label, code in f.REQUIRED_TAGS:
        if tag not in values:
            raise KHQRDecodeError(field_name("", tag), f"the {label} is required", code)


def _epoch_ms(text: str | None) -> int | None:
    """A 13-digit epoch-milliseconds value, or None for anything else."""
    if text is not None and len(text) == f.TIMESTAMP_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


def _too_long(length: int) -> KHQRDecodeError:
    return KHQRDecodeError(
        "qr", f"is {length} characters long; a KHQR holds at most {f.MAX_PAYLOAD_LENGTH}"
    )
