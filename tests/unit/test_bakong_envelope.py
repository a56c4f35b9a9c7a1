"""Parsing Bakong answers: the recorded envelopes, and every way an answer can be malformed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from khqrpay.bakong import BadResponse, Failed, NotFound, Paid, StaticQr, Unavailable
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
    tx = parse_transaction(envelope.data, where="data", endpoint=EP)
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
    tx = parse_transaction(envelope.data, where="data", endpoint=EP)
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
        ({"toAccountId": ...}, "toAccountId"),
        ({"toAccountId": " "}, "toAccountId"),
        ({"createdDateMs": ...}, "createdDateMs"),
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
    with pytest.raises(BadResponse, match=f"data.{field}"):
        parse_tx(tx_json(**changes))


def test_a_transaction_must_be_an_object() -> None:
    with pytest.raises(BadResponse, match="not a JSON object"):
        parse_transaction(None, where="data", endpoint=EP)


def test_hash_is_normalised_to_lower_case_and_amounts_keep_their_digits() -> None:
    tx = parse_tx(tx_json(hash="8465D722" + "A" * 56, amount=0.01, acknowledgedDateMs=None))
    assert tx.hash == "8465d722" + "a" * 56
    assert tx.amount == Decimal("0.01")
    assert tx.acknowledged_ms is None


MD5S = [f"0123456789abcdef0123456789abcd{i:02d}" for i in range(7)]


def test_a_bulk_answer_maps_every_status_and_every_transaction_placement() -> None:
    envelope = envelope_of("md5_list_mixed.json")
    results = parse_list_items(envelope.data, requested=MD5S, key_field="md5", endpoint=EP)
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
    results = parse_list_items(
        envelope.data, requested=[MD5S[3], extra], key_field="md5", endpoint=EP
    )
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
    results = parse_list_items(data, requested=MD5S[:2], key_field="md5", endpoint=EP)
    assert isinstance(results[MD5S[0]], BadResponse)
    assert isinstance(results[MD5S[1]], NotFound)


def test_contradicting_items_for_one_key_are_a_bad_response_but_repeats_are_fine() -> None:
    data = [item(MD5S[0], "NOT_FOUND"), item(MD5S[0], "FAILED")]
    data += [item(MD5S[1], "NOT_FOUND"), item(MD5S[1].upper(), "NOT_FOUND")]
    data += [item(MD5S[2], "SERVICE_FAILED"), item(MD5S[2], "SERVICE_FAILED")]
    results = parse_list_items(data, requested=MD5S[:3], key_field="md5", endpoint=EP)
    assert isinstance(results[MD5S[0]], BadResponse)
    assert isinstance(results[MD5S[1]], NotFound)
    assert isinstance(results[MD5S[2]], Unavailable)


@pytest.mark.parametrize("data", [None, {"md5": MD5S[0]}, [1], [{"status": "NOT_FOUND"}]])
def test_an_unattributable_list_is_a_bad_response_for_the_whole_call(data: object) -> None:
    with pytest.raises(BadResponse):
        parse_list_items(data, requested=MD5S[:1], key_field="md5", endpoint=EP)


def test_a_hash_list_success_must_carry_the_hash_asked_for() -> None:
    envelope = envelope_of("hash_list.json")
    real_hash = "8465d722d7d5065f2886f0a474a4d34dc6a7855355b611836f7b6111228893e9"
    results = parse_list_items(
        envelope.data, requested=[real_hash, "f" * 64], key_field="hash", endpoint=EP
    )
    assert isinstance(results[real_hash], Paid)
    assert isinstance(results["f" * 64], NotFound)
    swapped = [{"hash": "e" * 64, "status": "SUCCESS", "data": tx_json()}]
    results = parse_list_items(swapped, requested=["e" * 64], key_field="hash", endpoint=EP)
    assert isinstance(results["e" * 64], BadResponse)


def test_request_bodies_write_decimals_exactly_and_never_nan() -> None:
    body = encode_json({"hash": "abcd1234", "amount": Decimal("0.10"), "list": ["a", 1, None]})
    assert body == b'{"hash":"abcd1234","amount":0.10,"list":["a",1,null]}'
    assert encode_json({"amount": Decimal("1E+3")}) == b'{"amount":1000}'
    with pytest.raises(ValueError, match="finite"):
        encode_json(Decimal("NaN"))
