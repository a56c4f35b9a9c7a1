"""Parsing Bakong answers: the recorded envelopes, and every way an answer can be malformed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from khqrpay.bakong import (
    BadResponse,
    Failed,
    MalformedTransaction,
    NotFound,
    Paid,
    StaticQr,
    Unavailable,
)
from khqrpay.bakong.envelope import (
    decode_json,
    encode_json,
    parse_envelope,
    parse_list_items,
    parse_transaction,
)
from khqrpay.money import Currency, Money

DATA = Path(__file__).parent.parent / "data" / "bakong"
EP = "/v1/test"
RECEIVED_MS = 1_795_651_205_000


def recorded(name: str) -> object:
    return decode_json((DATA / name).read_bytes(), endpoint=EP, http_status=200)


def envelope_of(name: str):
    return parse_envelope(recorded(name), endpoint=EP, http_status=200)


def tx_json(**changes: object) -> dict[str, object]:
    base = json.loads((DATA / "check_paid.json").read_text())["data"]
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def parse_tx(value: object):
    # Through real JSON text, so numbers go through the same Decimal parsing as answers do.
    return parse_transaction(
        decode_json(json.dumps(value).encode(), endpoint=EP, http_status=200),
        where="data",
        endpoint=EP,
        received_ms=RECEIVED_MS,
    )


def parse_list(data: object, requested: list[str], key_field: str = "md5"):
    return parse_list_items(
        data,
        requested=requested,
        key_field=key_field,  # type: ignore[arg-type]
        endpoint=EP,
        received_ms=RECEIVED_MS,
    )


def test_numbers_are_decoded_as_decimal_never_float() -> None:
    value = decode_json(b'{"a": 0.1, "b": 3, "c": 1605774370608.0}', endpoint=EP, http_status=200)
    assert value == {"a": Decimal("0.1"), "b": 3, "c": Decimal("1605774370608.0")}
    assert isinstance(value["a"], Decimal)  # type: ignore[index]


@pytest.mark.parametrize("body", [b"<html>403</html>", b"", b'{"a": NaN}', b"\xff\xfe", b"[1,"])
def test_a_body_that_is_not_json_is_a_bad_response(body: bytes) -> None:
    with pytest.raises(BadResponse, match="not JSON"):
        decode_json(body, endpoint=EP, http_status=200)


def test_the_paid_envelope_parses_into_a_transaction() -> None:
    envelope = envelope_of("check_paid.json")
    assert envelope.ok
    assert envelope.error_code is None
    tx = parse_transaction(envelope.data, where="data", endpoint=EP, received_ms=RECEIVED_MS)
    assert tx.hash == "8465d722d7d5065f2886f0a474a4d34dc6a7855355b611836f7b6111228893e9"
    assert tx.short_hash == "8465d722"
    assert tx.amount == Decimal("1.0")
    assert isinstance(tx.amount, Decimal)
    assert tx.currency == "USD"
    assert tx.to_account_id == "shop@devb"
    assert tx.from_account_id == "abaakhppxxx@abaa"
    assert tx.created_ms == 1586852120700
    assert tx.acknowledged_ms == 1586852123544
    assert tx.external_ref == "100FT38906478429"
    assert tx.instruction_ref is None
    assert tx.tracking_status is None
    assert tx.money() == Money(Decimal("1.0"), Currency.USD)


def test_string_amounts_float_dates_and_any_key_order_are_accepted() -> None:
    envelope = envelope_of("check_paid_string_amount_float_dates.json")
    tx = parse_transaction(envelope.data, where="data", endpoint=EP, received_ms=RECEIVED_MS)
    assert tx.amount == Decimal("9800")
    assert tx.currency == "KHR"
    assert tx.created_ms == 1605774370608
    assert tx.acknowledged_ms == 1605774373011
    assert tx.instruction_ref == "INS20201119000123"


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("check_not_found.json", 1, "Transaction could not be found."),
        ("check_static_qr.json", 2, "does not support static QR"),
        ("check_failed.json", 3, "Transaction failed."),
        ("unauthorized.json", 6, "Unauthorized"),
    ],
)
def test_failure_envelopes_keep_code_and_message(name: str, code: int, message: str) -> None:
    envelope = envelope_of(name)
    assert not envelope.ok
    assert envelope.error_code == code
    assert message in envelope.response_message


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ([], "not a JSON object"),
        ({"responseMessage": "x", "errorCode": None, "data": None}, "responseCode"),
        ({"responseCode": "0", "errorCode": None}, "responseCode"),
        ({"responseCode": True, "errorCode": None}, "responseCode"),
        ({"responseCode": 2, "errorCode": None}, "responseCode"),
        ({"responseCode": 0, "responseMessage": 5}, "responseMessage"),
        ({"responseCode": 1, "errorCode": "1"}, "errorCode"),
        ({"responseCode": 1, "errorCode": 1.0}, "errorCode"),
        ({"responseCode": 1, "errorCode": None}, "without an errorCode"),
    ],
)
def test_anything_but_the_envelope_is_a_bad_response(body: object, rule: str) -> None:
    value = decode_json(json.dumps(body).encode(), endpoint=EP, http_status=200)
    with pytest.raises(BadResponse, match=rule):
        parse_envelope(value, endpoint=EP, http_status=200)


def test_a_missing_message_reads_as_empty() -> None:
    envelope = parse_envelope({"responseCode": 0, "data": {}}, endpoint=EP, http_status=200)
    assert envelope.response_message == ""
    assert envelope.error_code is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"hash": ...}, "hash"),
        ({"hash": ""}, "hash"),
        ({"hash": "abc"}, "hash"),
        ({"hash": 12345}, "hash"),
        ({"amount": ...}, "amount"),
        ({"amount": None}, "amount"),
        ({"amount": "1,000"}, "amount"),
        ({"amount": "-1"}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": 0}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": [1]}, "amount"),
        ({"currency": ...}, "currency"),
        ({"currency": 840}, "currency"),
        ({"toAccountId": 5}, "toAccountId"),
        ({"createdDateMs": "1586852120700"}, "createdDateMs"),
        ({"createdDateMs": 1586852120}, "createdDateMs"),  # seconds, not milliseconds
        ({"acknowledgedDateMs": True}, "acknowledgedDateMs"),
        ({"fromAccountId": 7}, "fromAccountId"),
        ({"description": {"a": 1}}, "description"),
    ],
)
def test_a_transaction_with_a_missing_or_mistyped_field_is_refused(
    changes: dict[str, object], field: str
) -> None:
    with pytest.raises(MalformedTransaction, match=f"data.{field}"):
        parse_tx(tx_json(**changes))


def test_a_transaction_must_be_an_object() -> None:
    with pytest.raises(MalformedTransaction, match="not a JSON object"):
        parse_transaction(None, where="data", endpoint=EP, received_ms=RECEIVED_MS)


OPTIONAL_KEYS = (
    "toAccountId",
    "fromAccountId",
    "createdDateMs",
    "acknowledgedDateMs",
    "description",
    "trackingStatus",
    "receiverBank",
    "receiverBankAccount",
    "instructionRef",
    "externalRef",
)


@pytest.mark.parametrize("absent", [*OPTIONAL_KEYS, "all"])
def test_a_success_missing_optional_fields_is_still_a_payment_with_them_absent(
    absent: str,
) -> None:
    left_out = OPTIONAL_KEYS if absent == "all" else (absent,)
    tx = parse_tx(tx_json(**dict.fromkeys(left_out, ...)))
    assert (tx.hash[:8], tx.amount, tx.currency) == ("8465d722", Decimal("1.0"), "USD")
    attributes = {
        "toAccountId": tx.to_account_id,
        "fromAccountId": tx.from_account_id,
        "createdDateMs": tx.created_ms,
        "acknowledgedDateMs": tx.acknowledged_ms,
        "description": tx.description,
        "externalRef": tx.external_ref,
    }
    for key in left_out:
        assert attributes.get(key) is None
    assert tx.received_ms == RECEIVED_MS


def test_blank_text_is_not_stated() -> None:
    tx = parse_tx(tx_json(toAccountId=" ", fromAccountId=""))
    assert (tx.to_account_id, tx.from_account_id) == (None, None)


@pytest.mark.parametrize(
    ("amount", "exact"),
    [(1, "1"), (1.0, "1.0"), ("0.10", "0.10"), (0.1, "0.1"), (9800, "9800"), (12.35, "12.35")],
)
def test_amounts_as_integers_fractions_or_strings_are_read_exactly(
    amount: object, exact: str
) -> None:
    through_json = parse_tx(tx_json(amount=amount))
    # A float from another JSON parser goes through its repr, never its binary value.
    direct = parse_transaction(
        tx_json(amount=amount), where="data", endpoint=EP, received_ms=RECEIVED_MS
    )
    assert through_json.amount == direct.amount == Decimal(exact)
    assert str(direct.amount) == exact


@pytest.mark.parametrize("created", [1586852120700, 1586852120700.0, 1586852120700.4])
def test_dates_as_integers_or_fractions_are_milliseconds(created: object) -> None:
    assert parse_tx(tx_json(createdDateMs=created)).created_ms == 1586852120700
    direct = parse_transaction(
        tx_json(createdDateMs=created), where="data", endpoint=EP, received_ms=RECEIVED_MS
    )
    assert direct.created_ms == 1586852120700


def test_the_production_shaped_answer_is_a_payment() -> None:
    envelope = envelope_of("check_paid_production.json")
    tx = parse_transaction(envelope.data, where="data", endpoint=EP, received_ms=RECEIVED_MS)
    assert (envelope.response_message, tx.amount, tx.instruction_ref) == ("Success", 12, None)
    assert (tx.tracking_status, tx.receiver_bank, tx.receiver_bank_account) == (None, None, None)
    assert tx.acknowledged_ms == tx.created_ms + 2000  # type: ignore[operator]


def test_hash_is_normalised_to_lower_case_and_amounts_keep_their_digits() -> None:
    tx = parse_tx(tx_json(hash="8465D722" + "A" * 56, amount=0.01, acknowledgedDateMs=None))
    assert tx.hash == "8465d722" + "a" * 56
    assert tx.amount == Decimal("0.01")
    assert tx.acknowledged_ms is None


MD5S = [f"0123456789abcdef0123456789abcd{i:02d}" for i in range(7)]


def test_a_bulk_answer_maps_every_status_and_every_transaction_placement() -> None:
    envelope = envelope_of("md5_list_mixed.json")
    results = parse_list(envelope.data, MD5S)
    assert list(results) == MD5S
    under_data, under_transaction, inline = (results[m] for m in MD5S[:3])
    assert isinstance(under_data, Paid)
    assert under_data.transaction.amount == Decimal("1.0")
    assert isinstance(under_transaction, Paid)
    assert under_transaction.transaction.short_hash == "c0ffee00"
    assert under_transaction.transaction.amount == Decimal("0.01")
    assert under_transaction.transaction.created_ms == 1586852130000
    assert isinstance(inline, Paid)
    assert inline.transaction.short_hash == "deadbeef"
    assert inline.transaction.amount == Decimal("4000")
    assert inline.transaction.currency == "KHR"
    assert isinstance(results[MD5S[3]], NotFound)
    assert isinstance(results[MD5S[4]], StaticQr)
    assert isinstance(results[MD5S[5]], Failed)
    assert isinstance(results[MD5S[6]], Unavailable)


def test_a_requested_key_missing_from_the_answer_is_a_bad_response_for_that_key() -> None:
    envelope = envelope_of("md5_list_mixed.json")
    extra = "f" * 32
    results = parse_list(envelope.data, [MD5S[3], extra])
    assert isinstance(results[MD5S[3]], NotFound)
    assert isinstance(results[extra], BadResponse)
    assert set(results) == {MD5S[3], extra}  # items nobody asked about are ignored


def item(md5: str, status: str, **rest: object) -> dict[str, object]:
    return {"md5": md5, "status": status, "message": "m", **rest}


@pytest.mark.parametrize(
    "bad_item",
    [
        item(MD5S[0], "SUCCESS"),  # no transaction anywhere
        item(MD5S[0], "SUCCESS", data=tx_json(amount=None)),
        item(MD5S[0], "PENDING"),
        {"md5": MD5S[0], "status": 1},
        {"md5": MD5S[0], "status": "NOT_FOUND", "message": 3},
    ],
)
def test_a_malformed_item_is_a_bad_response_for_its_key_only(bad_item: dict[str, object]) -> None:
    data = decode_json(
        json.dumps([bad_item, item(MD5S[1], "NOT_FOUND")]).encode(), endpoint=EP, http_status=200
    )
    results = parse_list(data, MD5S[:2])
    assert isinstance(results[MD5S[0]], BadResponse)
    assert isinstance(results[MD5S[1]], NotFound)


def test_contradicting_items_for_one_key_are_a_bad_response_but_repeats_are_fine() -> None:
    data = [item(MD5S[0], "NOT_FOUND"), item(MD5S[0], "FAILED")]
    data += [item(MD5S[1], "NOT_FOUND"), item(MD5S[1].upper(), "NOT_FOUND")]
    data += [item(MD5S[2], "SERVICE_FAILED"), item(MD5S[2], "SERVICE_FAILED")]
    results = parse_list(data, MD5S[:3])
    assert isinstance(results[MD5S[0]], BadResponse)
    assert isinstance(results[MD5S[1]], NotFound)
    assert isinstance(results[MD5S[2]], Unavailable)


@pytest.mark.parametrize("data", [None, {"md5": MD5S[0]}, [1], [{"status": "NOT_FOUND"}]])
def test_an_unattributable_list_is_a_bad_response_for_the_whole_call(data: object) -> None:
    with pytest.raises(BadResponse):
        parse_list(data, MD5S[:1])


def test_a_hash_list_success_must_carry_the_hash_asked_for() -> None:
    envelope = envelope_of("hash_list.json")
    real_hash = "8465d722d7d5065f2886f0a474a4d34dc6a7855355b611836f7b6111228893e9"
    results = parse_list(envelope.data, [real_hash, "f" * 64], "hash")
    assert isinstance(results[real_hash], Paid)
    assert isinstance(results["f" * 64], NotFound)
    swapped = [{"hash": "e" * 64, "status": "SUCCESS", "data": tx_json()}]
    results = parse_list(swapped, ["e" * 64], "hash")
    assert isinstance(results["e" * 64], MalformedTransaction)


def test_request_bodies_write_decimals_exactly_and_never_nan() -> None:
    body = encode_json({"hash": "abcd1234", "amount": Decimal("0.10"), "list": ["a", 1, None]})
    assert body == b'{"hash":"abcd1234","amount":0.10,"list":["a",1,null]}'
    assert encode_json({"amount": Decimal("1E+3")}) == b'{"amount":1000}'
    with pytest.raises(ValueError, match="finite"):
        encode_json(Decimal("NaN"))
