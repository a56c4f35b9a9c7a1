"""The codec against facts from the official NBC SDK (bakong-khqr 1.0.20) and real bank QRs.

`khqr-vectors.jsonl`: strings the SDK made and what it said of them. `khqr-bank-qrs.jsonl`: ABA,
ACLEDA, Wing, Canadia and Bakong-app QRs printed in public code, with the SDK's decode and verdict
(recorded by `data/sdk/record.js`; names and numbers replaced by made-up ones).
`khqr-sdk-hangs.jsonl`: strings with a correct CRC on which the SDK's verify never returns.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from khqrpay.khqr import (
    DecodedKHQR,
    KHQRDecodeError,
    KHQRError,
    KHQRInput,
    KHQRInputError,
    KHQRVerifyError,
    SdkCode,
    decode,
    encode,
    verify,
)
from khqrpay.money import Currency, MoneyError

DATA = Path(__file__).parent.parent / "data"
FROZEN_NOW_MS = 1_795_651_200_000  # the SDK's clock when the vectors were made
DAY_MS = 86_400_000


def _records(name: str) -> list[dict[str, Any]]:
    with (DATA / name).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


VECTORS = _records("khqr-vectors.jsonl")
BANK_QRS = {record["id"]: record for record in _records("khqr-bank-qrs.jsonl")}
SDK_HANGS = _records("khqr-sdk-hangs.jsonl")


def _of_kind(kind: str) -> list[Any]:
    return [pytest.param(v, id=v["id"]) for v in VECTORS if v["kind"] == kind]


# The SDK's flat decode, in our names (it also spreads an unknown 62 value into keys "0", "1"...).
SDK_FIELDS = {
    "bakongAccountID": "bakong_account_id",
    "accountInformation": "account_information",
    "merchantID": "merchant_id",
    "acquiringBank": "acquiring_bank",
    "billNumber": "bill_number",
    "mobileNumber": "mobile_number",
    "storeLabel": "store_label",
    "terminalLabel": "terminal_label",
    "purposeOfTransaction": "purpose",
    "languagePreference": "language_preference",
    "merchantNameAlternateLanguage": "merchant_name_alt",
    "merchantCityAlternateLanguage": "merchant_city_alt",
    "pointofInitiationMethod": "point_of_initiation",
    "unionPayMerchant": "upi_merchant_account",
    "merchantCategoryCode": "mcc",
    "countryCode": "country",
    "merchantName": "merchant_name",
    "merchantCity": "merchant_city",
    "crc": "crc",
}
# The SDK generator's optional arguments: named as in its decode, but for these four.
_OPTIONAL_NAMES = {
    name: SDK_FIELDS[name]
    for name in (
        "billNumber",
        "mobileNumber",
        "storeLabel",
        "terminalLabel",
        "purposeOfTransaction",
        "languagePreference",
        "merchantNameAlternateLanguage",
        "merchantCityAlternateLanguage",
        "merchantCategoryCode",
        "accountInformation",
        "acquiringBank",
    )
} | {
    "amount": "amount",
    "currency": "currency",
    "expirationTimestamp": "expires_ms",
    "upiMerchantAccount": "upi_merchant_account",
}


def assert_decodes_like_the_sdk(decoded: DecodedKHQR, sdk: dict[str, Any]) -> None:
    """Every field the SDK's decode reads, read the same."""
    assert decoded.merchant_type == ("merchant" if sdk["merchantType"] == "30" else "individual")
    for theirs, ours in SDK_FIELDS.items():
        assert getattr(decoded, ours) == sdk[theirs], theirs
    assert decoded.currency.numeric == sdk["transactionCurrency"]
    assert decoded.dynamic is (sdk["pointofInitiationMethod"] == "12")
    if sdk["transactionAmount"] is None:
        assert decoded.amount is None
        assert decoded.money is None
    else:
        assert decoded.amount == Decimal(str(sdk["transactionAmount"]))
        assert decoded.money is not None
        assert decoded.money.amount == decoded.amount
    for ours_ms, theirs in (
        (decoded.creation_ms, sdk["creationTimestamp"]),
        (decoded.expiration_ms, sdk["expirationTimestamp"]),
    ):
        assert ours_ms == (None if theirs is None else int(theirs))


