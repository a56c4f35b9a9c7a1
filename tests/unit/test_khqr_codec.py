"""The codec's rules one by one: what the vectors do not already pin down."""

from __future__ import annotations

import dataclasses
import pickle
import time
from decimal import Decimal
from typing import Any

import pytest

from khqrpay.khqr import (
    DecodedKHQR,
    KHQRDecodeError,
    KHQRInput,
    KHQRInputError,
    KHQRVerifyError,
    SdkCode,
    decode,
    encode,
    verify,
)
from khqrpay.khqr.crc import crc16_ccitt_false, crc_hex
from khqrpay.khqr.tlv import parse_fields, utf16_length
from khqrpay.money import Currency, Money

NOW_MS = 1_795_651_200_000
LATER_MS = NOW_MS + 600_000
ACCOUNT = "29190015john_smith@devb"
HEAD = f"000201010211{ACCOUNT}"  # static
DYNAMIC_HEAD = f"000201010212{ACCOUNT}"
TAIL = "5802KH5910John Smith6010Phnom Penh"
STATIC_KHR = f"{HEAD}520459995303116{TAIL}"
SIGNED = f"99340013{NOW_MS}0113{LATER_MS}"


def with_crc(payload: str) -> str:
    """A string with a correct CRC (anyone can compute one), to reach the rules behind it."""
    return payload + "6304" + crc_hex(payload + "6304")


def khqr(**changes: Any) -> KHQRInput:
    return dataclasses.replace(KHQRInput("john_smith@devb", "John Smith"), **changes)


def dynamic(**changes: Any) -> KHQRInput:
    return khqr(
        **{"amount": Decimal("1.50"), "currency": Currency.USD, "expires_ms": LATER_MS} | changes
    )


def refusal(data: KHQRInput, *, now_ms: int = NOW_MS) -> KHQRInputError:
    with pytest.raises(KHQRInputError) as refused:
        encode(data, now_ms=now_ms)
    return refused.value


def rejection(qr: str, *, now_ms: int | None = NOW_MS) -> KHQRVerifyError:
    with pytest.raises(KHQRVerifyError) as rejected:
        verify(qr, now_ms=now_ms)
    return rejected.value


# --- CRC and fields -------------------------------------------------------------------------


def test_crc_is_ccitt_false() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1  # the catalogued check value


def test_lengths_count_utf16_code_units() -> None:
    assert utf16_length("John") == 4
    assert utf16_length("ភ្នំពេញ") == 7  # Khmer is in the BMP: one unit a character
    assert utf16_length("🍜a") == 3  # an emoji is a surrogate pair


@pytest.mark.parametrize(
    ("data", "field", "rule"),
    [
        ("590", "payload", "too short"),
        ("5A04abcd", "payload", "not 2 digits"),
        ("59x4abcd", "tag 59", "not 2 digits"),
        ("59٠٤abcd", "tag 59", "not 2 digits"),  # Arabic-Indic digits are digits, not ASCII
        ("5905abcd", "tag 59", "runs past the end"),
        ("5901a5901b", "tag 59", "appears twice"),
    ],
)
def test_the_parser_names_what_is_wrong_with_a_field(data: str, field: str, rule: str) -> None:
    with pytest.raises(KHQRDecodeError) as refused:
        parse_fields(data)
    assert refused.value.field == field
    assert rule in refused.value.rule


def test_sub_field_errors_name_the_template() -> None:
    with pytest.raises(KHQRDecodeError) as refused:
        parse_fields("0015john_smith@devb01x1", "29")
    assert refused.value.field == "tag 29/01"


# --- encode ---------------------------------------------------------------------------------


def test_an_emoji_counts_two_like_the_sdk_and_round_trips() -> None:
    encoded = encode(khqr(merchant_name="🍜" * 12), now_ms=NOW_MS)
    assert "5924" + "🍜" * 12 + "6010" in encoded.qr
    assert verify(encoded.qr, now_ms=NOW_MS).merchant_name == "🍜" * 12
    assert refusal(khqr(merchant_name="🍜" * 13)).code == SdkCode.MERCHANT_NAME_LENGTH_INVALID


def test_a_length_that_would_cut_an_emoji_in_half_is_refused() -> None:
    # The value would end between the two halves: the second half cannot start a field.
    qr = with_crc(f"{HEAD}52045999530311658021🍜5910John Smith6010Phnom Penh")
    error = rejection(qr)
    assert error.field == "payload"
    assert "is not 2 digits" in error.rule


