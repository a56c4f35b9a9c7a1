"""The simulator's store: what each kind of check finds, and when."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from khqrpay.money import Currency, Money
from khqrpay.simulator.profiles import OFTEN_ABSENT_KEYS, SHAPES, SimulatorProfile
from khqrpay.simulator.protocol import ItemStatus
from khqrpay.simulator.state import JournalDamaged, SimulatedTransaction, SimulatorState

NOW_MS = 1_795_651_200_000
MD5 = "0123456789abcdef0123456789abcdef"

PAID = SimulatedTransaction(
    hash="ab12cd34" + "0" * 56,
    md5=MD5,
    qr="000201...",
    from_account_id="abaakhppxxx@abaa",
    to_account_id="shop@devb",
    money=Money(Decimal("1.50"), Currency.USD),
    description="order 17",
    external_ref="100FT00000000001",
    instruction_ref="0000000000000001",
    created_ms=NOW_MS,
    acknowledged_ms=NOW_MS + 1000,
    visible_from_ms=NOW_MS,
    failed=False,
)


def _state(*transactions: SimulatedTransaction) -> SimulatorState:
    state = SimulatorState()
    for transaction in transactions:
        state.record(transaction)
    return state


def test_an_unknown_md5_is_not_found() -> None:
    found = _state(PAID).find_by_md5("f" * 32, NOW_MS)
    assert found.status is ItemStatus.NOT_FOUND
    assert found.transaction is None


def test_md5_lookup_ignores_case() -> None:
    assert _state(PAID).find_by_md5(MD5.upper(), NOW_MS).transaction == PAID


def test_a_static_qr_is_not_checkable_by_md5_even_when_paid() -> None:
    state = _state(PAID)
    state.learn_qr(MD5, static=True, account_id="shop@devb")
    assert state.find_by_md5(MD5, NOW_MS).status is ItemStatus.STATIC_QR
    # ...but its payment is found by hash.
    assert state.find_by_hash(PAID.hash, NOW_MS).transaction == PAID


def test_a_qr_paid_twice_answers_the_first_payment_and_both_are_found_by_hash() -> None:
    second = replace(PAID, hash="ff" * 32, created_ms=NOW_MS + 5000, visible_from_ms=NOW_MS + 5000)
    state = _state(PAID, second)
    assert state.find_by_md5(MD5, NOW_MS + 10_000).transaction == PAID
    assert state.find_by_hash(second.hash, NOW_MS + 10_000).transaction == second


def test_a_failed_transfer_shows_only_until_a_retry_succeeds() -> None:
    failed = replace(PAID, hash="ee" * 32, failed=True)
    retry = replace(PAID, visible_from_ms=NOW_MS + 60_000)
    state = _state(failed, retry)
    found = state.find_by_md5(MD5, NOW_MS)
    assert found.status is ItemStatus.FAILED
    assert state.find_by_hash(failed.hash, NOW_MS).status is ItemStatus.FAILED
    assert state.find_by_md5(MD5, NOW_MS + 60_000).status is ItemStatus.SUCCESS


def test_a_delayed_transaction_is_invisible_to_every_lookup_until_due() -> None:
    delayed = replace(PAID, visible_from_ms=NOW_MS + 30_000)
    state = _state(delayed)
    before, due = NOW_MS + 29_999, NOW_MS + 30_000
    money = PAID.money
    lookups = [
        lambda t: state.find_by_md5(MD5, t),
        lambda t: state.find_by_hash(PAID.hash, t),
        lambda t: state.find_by_short_hash(PAID.short_hash, money, t),
        lambda t: state.find_by_external_ref(PAID.external_ref, t),
        lambda t: state.find_by_instruction_ref(PAID.instruction_ref, t),
    ]
    for lookup in lookups:
        assert lookup(before).status is ItemStatus.NOT_FOUND
        assert lookup(due).transaction == delayed


@pytest.mark.parametrize(
    ("short_hash", "money", "found"),
    [
        ("ab12cd34", Money(Decimal("1.5"), Currency.USD), True),
        ("AB12CD34", Money(Decimal("1.50"), Currency.USD), True),
        ("ab12cd34", Money(Decimal("1.51"), Currency.USD), False),
        ("ab12cd34", Money(Decimal(2), Currency.KHR), False),
        ("ab12cd35", Money(Decimal("1.50"), Currency.USD), False),
    ],
)
def test_a_short_hash_matches_only_with_the_same_amount_and_currency(
    short_hash: str, money: Money, found: bool
) -> None:
    result = _state(PAID).find_by_short_hash(short_hash, money, NOW_MS)
    assert (result.transaction == PAID) is found


def test_accounts_are_learnt_from_qrs_and_transactions() -> None:
    state = SimulatorState(known_accounts=["known@devb"])
    assert state.account_exists("known@devb")
    assert not state.account_exists("shop@devb")
    state.learn_qr(MD5, static=False, account_id="payee@abaa")
    state.record(PAID)
    assert state.account_exists("payee@abaa")
    assert state.account_exists("shop@devb")
    assert state.account_exists("abaakhppxxx@abaa")


SIT = SHAPES[SimulatorProfile.SIT]


def test_issued_tokens_are_remembered_with_their_expiry() -> None:
    state = SimulatorState()
    assert state.issued_token_expiry("a.b.c") is None
    state.remember_token("a.b.c", NOW_MS)
    assert state.issued_token_expiry("a.b.c") == NOW_MS


def test_a_transaction_is_written_with_the_services_field_names_and_number_types() -> None:
    usd = PAID.to_bakong(SIT)
    assert usd == {
        "hash": PAID.hash,
        "fromAccountId": "abaakhppxxx@abaa",
        "toAccountId": "shop@devb",
        "currency": "USD",
        "amount": 1.5,
        "description": "order 17",
        "createdDateMs": NOW_MS,
        "acknowledgedDateMs": NOW_MS + 1000,
        "trackingStatus": None,
        "receiverBank": None,
        "receiverBankAccount": None,
        "instructionRef": "0000000000000001",
        "externalRef": "100FT00000000001",
    }
    khr = replace(PAID, money=Money(Decimal(9800), Currency.KHR)).to_bakong(SIT)
    assert khr["amount"] == 9800
    assert isinstance(khr["amount"], int)
    whole_usd = replace(PAID, money=Money(Decimal(1), Currency.USD)).to_bakong(SIT)
    assert repr(whole_usd["amount"]) == "1.0"


def test_production_writes_whole_dollars_as_integers_and_leaves_out_what_it_omits() -> None:
    production = SHAPES[SimulatorProfile.PRODUCTION]
    whole_usd = replace(PAID, money=Money(Decimal(1), Currency.USD)).to_bakong(production)
    assert repr(whole_usd["amount"]) == "1"
    assert repr(PAID.to_bakong(production)["amount"]) == "1.5"
    omitting = replace(PAID, omitted_keys=OFTEN_ABSENT_KEYS).to_bakong(production)
    assert OFTEN_ABSENT_KEYS.isdisjoint(omitting)
    assert set(omitting) | OFTEN_ABSENT_KEYS == set(PAID.to_bakong(production))


def test_a_journal_keeps_transactions_between_states_and_a_damaged_line_says_where(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "journal.jsonl"
    odd = replace(PAID, hash="cd" * 32, failed=True, omitted_keys=OFTEN_ABSENT_KEYS)
    first = SimulatorState(journal=journal)
    first.record(PAID)
    first.record(odd)
    again = SimulatorState(journal=journal)
    assert again.transactions() == [PAID, odd]
    assert again.find_by_md5(MD5, NOW_MS).transaction == PAID
    assert again.account_exists(PAID.from_account_id)
    with journal.open("a", encoding="utf-8") as cut_short:
        cut_short.write('{"hash": "ab')
    with pytest.raises(JournalDamaged, match="line 3"):
        SimulatorState(journal=journal)