def sdk_input(vector: dict[str, Any]) -> KHQRInput:
    """The SDK's arguments as a KHQRInput. JSON numbers become Decimals through their text;
    a value the SDK took but our types cannot hold is passed as is, for `encode` to refuse."""
    given = vector["input"]
    fields: dict[str, Any] = {
        "bakong_account_id": given["bakongAccountID"],
        "merchant_name": given["merchantName"],
    }
    if "merchantCity" in given:
        fields["merchant_city"] = given["merchantCity"]
    if "merchantID" in given:
        fields["merchant_id"] = str(given["merchantID"])  # the SDK accepts a number here
    if "acquiringBank" in given:
        fields["acquiring_bank"] = given["acquiringBank"]
    for sdk_name, value in given["optional"].items():
        fields[_OPTIONAL_NAMES[sdk_name]] = _our_value(sdk_name, value)
    return KHQRInput(**fields)


def _our_value(sdk_name: str, value: Any) -> Any:
    if sdk_name == "amount":
        return Decimal(str(value))
    if sdk_name == "currency":
        try:
            return Currency.parse(str(value))
        except MoneyError:
            return value  # 978: encode must refuse it
    return value


@pytest.mark.parametrize("vector", _of_kind("valid"))
def test_every_valid_vector_encodes_byte_identically(vector: dict[str, Any]) -> None:
    encoded = encode(sdk_input(vector), now_ms=vector["frozen_now_ms"])
    assert encoded.qr == vector["qr"]
    assert encoded.md5 == vector["md5"]


@pytest.mark.parametrize("vector", _of_kind("valid"))
def test_every_valid_vector_verifies_and_decodes_like_the_sdk(vector: dict[str, Any]) -> None:
    decoded = verify(vector["qr"], now_ms=FROZEN_NOW_MS)
    assert decoded.md5 == vector["md5"]
    assert_decodes_like_the_sdk(decoded, vector["decode"])
    assert decoded.unknown_tags == ()


# Quirks: what the SDK made of odd inputs. We refuse the SDK's mistakes and decide the rest.
QUIRK_REFUSALS = {
    # String(1e21) is '1e+21': the SDK writes exponent notation into tag 54.
    "quirk-usd-1e21": ("amount", SdkCode.AMOUNT_INVALID, "at most 13"),
    # Decision: an MCC is exactly four digits (ISO 18245); the SDK wrote '52011'.
    "quirk-mcc-1-digit": ("mcc", SdkCode.MERCHANT_CATEGORY_CODE_LENGTH_INVALID, "exactly 4"),
    # A template length of 108 or 116 does not fit two digits: the SDK wrote three.
    "quirk-tag30-over-99": ("tag 30", None, "at most 99"),
    "quirk-tag62-over-99": ("tag 62", None, "at most 99"),
    "quirk-account-two-ats": ("bakong_account_id", SdkCode.ACCOUNT_ID_INVALID, "name@bank"),
}
# Decisions to agree with the SDK: a currency given as its code ('840' parses to Currency.USD),
# a USD string with two decimals kept, and '100.00' riel being whole.
QUIRK_ACCEPTED = {
    "quirk-currency-as-string",
    "quirk-usd-string-1.50-trailing",
    "quirk-khr-string-100.00",
}


def test_every_quirk_vector_is_decided() -> None:
    quirks = {v["id"] for v in VECTORS if v["kind"] == "quirk"}
    assert quirks == set(QUIRK_REFUSALS) | QUIRK_ACCEPTED


@pytest.mark.parametrize("vector", _of_kind("quirk"))
def test_quirk_vectors_are_refused_or_reproduced_as_decided(vector: dict[str, Any]) -> None:
    if vector["id"] in QUIRK_ACCEPTED:
        encoded = encode(sdk_input(vector), now_ms=vector["frozen_now_ms"])
        assert (encoded.qr, encoded.md5) == (vector["qr"], vector["md5"])
        verify(encoded.qr, now_ms=FROZEN_NOW_MS)
        return
    field, code, rule_words = QUIRK_REFUSALS[vector["id"]]
    with pytest.raises(KHQRInputError) as refused:
        encode(sdk_input(vector), now_ms=vector["frozen_now_ms"])
    assert (refused.value.field, refused.value.code) == (field, code)
    assert rule_words in refused.value.rule
    # What the SDK made from it is not valid either.
    with pytest.raises(KHQRVerifyError):
        verify(vector["qr"], now_ms=FROZEN_NOW_MS)