@pytest.mark.parametrize(
    ("data", "field", "code"),
    [
        (khqr(amount=Decimal(0), expires_ms=LATER_MS), "amount", SdkCode.AMOUNT_INVALID),
        (khqr(amount=1.5, expires_ms=LATER_MS), "amount", SdkCode.AMOUNT_INVALID),
        (khqr(amount=Decimal("NaN"), expires_ms=LATER_MS), "amount", SdkCode.AMOUNT_INVALID),
        (khqr(amount=Decimal("1E+999999"), expires_ms=LATER_MS), "amount", SdkCode.AMOUNT_INVALID),
        (
            khqr(amount=Decimal("12345678901234"), expires_ms=LATER_MS),
            "amount",
            SdkCode.AMOUNT_INVALID,
        ),
        (
            khqr(amount=Decimal("1234567890123456789012345678.123"), expires_ms=LATER_MS),
            "amount",
            SdkCode.AMOUNT_INVALID,
        ),
        (khqr(expires_ms=LATER_MS), "expires_ms", None),
        (dynamic(expires_ms=NOW_MS - 1), "expires_ms", SdkCode.EXPIRATION_IN_THE_PAST),
        (
            khqr(merchant_id="M1", acquiring_bank="Bank", account_information="x"),
            "account_information",
            None,
        ),
        (khqr(merchant_id="", acquiring_bank="Bank"), "merchant_id", SdkCode.MERCHANT_ID_REQUIRED),
        (
            khqr(bakong_account_id="john smith@devb"),
            "bakong_account_id",
            SdkCode.ACCOUNT_ID_INVALID,
        ),
        (khqr(bakong_account_id="john@"), "bakong_account_id", SdkCode.ACCOUNT_ID_INVALID),
        (khqr(bill_number=""), "bill_number", SdkCode.BILL_NUMBER_LENGTH_INVALID),
        (khqr(merchant_city=""), "merchant_city", SdkCode.MERCHANT_CITY_REQUIRED),
        (khqr(merchant_city="C" * 16), "merchant_city", SdkCode.MERCHANT_CITY_LENGTH_INVALID),
        (khqr(merchant_name="John\nSmith"), "merchant_name", None),
        (khqr(merchant_name="John\ud800"), "merchant_name", None),
        (khqr(merchant_name=None), "merchant_name", None),
        (khqr(mcc="59a9"), "mcc", SdkCode.MERCHANT_CATEGORY_CODE_INVALID),
        (khqr(mcc=5999), "mcc", None),
        (
            khqr(language_preference="k1", merchant_name_alt="ចន"),
            "language_preference",
            SdkCode.LANGUAGE_PREFERENCE_LENGTH_INVALID,
        ),
        (
            khqr(merchant_city_alt="ភ្នំពេញ"),
            "language_preference",
            SdkCode.LANGUAGE_PREFERENCE_REQUIRED,
        ),
        (
            khqr(language_preference="km"),
            "merchant_name_alt",
            SdkCode.MERCHANT_NAME_ALT_REQUIRED,
        ),
        (
            khqr(currency=Currency.USD, upi_merchant_account="9" * 20),
            "upi_merchant_account",
            SdkCode.UPI_ACCOUNT_WITH_USD,
        ),
        (
            khqr(
                account_information="1" * 32,
                acquiring_bank="B" * 32,
                bakong_account_id="a" * 27 + "@abaa",
            ),
            "tag 29",
            None,
        ),
    ],
)
def test_encode_refuses_with_the_field_and_code(
    data: KHQRInput, field: str, code: SdkCode | None
) -> None:
    error = refusal(data)
    assert (error.field, error.code) == (field, code)
    assert error.rule


@pytest.mark.parametrize("now_ms", [1_795_651_200, True, "1795651200000", 10**13])
def test_encode_needs_13_digit_epoch_milliseconds_for_now(now_ms: Any) -> None:
    assert refusal(khqr(), now_ms=now_ms).field == "now_ms"


def test_encode_refuses_what_is_not_an_input() -> None:
    with pytest.raises(KHQRInputError):
        encode({"bakong_account_id": "john_smith@devb"}, now_ms=NOW_MS)  # type: ignore[arg-type]


