"""The codec against facts from the official NBC SDK (bakong-khqr 1.0.20) and real bank QRs.

`khqr-vectors.jsonl`: strings the SDK made and what it said of them. `khqr-bank-qrs.jsonl`: ABA and
ACLEDA QRs printed in public code, with the SDK's verdict (their names and numbers replaced by
made-up ones). `khqr-sdk-hangs.jsonl`: strings with a correct CRC on which the SDK's verify never
returns.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from khqrpay.khqr import (
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


_OPTIONAL_NAMES = {
    "amount": "amount",
    "currency": "currency",
    "expirationTimestamp": "expires_ms",
    "billNumber": "bill_number",
    "mobileNumber": "mobile_number",
    "storeLabel": "store_label",
    "terminalLabel": "terminal_label",
    "purposeOfTransaction": "purpose",
    "languagePreference": "language_preference",
    "merchantNameAlternateLanguage": "merchant_name_alt",
    "merchantCityAlternateLanguage": "merchant_city_alt",
    "merchantCategoryCode": "mcc",
    "accountInformation": "account_information",
    "acquiringBank": "acquiring_bank",
    "upiMerchantAccount": "upi_merchant_account",
}


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
    sdk = vector["decode"]
    assert decoded.md5 == vector["md5"]
    assert decoded.crc == sdk["crc"]
    assert decoded.merchant_type == ("merchant" if sdk["merchantType"] == "30" else "individual")
    assert decoded.bakong_account_id == sdk["bakongAccountID"]
    assert decoded.merchant_id == sdk["merchantID"]
    assert decoded.acquiring_bank == sdk["acquiringBank"]
    assert decoded.account_information == sdk["accountInformation"]
    assert decoded.merchant_name == sdk["merchantName"]
    assert decoded.merchant_city == sdk["merchantCity"]
    assert decoded.currency.numeric == sdk["transactionCurrency"]
    assert decoded.point_of_initiation == sdk["pointofInitiationMethod"]
    assert decoded.dynamic is (sdk["pointofInitiationMethod"] == "12")
    assert decoded.mcc == sdk["merchantCategoryCode"]
    assert decoded.country == sdk["countryCode"]
    assert decoded.bill_number == sdk["billNumber"]
    assert decoded.mobile_number == sdk["mobileNumber"]
    assert decoded.store_label == sdk["storeLabel"]
    assert decoded.terminal_label == sdk["terminalLabel"]
    assert decoded.purpose == sdk["purposeOfTransaction"]
    assert decoded.language_preference == sdk["languagePreference"]
    assert decoded.merchant_name_alt == sdk["merchantNameAlternateLanguage"]
    assert decoded.merchant_city_alt == sdk["merchantCityAlternateLanguage"]
    assert decoded.upi_merchant_account == sdk["unionPayMerchant"]
    if sdk["transactionAmount"] is None:
        assert decoded.amount is None
        assert decoded.money is None
    else:
        assert decoded.amount == Decimal(str(sdk["transactionAmount"]))
        assert decoded.money is not None
        assert decoded.money.amount == decoded.amount
    for ours, theirs in (
        (decoded.creation_ms, sdk["creationTimestamp"]),
        (decoded.expiration_ms, sdk["expirationTimestamp"]),
    ):
        assert ours == (None if theirs is None else int(theirs))
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


# Probe strings the SDK accepts but should not: we reject them with this field and reason.
STRICTER_THAN_SDK = {
    "lenient-tag30-only-sub00": ("tag 30/01", "merchant id"),
    "lenient-amount-letters": ("tag 54", "not a plain decimal"),
    "lenient-khr-fraction": ("tag 54", "would need rounding"),
    "lenient-country-USA": ("tag 58", "KH"),
    "lenient-both-29-and-30": ("tag 30", "both"),
    "lenient-no-poi": ("tag 01", "required"),
    "lenient-62-unknown-sub05": ("tag 62/05", "does not carry"),
}
# Where the SDK rejects for one reason and we find another first (the template it never checks).
OTHER_FIRST_REASON = {"readme-example-expired": "tag 30/01"}
# Verify at a moment when only the deliberately expired probe has expired.
PROBE_NOW_MS = FROZEN_NOW_MS + DAY_MS


def test_the_stricter_list_names_every_lenient_probe() -> None:
    lenient = {v["id"] for v in VECTORS if v["kind"] == "probe_string" and "lenient" in v["id"]}
    assert lenient == set(STRICTER_THAN_SDK)


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
    if probe in OTHER_FIRST_REASON:
        assert rejected.value.field == OTHER_FIRST_REASON[probe]
        return
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


def test_real_bank_qrs_decode_with_their_unknown_tags_kept() -> None:
    aba = decode(BANK_QRS["aba-individual-static"]["qr"])
    assert (aba.merchant_type, aba.bakong_account_id) == ("individual", "abaakhppxxx@abaa")
    assert (aba.account_information, aba.acquiring_bank) == ("012345678", "ABA Bank")
    assert (aba.merchant_name, aba.mcc, aba.amount) == ("SOK DARA", "0000", None)
    assert dict(aba.unknown_tags) == {
        "40": "0006abaP2P01120A1B2C3D4E5F020901234567803090987654320404Dual"
    }

    merchant = decode(BANK_QRS["aba-merchant-dynamic"]["qr"])
    assert (merchant.merchant_type, merchant.merchant_id) == ("merchant", "100000000000001")
    assert str(merchant.money) == "1.89 USD"
    assert (merchant.creation_ms, merchant.expiration_ms) == (1764302681094, 1764302981094)
    assert [tag for tag, _ in merchant.unknown_tags] == ["62/68"]

    acleda = decode(BANK_QRS["acleda-individual-static-khmer-name"]["qr"])
    assert (acleda.bakong_account_id, acleda.acquiring_bank) == ("khqr@aclb", "ACLEDA")
    assert acleda.merchant_name == "សុខ  ដារ៉ា"
    assert (acleda.mobile_number, acleda.currency) == ("012345678", Currency.KHR)
    assert dict(acleda.unknown_tags) == {"39": "00042CCY01014"}

    out_of_order = decode(BANK_QRS["acleda-dynamic-tags-out-of-order"]["qr"])
    assert (out_of_order.amount, out_of_order.currency) == (Decimal("5.00"), Currency.USD)
    assert out_of_order.dynamic

    # ACLEDA's own template sits inside 62, as sub-tag 99: kept, never read as timestamps.
    template_in_62 = decode(BANK_QRS["acleda-dynamic-with-payment-system-template-in-62"]["qr"])
    assert (template_in_62.creation_ms, template_in_62.expiration_ms) == (None, None)
    assert dict(template_in_62.unknown_tags) == {"62/99": "0009khqr@aclb0307QRPAYME"}
    assert (template_in_62.amount, template_in_62.purpose) == (Decimal(1), "Purchase")
    assert template_in_62.bill_number == "100000000001"


# Our verdict on each bank QR: the SDK's, except where noted.
BANK_VERDICTS = {
    "aba-individual-static": None,
    "aba-merchant-static": None,
    # Valid until it expired; the SDK ran afterwards (46). 62/68 is a payment-system template.
    "aba-merchant-dynamic": None,
    "acleda-individual-static-khmer-name": None,
    # An amount without tag 99: the SDK's rule 45, which we keep.
    "acleda-dynamic-without-99": ("tag 99/01", SdkCode.EXPIRATION_REQUIRED),
    "acleda-dynamic-tags-out-of-order": ("tag 99/01", SdkCode.EXPIRATION_REQUIRED),
    "acleda-dynamic-with-payment-system-template-in-62": (
        "tag 99/01",
        SdkCode.EXPIRATION_REQUIRED,
    ),
}
BEFORE_ABA_EXPIRY_MS = 1_764_302_700_000


@pytest.mark.parametrize("bank_qr", BANK_QRS)
def test_real_bank_qrs_verify_as_the_sdk_says(bank_qr: str) -> None:
    record = BANK_QRS[bank_qr]
    expected = BANK_VERDICTS[bank_qr]
    if expected is None:
        assert record["sdk_verify"] or record["sdk_error_code"] == SdkCode.EXPIRED
        verify(record["qr"], now_ms=BEFORE_ABA_EXPIRY_MS)
        return
    assert record["sdk_error_code"] == expected[1]
    with pytest.raises(KHQRVerifyError) as rejected:
        verify(record["qr"], now_ms=BEFORE_ABA_EXPIRY_MS)
    assert (rejected.value.field, rejected.value.code) == expected


def test_the_expired_bank_qr_is_rejected_as_expired_after_its_time() -> None:
    with pytest.raises(KHQRVerifyError) as rejected:
        verify(BANK_QRS["aba-merchant-dynamic"]["qr"], now_ms=FROZEN_NOW_MS)
    assert rejected.value.code == SdkCode.EXPIRED


def test_every_codec_error_is_a_khqr_error() -> None:
    assert issubclass(KHQRDecodeError, KHQRVerifyError)
    assert issubclass(KHQRVerifyError, KHQRError)
    assert issubclass(KHQRInputError, KHQRError)
