"""The simulator's memory: transactions, what it has learnt about QRs, accounts and tokens.

Thread-safe (one lock): the server's event loop writes, and tests or the demo may read from other
threads through `run_simulator`. With a journal file, every transaction is also appended to it (a
JSON object a line) and read back at start, so a restarted simulator still knows what was paid.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from khqrpay.hashes import SHORT_HASH_LENGTH
from khqrpay.money import Currency, Money
from khqrpay.simulator.profiles import WireShape
from khqrpay.simulator.protocol import ItemStatus, amount_json


@dataclass(frozen=True, slots=True)
class SimulatedTransaction:
    """One transfer the simulated Bakong knows, successful or failed."""

    hash: str
    md5: str
    qr: str
    from_account_id: str
    to_account_id: str
    money: Money
    description: str | None
    external_ref: str
    instruction_ref: str | None
    created_ms: int
    acknowledged_ms: int
    visible_from_ms: int
    failed: bool
    # Keys its answers leave out (a production answer often omits tracking and receiver bank).
    omitted_keys: frozenset[str] = frozenset()

    @property
    def short_hash(self) -> str:
        return self.hash[:SHORT_HASH_LENGTH]

    @property
    def status(self) -> ItemStatus:
        return ItemStatus.FAILED if self.failed else ItemStatus.SUCCESS

    def visible_at(self, now_ms: int) -> bool:
        return now_ms >= self.visible_from_ms

    def to_bakong(self, shape: WireShape) -> dict[str, Any]:
        """The `data` object of a found transaction, with the service's field names."""
        data = {
            "hash": self.hash,
            "fromAccountId": self.from_account_id,
            "toAccountId": self.to_account_id,
            "currency": self.money.currency.value,
            "amount": amount_json(self.money, whole_usd_as_integer=shape.whole_usd_as_integer),
            "description": self.description,
            "createdDateMs": self.created_ms,
            "acknowledgedDateMs": self.acknowledged_ms,
            "trackingStatus": None,
            "receiverBank": None,
            "receiverBankAccount": None,
            "instructionRef": self.instruction_ref,
            "externalRef": self.external_ref,
        }
        for key in self.omitted_keys:
            del data[key]
        return data

    def to_journal(self) -> str:
        """One journal line: every field, the amount as an exact string."""
        fields = {name: getattr(self, name) for name in self.__slots__}
        fields["money"] = {"amount": str(self.money.amount), "currency": self.money.currency.value}
        fields["omitted_keys"] = sorted(self.omitted_keys)
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def from_journal(cls, line: str) -> SimulatedTransaction:
        fields = json.loads(line)
        money = fields.pop("money")
        return cls(
            **fields
            | {
                "money": Money.parse(money["amount"], Currency(money["currency"])),
                "omitted_keys": frozenset(fields["omitted_keys"]),
            }
        )


@dataclass(frozen=True, slots=True)
class Lookup:
    """What a check finds: a status and, unless not found or static, the transaction."""

    status: ItemStatus
    transaction: SimulatedTransaction | None = None


_NOT_FOUND = Lookup(ItemStatus.NOT_FOUND)


class JournalDamaged(ValueError):
    """A journal line that is not a transaction (e.g. cut short by a crash); says where."""


def _first(found: list[SimulatedTransaction]) -> Lookup:
    return Lookup(found[0].status, found[0]) if found else _NOT_FOUND


class SimulatorState:
    """In-memory store, indexed by every key a check uses; every method takes the lock, so
    callers never see a half-made change."""

    def __init__(self, known_accounts: Iterable[str] = (), *, journal: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._journal = journal
        self._transactions: list[SimulatedTransaction] = []
        # Each index keeps its transactions in payment order.
        self._indexes: dict[str, dict[str, list[SimulatedTransaction]]] = {
            "md5": {},
            "hash": {},
            "short_hash": {},
            "instruction_ref": {},
            "external_ref": {},
        }
        self._static_md5s: set[str] = set()
        self._accounts: set[str] = set(known_accounts)
        self._issued_tokens: dict[str, int] = {}
        if journal is not None and journal.exists():
            with journal.open(encoding="utf-8") as lines:
                for number, line in enumerate(lines, start=1):
                    if line.strip():
                        try:
                            self._index(SimulatedTransaction.from_journal(line))
                        except (ValueError, KeyError, TypeError) as exc:
                            raise JournalDamaged(f"{journal}, line {number}: {exc}") from exc

    def record(self, transaction: SimulatedTransaction) -> None:
        with self._lock:
            if self._journal is not None:
                with self._journal.open("a", encoding="utf-8") as journal:
                    journal.write(transaction.to_journal() + "\n")
            self._index(transaction)

    def _index(self, transaction: SimulatedTransaction) -> None:
        """Into memory; the caller holds the lock (or is the constructor)."""
        self._transactions.append(transaction)
        for key_name, index in self._indexes.items():
            index.setdefault(getattr(transaction, key_name), []).append(transaction)
        self._accounts.update((transaction.to_account_id, transaction.from_account_id))

    def learn_qr(self, md5: str, *, static: bool, account_id: str) -> None:
        """Remember what a banking app saw in a QR: whether it is static, and its payee account."""
        with self._lock:
            if static:
                self._static_md5s.add(md5)
            self._accounts.add(account_id)

    def transactions(self) -> list[SimulatedTransaction]:
        with self._lock:
            return list(self._transactions)

    def _visible(self, key_name: str, key: str, now_ms: int) -> list[SimulatedTransaction]:
        with self._lock:
            found = self._indexes[key_name].get(key, [])
            return [transaction for transaction in found if transaction.visible_at(now_ms)]

    def find_by_md5(self, md5: str, now_ms: int) -> Lookup:
        """Static QRs cannot be checked by md5. A QR paid twice answers its first success; a
        failure shows only when no attempt has succeeded (a payer retries after a failure)."""
        key = md5.lower()
        with self._lock:
            if key in self._static_md5s:
                return Lookup(ItemStatus.STATIC_QR)
        attempts = self._visible("md5", key, now_ms)
        for transaction in attempts:
            if not transaction.failed:
                return Lookup(ItemStatus.SUCCESS, transaction)
        return Lookup(ItemStatus.FAILED, attempts[0]) if attempts else _NOT_FOUND

    def find_by_hash(self, hash_: str, now_ms: int) -> Lookup:
        return _first(self._visible("hash", hash_.lower(), now_ms))

    def find_by_short_hash(self, short_hash: str, money: Money, now_ms: int) -> Lookup:
        candidates = self._visible("short_hash", short_hash.lower(), now_ms)
        return _first([t for t in candidates if t.money.same_value(money)])

    def find_by_instruction_ref(self, ref: str, now_ms: int) -> Lookup:
        return _first(self._visible("instruction_ref", ref, now_ms))

    def find_by_external_ref(self, ref: str, now_ms: int) -> Lookup:
        return _first(self._visible("external_ref", ref, now_ms))

    def account_exists(self, account_id: str) -> bool:
        with self._lock:
            return account_id in self._accounts

    def remember_token(self, token: str, expires_ms: int) -> None:
        with self._lock:
            self._issued_tokens[token] = expires_ms

    def issued_token_expiry(self, token: str) -> int | None:
        with self._lock:
            return self._issued_tokens.get(token)