def test_an_expiry_equal_to_the_creation_time_is_allowed_like_the_sdk() -> None:
    encoded = encode(dynamic(expires_ms=NOW_MS), now_ms=NOW_MS)
    assert verify(encoded.qr, now_ms=NOW_MS).expiration_ms == NOW_MS
    assert rejection(encoded.qr, now_ms=NOW_MS + 1).code == SdkCode.EXPIRED


def test_khmer_text_with_word_breaks_is_accepted() -> None:
    name = "ហាង\u200bកាហ្វេ"  # Khmer separates words with zero-width spaces
    assert decode(encode(khqr(merchant_name=name), now_ms=NOW_MS).qr).merchant_name == name


def test_every_optional_field_is_written_in_the_sdk_order() -> None:
    every_field = khqr(
        upi_merchant_account="6200000000000000",
        account_information="012345678",
        acquiring_bank="Dev Bank",
        mcc="5812",
        amount=Decimal(4000),
        expires_ms=LATER_MS,
        bill_number="B1",
        mobile_number="855",
        store_label="S",
        terminal_label="T",
        purpose="P",
        language_preference="km",
        merchant_name_alt="ចន",
        merchant_city_alt="ភ្នំពេញ",
    )
    encoded = encode(every_field, now_ms=NOW_MS)
    assert encoded.qr == with_crc(
        "000201010212"
        "15166200000000000000"
        "29440015john_smith@devb0109012345678" + "0208Dev Bank"
        "52045812530311654044000" + TAIL + "62280102B10203855" + "0301S0701T0801P"
        "64230002km0102ចន0207ភ្នំពេញ"
        f"99340013{NOW_MS}0113{LATER_MS}"
    )
    decoded = verify(encoded.qr, now_ms=NOW_MS)
    assert decoded.as_input() == every_field


def test_a_new_qr_for_the_same_payment_has_a_new_md5() -> None:
    first = encode(dynamic(), now_ms=NOW_MS)
    second = encode(dynamic(), now_ms=NOW_MS + 1)
    assert first.md5 != second.md5
    assert encode(khqr(), now_ms=NOW_MS) == encode(khqr(), now_ms=NOW_MS + 1)  # static: no time


# --- decode ---------------------------------------------------------------------------------


def test_decode_reads_another_generators_usd_amount_with_two_decimals() -> None:
    qr = with_crc(f"{DYNAMIC_HEAD}52045999530384054041.00{TAIL}{SIGNED}")
    decoded = verify(qr, now_ms=NOW_MS)
    assert decoded.money == Money(Decimal("1.00"), Currency.USD)
    assert decoded.as_json()["amount"] == "1.00"


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (f"{HEAD}30190015other_acct@devb520459995303116{TAIL}", "tag 30", None),
        (f"000201010211520459995303116{TAIL}", "tag 29", SdkCode.MERCHANT_TYPE_REQUIRED),
        (f"{HEAD}52045999{TAIL}", "tag 53", SdkCode.CURRENCY_REQUIRED),
        (f"000201010211{'29070103abc'}520459995303116{TAIL}", "tag 29/00", 1),
        (f"000201010211{'29040000'}520459995303116{TAIL}", "tag 29/00", 1),
        (f"{DYNAMIC_HEAD}5204599953031165414{'1' * 14}{TAIL}{SIGNED}", "tag 54", 4),
        (f"{DYNAMIC_HEAD}5204599953031165404-100{TAIL}{SIGNED}", "tag 54", 4),
        (f"{HEAD}520459995303978{TAIL}", "tag 53", SdkCode.UNSUPPORTED_CURRENCY),
    ],
)
def test_decode_refuses_a_structure_it_cannot_type(
    body: str, field: str, code: SdkCode | None
) -> None:
    with pytest.raises(KHQRDecodeError) as refused:
        decode(with_crc(body))
    assert refused.value.field == field
    assert refused.value.code == code


def test_the_crc_field_must_be_last() -> None:
    qr = f"{HEAD}5204599953031166304ABCD{TAIL}"
    with pytest.raises(KHQRDecodeError) as refused:
        decode(qr)
    assert refused.value.rule == "the CRC field must be the last field"


