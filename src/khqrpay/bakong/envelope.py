"""Reading Bakong answers: lenient where the service is known to vary, strict on everything else.

Lenient: key order, amounts as JSON integer, fraction or string (`1`, `1.0`, `"0.10"`, read
exactly: never through binary floating point), dates as integer or fractional milliseconds, bulk
items carrying the transaction under `data`, `transaction` or inline, and a transaction without
the fields Bakong may leave out (receiving account, dates, tracking, receiver bank, references):
those are None, "not stated". Strict: a field that is present has its documented type, and a
success carries a transaction with hash, amount and currency. Anything else is a `BadResponse`
(for one key's transaction a `MalformedTransaction`), never a "not paid".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from khqrpay.bakong.errors import BadResponse, BakongError, MalformedTransaction, Unavailable
from khqrpay.bakong.outcomes import CheckResult, Failed, NotFound, Paid, StaticQr, Transaction

HEX_64 = re.compile(r"^[0-9a-fA-F]{64}$")
_PLAIN_DECIMAL = re.compile(r"^\s*\d+(\.\d+)?\s*$")
# Plausible epoch milliseconds (2000-01-01 .. 2200-01-01): catches seconds sent as milliseconds.
_MIN_MS = 946_684_800_000
_MAX_MS = 7_258_118_400_000

JsonObject = Mapping[str, object]
ListKey = Literal["md5", "hash"]


@dataclass(frozen=True, slots=True)
class Envelope:
    """`{"responseCode", "responseMessage", "errorCode", "data"}`, numbers already Decimal/int."""

    response_code: int
    response_message: str
    error_code: int | None
    data: object

    @property
    def ok(self) -> bool:
        return self.response_code == 0


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def decode_json(body: bytes, *, endpoint: str, http_status: int) -> object:
    """JSON with every fraction as Decimal (never float); NaN/Infinity refused."""
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise BadResponse(
            "the body is not JSON", endpoint=endpoint, http_status=http_status
        ) from exc


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_envelope(value: object, *, endpoint: str, http_status: int) -> Envelope:
    def bad(rule: str) -> BadResponse:
        return BadResponse(
            f"not the Bakong envelope: {rule}", endpoint=endpoint, http_status=http_status
        )

    if not isinstance(value, Mapping):
        raise bad("the body is not a JSON object")
    response_code = value.get("responseCode")
    if not _is_int(response_code) or response_code not in (0, 1):
        raise bad("responseCode is missing or not 0/1")
    assert isinstance(response_code, int)
    message = value.get("responseMessage")
    if message is None:
        message = ""
    if not isinstance(message, str):
        raise bad("responseMessage is not a string")
    error_code = value.get("errorCode")
    if error_code is not None and not _is_int(error_code):
        raise bad("errorCode is not an integer")
    assert error_code is None or isinstance(error_code, int)
    if response_code == 1 and error_code is None:
        raise bad("a failure (responseCode 1) without an errorCode")
    return Envelope(response_code, message, error_code, value.get("data"))


def _exact_decimal(value: object) -> Decimal | None:
    """A JSON number as the exact decimal it was written as, or None for anything else.

    The parser here gives Decimal; a float from another parser is read through its shortest
    repr (`0.1` is 0.1, never 0.1000000000000000055...).
    """
    if isinstance(value, Decimal):
        return value
    if _is_int(value):
        assert isinstance(value, int)
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return None


class JsonFields:
    """Typed access to one JSON object, naming the offending field in every error (of type
    `error`, so that a transaction's problems stay the problems of its key)."""

    def __init__(
        self,
        value: object,
        *,
        where: str,
        endpoint: str,
        error: type[BadResponse] = BadResponse,
    ) -> None:
        if not isinstance(value, Mapping):
            raise error(f"{where} is not a JSON object", endpoint=endpoint)
        self._value: JsonObject = value
        self._where = where
        self._endpoint = endpoint
        self._error = error

    def bad(self, key: str, rule: str) -> BadResponse:
        return self._error(f"{self._where}.{key} {rule}", endpoint=self._endpoint)

    def text(self, key: str) -> str:
        value = self.optional_text(key)
        if value is None:
            raise self.bad(key, "is missing or empty")
        return value

    def optional_text(self, key: str) -> str | None:
        """The stripped text, or None when absent, null or blank (all mean "not stated")."""
        value = self._value.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.bad(key, f"is a {type(value).__name__}, not a string")
        return value.strip() or None

    def optional_flag(self, key: str) -> bool | None:
        value = self._value.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.bad(key, f"is a {type(value).__name__}, not true or false")
        return value

    def amount(self, key: str) -> Decimal:
        value = self._value.get(key)
        if isinstance(value, str) and _PLAIN_DECIMAL.match(value):
            amount: Decimal | None = Decimal(value.strip())
        else:
            amount = _exact_decimal(value)
        if amount is None:
            raise self.bad(key, "is missing or not a plain decimal number")
        if not amount.is_finite() or amount <= 0:
            raise self.bad(key, "is not a positive amount")
        return amount

    def optional_epoch_ms(self, key: str) -> int | None:
        value = self._value.get(key)
        if value is None:
            return None
        moment = _exact_decimal(value)
        if moment is None or not moment.is_finite():
            raise self.bad(key, "is not epoch milliseconds")
        # Older answers wrote `1605774370608.0`; a fraction of a millisecond is irrelevant.
        ms = int(moment)
        if not _MIN_MS <= ms < _MAX_MS:
            raise self.bad(key, "is outside plausible epoch milliseconds")
        return ms


def parse_transaction(value: object, *, where: str, endpoint: str, received_ms: int) -> Transaction:
    """A transaction; `MalformedTransaction` if a field it has is of the wrong type or the
    hash, amount or currency is missing (without them it is no payment to compare)."""
    fields = JsonFields(value, where=where, endpoint=endpoint, error=MalformedTransaction)
    tx_hash = fields.text("hash")
    if not HEX_64.match(tx_hash):
        raise fields.bad("hash", "is not 64 hex digits")
    return Transaction(
        hash=tx_hash.lower(),
        amount=fields.amount("amount"),
        currency=fields.text("currency").upper(),
        received_ms=received_ms,
        to_account_id=fields.optional_text("toAccountId"),
        from_account_id=fields.optional_text("fromAccountId"),
        created_ms=fields.optional_epoch_ms("createdDateMs"),
        acknowledged_ms=fields.optional_epoch_ms("acknowledgedDateMs"),
        description=fields.optional_text("description"),
        tracking_status=fields.optional_text("trackingStatus"),
        receiver_bank=fields.optional_text("receiverBank"),
        receiver_bank_account=fields.optional_text("receiverBankAccount"),
        instruction_ref=fields.optional_text("instructionRef"),
        external_ref=fields.optional_text("externalRef"),
    )


def _item_transaction(item: JsonObject) -> object:
    """Sources disagree on where a bulk item keeps its transaction: accept all three places."""
    for key in ("data", "transaction"):
        if isinstance(item.get(key), Mapping):
            return item[key]
    if "amount" in item:
        return item
    return None


def _parse_item(
    item: JsonObject, key: str, *, where: str, endpoint: str, received_ms: int
) -> CheckResult | BakongError:
    status = item.get("status")
    message = item.get("message")
    if message is not None and not isinstance(message, str):
        return BadResponse(f"{where}.message is not a string", endpoint=endpoint)
    message = message or ""
    if not isinstance(status, str):
        return BadResponse(f"{where}.status is missing or not a string", endpoint=endpoint)
    match status.upper():
        case "SUCCESS":
            found = _item_transaction(item)
            if found is None:
                return MalformedTransaction(
                    f"{where} is SUCCESS without a transaction", endpoint=endpoint
                )
            try:
                transaction = parse_transaction(
                    found, where=where, endpoint=endpoint, received_ms=received_ms
                )
            except MalformedTransaction as exc:
                return exc
            return Paid(transaction)
        case "NOT_FOUND":
            return NotFound(message)
        case "STATIC_QR":
            return StaticQr(message)
        case "FAILED":
            return Failed(message)
        case "SERVICE_FAILED":
            return Unavailable(f"Bakong could not check {key[:8]}: {message}", endpoint=endpoint)
        case _:
            return BadResponse(
                f"{where}.status {status[:40]!r} is not a known status", endpoint=endpoint
            )


def _same_answer(one: CheckResult | BakongError, other: CheckResult | BakongError) -> bool:
    # Exceptions compare by identity; two errors of one kind say the same thing.
    if isinstance(one, BakongError) or isinstance(other, BakongError):
        return type(one) is type(other)
    return one == other


def parse_list_items(
    data: object,
    *,
    requested: Sequence[str],
    key_field: ListKey,
    endpoint: str,
    received_ms: int,
) -> dict[str, CheckResult | BakongError]:
    """One result (or per-item error) for every requested key, lower-case hex, in request order.

    Items for keys not asked about are ignored; a key without an item, or with contradicting
    items, gets a BadResponse. A hash-list success must carry the hash that was asked for.
    """
    if not isinstance(data, list):
        raise BadResponse("data is not a list", endpoint=endpoint)
    wanted = set(requested)
    found: dict[str, list[CheckResult | BakongError]] = {}
    for index, item in enumerate(data):
        where = f"data[{index}]"
        if not isinstance(item, Mapping):
            raise BadResponse(f"{where} is not a JSON object", endpoint=endpoint)
        key = item.get(key_field)
        if not isinstance(key, str):
            raise BadResponse(f"{where}.{key_field} is missing or not a string", endpoint=endpoint)
        key = key.strip().lower()
        if key not in wanted:
            continue
        result = _parse_item(item, key, where=where, endpoint=endpoint, received_ms=received_ms)
        if key_field == "hash" and isinstance(result, Paid) and result.transaction.hash != key:
            result = MalformedTransaction(f"{where} answers for another hash", endpoint=endpoint)
        found.setdefault(key, []).append(result)
    results: dict[str, CheckResult | BakongError] = {}
    for key in requested:
        answers = found.get(key, [])
        if not answers:
            results[key] = BadResponse(f"no item for {key_field} {key[:8]}", endpoint=endpoint)
        elif any(not _same_answer(answer, answers[0]) for answer in answers[1:]):
            results[key] = BadResponse(
                f"contradicting items for {key_field} {key[:8]}", endpoint=endpoint
            )
        else:
            results[key] = answers[0]
    return results


def encode_json(value: object) -> bytes:
    """JSON for request bodies; a Decimal is written as an exact JSON number, never via float."""
    return _encode(value).encode("utf-8")


def _encode(value: object) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("only finite amounts can be sent")
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