# The field each SDK refusal is about, in our names; the SDK code must match where it gave one.
GENERATE_ERROR_FIELDS = {
    "err-khr-fraction": "amount",
    "err-usd-3-decimals": "amount",
    "err-usd-float-noise": "amount",
    "err-usd-negative": "amount",
    "err-name-26": "merchant_name",
    "err-name-empty": "merchant_name",
    "err-account-no-at": "bakong_account_id",
    "err-account-33": "bakong_account_id",
    "err-account-empty": "bakong_account_id",
    "err-currency-eur": "currency",
    "err-dynamic-no-expiry": "expires_ms",
    "err-expiry-10-digits": "expires_ms",
    "err-expiry-past": "expires_ms",
    "err-expiry-string-nonnumeric": "expires_ms",
    "err-mobile-26": "mobile_number",
    "err-store-26": "store_label",
    "err-terminal-26": "terminal_label",
    "err-purpose-26": "purpose",
    "err-accinfo-33": "account_information",
    "err-acqbank-33": "acquiring_bank",
    "err-lang-pref-3": "language_preference",
    "err-lang-name-26": "merchant_name_alt",
    # The SDK crashes on this one (TypeError) instead of refusing it.
    "err-lang-name-without-pref": "language_preference",
    "err-mcc-5-digits": "mcc",
    "err-upi-100": "upi_merchant_account",
    "err-merchant-no-bank": "acquiring_bank",
    "err-merchant-id-33": "merchant_id",
    "err-emoji-name-over-utf16": "merchant_name",
}


@pytest.mark.parametrize("vector", _of_kind("generate_error"))
def test_every_input_the_sdk_refuses_is_refused_with_field_rule_and_code(
    vector: dict[str, Any],
) -> None:
    with pytest.raises(KHQRInputError) as refused:
        encode(sdk_input(vector), now_ms=vector["frozen_now_ms"])
    error = refused.value
    assert error.field == GENERATE_ERROR_FIELDS[vector["id"]]
    assert len(error.rule) > 10
    sdk_code = vector["result"]["status"]["errorCode"]
    if sdk_code is not None:
        assert error.code == sdk_code
    else:
        assert error.code == SdkCode.LANGUAGE_PREFERENCE_REQUIRED


# Probe strings the SDK accepts that cannot be paid safely: we reject them with this field and
# reason (docs/khqr-compatibility.md). The other lenient probes are payable and pass.
STRICTER_THAN_SDK = {
    "lenient-amount-letters": ("tag 54", "not a plain decimal"),
    "lenient-khr-fraction": ("tag 54", "would need rounding"),
    "lenient-both-29-and-30": ("tag 30", "both"),
}
ACCEPTED_LENIENT_PROBES = {
    "lenient-tag30-only-sub00",
    "lenient-country-USA",
    "lenient-no-poi",
    "lenient-62-unknown-sub05",
}
# Verify at a moment when only the deliberately expired probe has expired.
PROBE_NOW_MS = FROZEN_NOW_MS + DAY_MS


def test_every_lenient_probe_is_decided() -> None:
    lenient = {v["id"] for v in VECTORS if v["kind"] == "probe_string" and "lenient" in v["id"]}
    assert lenient == set(STRICTER_THAN_SDK) | ACCEPTED_LENIENT_PROBES


@pytest.mark.parametrize("vector", _of_kind("probe_string"))
def test_probe_strings_get_the_sdk_verdict_or_a_stricter_precise_one(
    vector: dict[str, Any],
) -> None:
    probe = vector["id"]
    if probe in STRICTER_THAN_SDK:
        field, reason = STRICTER_THAN_SDK[probe]
        with pytest.raises(KHQRVerifyError) as rejected:
            verify(vector["qr"], now_ms=PROBE_NOW_MS)
        assert rejected.value.field == field
        assert reason in rejected.value.rule
        return
    if vector["verify"]:
        verify(vector["qr"], now_ms=PROBE_NOW_MS)
        return
    with pytest.raises(KHQRVerifyError) as rejected:
        verify(vector["qr"], now_ms=PROBE_NOW_MS)
    sdk_code = vector["ts_khqr_verifyDetail"]["errorCode"]
    if sdk_code is not None and probe != "duplicate-consecutive-tag":
        assert rejected.value.code == sdk_code, rejected.value