@pytest.mark.parametrize(
    ("qr", "rule"),
    [
        ("0" * 513, "at most 512"),
        (f"{HEAD}5204599953031165802KH5910John\ud800mith6010Phnom Penh6304ABCD", "surrogate"),
        (b"000201", "text"),
    ],
)
def test_decode_refuses_what_is_not_a_bounded_text(qr: Any, rule: str) -> None:
    with pytest.raises(KHQRDecodeError) as refused:
        decode(qr)
    assert rule in refused.value.rule
    with pytest.raises(KHQRVerifyError):
        verify(qr, now_ms=NOW_MS)


def test_unknown_tags_are_kept_in_order_with_their_template() -> None:
    qr = with_crc(f"{HEAD}391300042CCY01014520459995303116{TAIL}61051200062160105B-0016803xyz")
    decoded = verify(qr, now_ms=NOW_MS)
    unknown = (("39", "00042CCY01014"), ("61", "12000"), ("62/68", "xyz"))
    assert decoded.unknown_tags == unknown
    assert decoded.bill_number == "B-001"
    assert decoded.as_json()["unknown_tags"] == dict(unknown)


def test_a_static_qrs_tag_99_is_never_validated() -> None:
    for ninety_nine in ("99240009khqr@aclb0307QRPAYME", "9905hello", "990600zz12"):
        decoded = verify(with_crc(f"{STATIC_KHR}{ninety_nine}"), now_ms=NOW_MS)
        assert (decoded.creation_ms, decoded.expiration_ms) == (None, None)
        assert decoded.unknown_tags


def test_decoded_values_are_immutable_and_render_as_json() -> None:
    decoded = decode(encode(dynamic(store_label="S1"), now_ms=NOW_MS).qr)
    with pytest.raises(AttributeError):
        decoded.merchant_name = "Other"  # type: ignore[misc]
    rendered = decoded.as_json()
    assert rendered["currency"] == "USD"
    assert rendered["amount"] == "1.50"
    assert rendered["dynamic"] is True
    assert rendered["store_label"] == "S1"
    assert rendered["creation_ms"] == NOW_MS
    assert set(rendered) == set(DecodedKHQR._fields) - {"money"}


# --- verify ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "code"),
    [
        (f"{DYNAMIC_HEAD}520459995303116{TAIL}{SIGNED}", "tag 54", SdkCode.DYNAMIC_WITHOUT_AMOUNT),
        (f"{DYNAMIC_HEAD}52045999530311654010{TAIL}{SIGNED}", "tag 54", SdkCode.AMOUNT_INVALID),
        (
            f"000201010213{ACCOUNT}5204599953031165403100{TAIL}{SIGNED}",
            "tag 01",
            SdkCode.POINT_OF_INITIATION_INVALID,
        ),
        (
            f"{DYNAMIC_HEAD}5204599953031165403100{TAIL}99340013{LATER_MS}0113{NOW_MS}",
            "tag 99/01",
            SdkCode.EXPIRATION_IN_THE_PAST,
        ),
        (
            f"{DYNAMIC_HEAD}5204599953031165403100{TAIL}99310013{NOW_MS}0110{LATER_MS // 1000}",
            "tag 99/01",
            SdkCode.EXPIRATION_LENGTH_INVALID,
        ),
        (f"{DYNAMIC_HEAD}5204599953031165403100{TAIL}99170113{LATER_MS}", "tag 99/00", None),
        (f"{DYNAMIC_HEAD}5204599953031165403100{TAIL}", "tag 99/01", SdkCode.EXPIRATION_REQUIRED),
        (f"000202010211{ACCOUNT}520459995303116{TAIL}", "tag 00", None),
        (f"{STATIC_KHR}62300126{'B' * 26}", "tag 62/01", 10),
        (f"{STATIC_KHR}64060102ចន", "tag 64/00", SdkCode.LANGUAGE_PREFERENCE_REQUIRED),
        (
            f"000201010211290900050@b@c520459995303116{TAIL}",
            "tag 29/00",
            SdkCode.ACCOUNT_ID_INVALID,
        ),
        (f"{HEAD}5204599953031165802KH5926{'N' * 26}6010Phnom Penh", "tag 59", 7),
        (
            f"00020101021115049999{ACCOUNT}520459995303840{TAIL}",
            "tag 15",
            SdkCode.UPI_ACCOUNT_WITH_USD,
        ),
        (f"{HEAD}520359953031165802KH5910John Smith6010Phnom Penh", "tag 52", 18),
    ],
)
def test_verify_names_the_broken_rule(body: str, field: str, code: SdkCode | None) -> None:
    error = rejection(with_crc(body))
    assert (error.field, error.code) == (field, code), error


