"""Properties: no input hangs or escapes the typed errors, and valid inputs round-trip."""

from __future__ import annotations

import time
from decimal import Decimal

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from khqrpay.khqr import KHQRError, KHQRInput, KHQRInputError, decode, encode, verify
from khqrpay.khqr.crc import crc_hex
from khqrpay.khqr.tlv import utf16_length
from khqrpay.money import Currency

NOW_MS = 1_795_651_200_000
SLOW_S = 1.0  # a call takes microseconds: only a loop (or a very busy machine) takes this long

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Building a valid input costs Hypothesis far more than the codec's microseconds: fewer of them.
COMPOSED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def judge(qr: str) -> None:
    """decode and verify either answer or raise a KHQRError, promptly."""
    started = time.perf_counter()
    for action in (decode, lambda text: verify(text, now_ms=NOW_MS)):
        error: KHQRError | None = None
        try:
            action(qr)
        except KHQRError as raised:
            error = raised
        assert error is None or (error.field and error.rule)
    assert time.perf_counter() - started < SLOW_S


@FAST
@given(st.text(max_size=600))
def test_any_text_ends_in_an_answer_or_a_typed_error(text: str) -> None:
    judge(text)


@FAST
@given(st.binary(max_size=600))
def test_any_bytes_read_as_text_end_in_an_answer_or_a_typed_error(raw: bytes) -> None:
    judge(raw.decode("utf-8", "surrogateescape"))  # lone surrogates included


# --- valid inputs ---------------------------------------------------------------------------

_PRINTABLE = st.characters(blacklist_categories=("Cc", "Cs"))
_KHMER = st.characters(min_codepoint=0x1780, max_codepoint=0x17FF)
_TEXT_CHARACTERS = st.one_of(_PRINTABLE, _KHMER, st.sampled_from("🍜😀"))


def text_of(limit: int) -> st.SearchStrategy[str]:
    """Non-empty printable text within `limit` UTF-16 code units, Khmer and emoji included."""
    return st.text(_TEXT_CHARACTERS, min_size=1, max_size=limit).filter(
        lambda text: utf16_length(text) <= limit
    )


def optional(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    return st.none() | strategy


_ACCOUNT_ID = st.builds(
    "{}@{}".format,
    st.from_regex(r"[a-z0-9_.]{1,20}", fullmatch=True),
    st.from_regex(r"[a-z]{2,8}", fullmatch=True),
)


@st.composite
def amounts(draw: st.DrawFn, currency: Currency) -> Decimal | None:
    if draw(st.booleans()):
        return None
    if currency is Currency.KHR:
        return Decimal(draw(st.integers(1, 10**13 - 1)))
    cents = draw(st.integers(1, 10**12 - 1))
    return Decimal(cents).scaleb(-2)


@st.composite
def valid_inputs(draw: st.DrawFn) -> KHQRInput:
    currency = draw(st.sampled_from(Currency))
    amount = draw(amounts(currency))
    merchant = draw(st.booleans())
    language = draw(st.booleans())
    return KHQRInput(
        bakong_account_id=draw(_ACCOUNT_ID),
        merchant_name=draw(text_of(25)),
        merchant_city=draw(text_of(15)),
        currency=currency,
        amount=amount,
        merchant_id=draw(text_of(32)) if merchant else None,
        acquiring_bank=draw(text_of(32)) if merchant else draw(optional(text_of(32))),
        account_information=None if merchant else draw(optional(text_of(32))),
        mcc=draw(st.from_regex(r"[0-9]{4}", fullmatch=True)),
        bill_number=draw(optional(text_of(25))),
        mobile_number=draw(optional(text_of(25))),
        store_label=draw(optional(text_of(25))),
        terminal_label=draw(optional(text_of(25))),
        purpose=draw(optional(text_of(25))),
        language_preference="km" if language else None,
        merchant_name_alt=draw(text_of(25)) if language else None,
        merchant_city_alt=draw(optional(text_of(15))) if language else None,
        upi_merchant_account=(
            draw(optional(st.from_regex(r"[0-9]{16,19}", fullmatch=True)))
            if currency is Currency.KHR
            else None
        ),
        expires_ms=draw(st.integers(NOW_MS, 10**13 - 1)) if amount is not None else None,
    )


def encode_or_skip_overfull_template(data: KHQRInput) -> str:
    """Encode; inputs whose fields together overfill a template (each field valid) are skipped."""
    try:
        return encode(data, now_ms=NOW_MS).qr
    except KHQRInputError as error:
        assume(not (error.field.startswith("tag ") and "at most 99" in error.rule))
        raise


@COMPOSED
@given(valid_inputs())
def test_valid_inputs_round_trip_byte_identically_and_verify(data: KHQRInput) -> None:
    qr = encode_or_skip_overfull_template(data)
    decoded = verify(qr, now_ms=NOW_MS)
    assert decoded.as_input() == data
    again = encode(decoded.as_input(), now_ms=NOW_MS)
    assert again.qr == qr
    assert again.md5 == decoded.md5
    assert decoded.dynamic is (data.amount is not None)
    assert decoded.unknown_tags == ()


# --- mutations of valid strings -------------------------------------------------------------

_MUTATION = st.tuples(
    st.sampled_from(["replace", "insert", "delete", "duplicate"]),
    st.integers(0, 10_000),
    st.integers(1, 12),
    st.text(st.sampled_from("0123456789xX@ ៛🍜"), min_size=1, max_size=6),
)


def mutate(qr: str, mutation: tuple[str, int, int, str]) -> str:
    kind, where, span, text = mutation
    body = qr[:-8]  # keep the CRC field apart, to recompute it
    at = where % (len(body) + 1)
    if kind == "replace":
        body = body[:at] + text + body[at + len(text) :]
    elif kind == "insert":
        body = body[:at] + text + body[at:]
    elif kind == "delete":
        body = body[:at] + body[at + span :]
    else:
        body = body[:at] + body[at : at + span] + body[at:]
    return body


@COMPOSED
@given(valid_inputs(), st.lists(_MUTATION, min_size=1, max_size=3), st.booleans())
def test_mutated_valid_strings_end_in_an_answer_or_a_typed_error(
    data: KHQRInput, mutations: list[tuple[str, int, int, str]], fix_crc: bool
) -> None:
    qr = encode_or_skip_overfull_template(data)
    for mutation in mutations:
        qr = mutate(qr, mutation) + qr[-8:]
    if fix_crc:  # a correct CRC takes the mutation past the checksum into the parser
        qr = qr[:-4] + crc_hex(qr[:-4])
    judge(qr)