def test_a_duplicated_tag_is_named_rather_than_reported_as_a_missing_city() -> None:
    duplicated = next(v for v in VECTORS if v["id"] == "duplicate-consecutive-tag")
    with pytest.raises(KHQRDecodeError) as rejected:
        verify(duplicated["qr"], now_ms=FROZEN_NOW_MS)
    assert rejected.value.field == "tag 59"
    assert "twice" in rejected.value.rule


def test_the_expired_probe_is_valid_before_its_expiry_and_without_a_clock() -> None:
    expired = next(v for v in VECTORS if v["id"] == "expired-dynamic")
    decoded = verify(expired["qr"], now_ms=FROZEN_NOW_MS)
    assert decoded.expiration_ms == FROZEN_NOW_MS + 60_000
    verify(expired["qr"], now_ms=None)
    with pytest.raises(KHQRVerifyError) as rejected:
        verify(expired["qr"], now_ms=FROZEN_NOW_MS + 60_001)
    assert (rejected.value.field, rejected.value.code) == ("tag 99/01", SdkCode.EXPIRED)


@pytest.mark.parametrize("record", SDK_HANGS, ids=[r["id"] for r in SDK_HANGS])
def test_inputs_that_hang_the_sdk_end_promptly_in_a_precise_error(record: dict[str, Any]) -> None:
    started = time.perf_counter()
    with pytest.raises(KHQRDecodeError) as rejected:
        verify(record["qr"], now_ms=FROZEN_NOW_MS)
    if record["id"] == "hang-99-letters-length":
        # decode leaves a malformed 99 aside (banks' static QRs put anything there)...
        assert dict(decode(record["qr"]).unknown_tags) == {"99": "00zz1234"}
    else:
        with pytest.raises(KHQRDecodeError):
            decode(record["qr"])
    assert time.perf_counter() - started < 1.0  # microseconds in fact; the SDK never returns
    assert "/" in rejected.value.field  # the sub-field whose length is not digits
    assert "not 2 digits" in rejected.value.rule


DECODABLE_BANK_QRS = [name for name, record in BANK_QRS.items() if record["kind"] != "not-khqr"]


def test_the_bank_qrs_cover_the_banks_kinds_and_fields_of_the_issue() -> None:
    assert {r["bank"] for r in BANK_QRS.values()} >= {"ABA", "ACLEDA", "Wing", "Canadia"}
    assert {r["kind"] for r in BANK_QRS.values()} >= {
        "individual-static",
        "individual-dynamic",
        "merchant-static",
        "merchant-dynamic",
    }
    unknown = {
        tag for name in DECODABLE_BANK_QRS for tag, _ in decode(BANK_QRS[name]["qr"]).unknown_tags
    }
    assert {"62/05", "62/68", "99/67", "29/10", "29/11", "40", "39", "61"} <= unknown
    for record in BANK_QRS.values():
        assert record["source"]
        assert record["personal_data"]
        assert record["sdk"] == "bakong-khqr@1.0.20"


@pytest.mark.parametrize("bank_qr", DECODABLE_BANK_QRS)
def test_decode_reads_every_field_the_sdk_reads_from_a_bank_qr(bank_qr: str) -> None:
    record = BANK_QRS[bank_qr]
    decoded = decode(record["qr"])
    assert_decodes_like_the_sdk(decoded, record["sdk_decode"])
    # Nothing is lost: every field the codec does not interpret is listed, in its template.
    for tag, value in decoded.unknown_tags:
        assert value in record["qr"], tag


@pytest.mark.parametrize("bank_qr", BANK_QRS)
def test_verify_agrees_with_the_sdk_on_every_bank_qr(bank_qr: str) -> None:
    record = BANK_QRS[bank_qr]
    if record["sdk_verify"]:
        verify(record["qr"], now_ms=record["verify_at_ms"])
        return
    with pytest.raises(KHQRVerifyError) as rejected:
        verify(record["qr"], now_ms=record["verify_at_ms"])
    assert rejected.value.code == record["sdk_error_code"], rejected.value