@pytest.mark.parametrize(
    ("body", "unknown"),
    [
        (f"{STATIC_KHR}62070503ABC", {"62/05": "ABC"}),
        (
            f"{STATIC_KHR}62270503REF1011TAX-00012341101A",
            {"62/05": "REF", "62/10": "TAX-0001234", "62/11": "A"},
        ),
        (f"{STATIC_KHR}6206090201", {"62/09": "01"}),
    ],
)
def test_emv_additional_data_sub_fields_khqr_does_not_use_are_kept_not_refused(
    body: str, unknown: dict[str, str]
) -> None:
    decoded = verify(with_crc(body), now_ms=NOW_MS)
    assert dict(decoded.unknown_tags) == unknown


@pytest.mark.parametrize(
    "body",
    [
        # A static point of initiation with an amount and its expiry: payable like a dynamic QR.
        f"{HEAD}5204599953031165403100{TAIL}{SIGNED}",
        # No point of initiation (optional in EMV): the amount says it is dynamic.
        f"000201{ACCOUNT}5204599953031165403100{TAIL}{SIGNED}",
        # A merchant template with only the Bakong account: the payment still has its payee.
        f"00020101021130190015john_smith@devb520459995303116{TAIL}",
        # Another country code: the Bakong account, not tag 58, decides where the money goes.
        f"{HEAD}5204599953031165803KHM5910John Smith6010Phnom Penh",
    ],
)
def test_verify_accepts_what_is_payable_and_safe_though_unusual(body: str) -> None:
    verify(with_crc(body), now_ms=NOW_MS)


def test_verify_accepts_a_lower_case_crc_like_the_sdk() -> None:
    qr = encode(khqr(), now_ms=NOW_MS).qr
    assert qr[-4:] != qr[-4:].lower()
    verify(qr[:-4] + qr[-4:].lower(), now_ms=NOW_MS)


def test_a_wrong_crc_is_rejected_with_the_expected_one() -> None:
    qr = encode(khqr(), now_ms=NOW_MS).qr
    error = rejection(qr[:-4] + "0000")
    assert (error.field, error.code) == ("tag 63", SdkCode.KHQR_INVALID)
    assert qr[-4:] in error.rule


def test_without_a_clock_only_the_expiry_check_is_skipped() -> None:
    expired = encode(dynamic(), now_ms=NOW_MS).qr
    verify(expired, now_ms=None)
    assert rejection(expired, now_ms=LATER_MS + 1).code == SdkCode.EXPIRED
    broken = with_crc(f"000201010213{ACCOUNT}5204599953031165403100{TAIL}{SIGNED}")
    assert rejection(broken, now_ms=None).code == SdkCode.POINT_OF_INITIATION_INVALID


def test_verify_refuses_a_clock_that_is_not_milliseconds() -> None:
    assert rejection(encode(khqr(), now_ms=NOW_MS).qr, now_ms=1.5).field == "now_ms"  # type: ignore[arg-type]


def test_a_huge_input_is_rejected_fast_with_a_short_message() -> None:
    started = time.perf_counter()
    error = rejection("5" * 1_000_000 + "63041234")
    assert time.perf_counter() - started < 0.5
    assert len(str(error)) < 200


# --- errors ---------------------------------------------------------------------------------


def test_errors_carry_field_rule_and_code_and_survive_pickling() -> None:
    error = refusal(khqr(merchant_name="N" * 26))
    assert str(error) == (
        "merchant_name: merchant name is 26 characters (UTF-16 code units) long; "
        "at most 25 are allowed [SDK code 7]"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.field, copy.rule, copy.code) == (
        KHQRInputError,
        error.field,
        error.rule,
        SdkCode.MERCHANT_NAME_LENGTH_INVALID,
    )


def test_an_error_quotes_at_most_a_little_of_the_input() -> None:
    error = refusal(khqr(bakong_account_id="x" * 30 + "y"))
    assert "…" not in error.rule
    long_error = refusal(khqr(mcc="9" * 500))
    assert len(long_error.rule) < 150