def test_real_bank_qrs_keep_the_fields_the_codec_does_not_interpret() -> None:
    aba = decode(BANK_QRS["aba-individual-static"]["qr"])
    assert (aba.merchant_type, aba.bakong_account_id) == ("individual", "abaakhppxxx@abaa")
    assert (aba.account_information, aba.acquiring_bank) == ("012345678", "ABA Bank")
    assert dict(aba.unknown_tags) == {
        "40": "0006abaP2P01120A1B2C3D4E5F020901234567803090987654320404Dual"
    }

    reference = verify(
        BANK_QRS["aba-merchant-dynamic-usd-62-05-reference-label"]["qr"],
        now_ms=BANK_QRS["aba-merchant-dynamic-usd-62-05-reference-label"]["verify_at_ms"],
    )
    assert (str(reference.money), reference.terminal_label) == ("3.00 USD", "20260500392")
    assert dict(reference.unknown_tags) == {
        "62/05": "0126094",
        "99/67": "0013F1BF016411FDA",
        "99/68": "PQRA",
        "99/69": "purchase",
    }

    canadia = decode(BANK_QRS["canadia-individual-static-29-10-29-11"]["qr"])
    assert (canadia.bakong_account_id, canadia.purpose) == ("cadikhppxxx@cadi", "Pay to my friend")
    assert dict(canadia.unknown_tags) == {"29/10": "0010001234567", "29/11": "0010007654321"}

    # A static QR's tag 99 with only a creation time: read, never checked.
    creation_only = decode(BANK_QRS["aba-merchant-static-usd-99-creation-only"]["qr"])
    assert (creation_only.creation_ms, creation_only.expiration_ms) == (1787124763825, None)
    assert ("99/68", "mmp") in creation_only.unknown_tags

    # ACLEDA's own template sits inside 62, as sub-tag 99: kept, never read as timestamps.
    template_in_62 = decode(BANK_QRS["acleda-dynamic-with-payment-system-template-in-62"]["qr"])
    assert (template_in_62.creation_ms, template_in_62.expiration_ms) == (None, None)
    assert dict(template_in_62.unknown_tags) == {"62/99": "0009khqr@aclb0307QRPAYME"}
    assert (template_in_62.amount, template_in_62.purpose) == (Decimal(1), "Purchase")

    language = decode(BANK_QRS["wing-individual-static-poi-with-amount-64"]["qr"])
    assert (language.language_preference, language.merchant_name_alt) == ("EN", "Wing")
    assert dict(language.unknown_tags) == {"61": "12000"}


def test_a_qr_without_a_bakong_account_is_refused_by_decode_where_the_sdk_guesses() -> None:
    # Deliberate difference (docs/khqr-compatibility.md): the SDK decodes an ABA PayWay QR of 2021
    # with no account template into a payee-less record; we name the missing template.
    record = BANK_QRS["aba-payway-2021-without-bakong-account"]
    assert record["sdk_decode"]["bakongAccountID"] is None
    with pytest.raises(KHQRDecodeError) as refused:
        decode(record["qr"])
    assert (refused.value.field, refused.value.code) == ("tag 29", SdkCode.MERCHANT_TYPE_REQUIRED)


def test_the_expired_bank_qr_is_rejected_as_expired_after_its_time() -> None:
    for name in ("aba-merchant-dynamic", "aba-merchant-dynamic-usd-62-05-reference-label"):
        decoded = decode(BANK_QRS[name]["qr"])
        assert decoded.expiration_ms is not None
        with pytest.raises(KHQRVerifyError) as rejected:
            verify(BANK_QRS[name]["qr"], now_ms=decoded.expiration_ms + 1)
        assert rejected.value.code == SdkCode.EXPIRED


def test_every_codec_error_is_a_khqr_error() -> None:
    assert issubclass(KHQRDecodeError, KHQRVerifyError)
    assert issubclass(KHQRVerifyError, KHQRError)
    assert issubclass(KHQRInputError, KHQRError)
