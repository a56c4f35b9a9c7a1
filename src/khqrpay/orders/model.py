"""Orders, payments and the decision of what a payment does to an order. Pure: no I/O, no clock.

Every path to COMPLETED goes through `decide` (called by `khqrpay.services.completion`), so the
rules for matching money to orders live in one place and are tested exhaustively.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from khqrpay.clock import ms_to_datetime
from khqrpay.hashes import FULL_HASH, SHORT_HASH_LENGTH
from khqrpay.money import Currency, Money, MoneyError


class OrderError(ValueError):
    """An input or a request the order domain refuses; the message says why, for people."""


class OrderNotFound(OrderError):
    """No order has that id or token."""


class ProductNotFound(OrderError):
    """No product has that SKU."""


class LineRefused(OrderError):
    """A checkout line that cannot be ordered; `sku` names it."""

    def __init__(self, message: str, *, sku: str) -> None:
        super().__init__(message)
        self.sku = sku


class UnknownSku(LineRefused):
    """No product has the line's SKU."""


class NotForSale(LineRefused):
    """The line's product is off sale."""


class NotEnoughStock(LineRefused):
    """More than is in stock now (a courtesy check at checkout: stock is taken on payment)."""


class OrderStatus(enum.StrEnum):
    PENDING = "PENDING"
    COMPLETED = "COMPLETED"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


# The order state machine. EXPIRED and CANCELLED orders move on only when money arrives for them;
# COMPLETED and REFUNDED are final (a later payment flags a refund instead of moving the order).
ALLOWED_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING: frozenset(
        {
            OrderStatus.COMPLETED,
            OrderStatus.NEEDS_REVIEW,
            OrderStatus.EXPIRED,
            OrderStatus.CANCELLED,
        }
    ),
    OrderStatus.NEEDS_REVIEW: frozenset({OrderStatus.COMPLETED, OrderStatus.REFUNDED}),
    OrderStatus.EXPIRED: frozenset({OrderStatus.NEEDS_REVIEW}),
    OrderStatus.CANCELLED: frozenset({OrderStatus.NEEDS_REVIEW}),
    OrderStatus.COMPLETED: frozenset(),
    OrderStatus.REFUNDED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[current]


class TransitionRefused(OrderError):
    """A change the order's state does not allow (cancelling a paid order, clearing a refund
    flag that is not set); nothing was changed."""


class StaffAction(enum.StrEnum):
    """What staff may do to an order's status by hand; the rest is the engine's (payments,
    expiry)."""

    CANCEL = "cancel"
    ACCEPT_PAYMENT = "accept_payment"
    REFUND = "refund"


# Each staff action moves an order from one status to another, both within ALLOWED_TRANSITIONS.
STAFF_TRANSITIONS: Mapping[StaffAction, tuple[OrderStatus, OrderStatus]] = {
    StaffAction.CANCEL: (OrderStatus.PENDING, OrderStatus.CANCELLED),
    StaffAction.ACCEPT_PAYMENT: (OrderStatus.NEEDS_REVIEW, OrderStatus.COMPLETED),
    StaffAction.REFUND: (OrderStatus.NEEDS_REVIEW, OrderStatus.REFUNDED),
}
_STAFF_VERBS = {
    StaffAction.CANCEL: "cancelled",
    StaffAction.ACCEPT_PAYMENT: "accepted as paid",
    StaffAction.REFUND: "refunded",
}


def staff_target(action: StaffAction, *, order_id: int, current: OrderStatus) -> OrderStatus:
    """The status `action` moves the order to; `TransitionRefused` if it cannot from `current`."""
    source, target = STAFF_TRANSITIONS[action]
    if current is not source:
        raise TransitionRefused(
            f"order {order_id} is {current}: only a {source} order can be {_STAFF_VERBS[action]}"
        )
    return target


class PaymentStatus(enum.StrEnum):
    """The state of one KHQR code: paid (money seen), expired (window over) or still pending."""

    PENDING = "PENDING"
    PAID = "PAID"
    EXPIRED = "EXPIRED"


class EvidenceSource(enum.StrEnum):
    """Which path found the payment."""

    VERIFIER = "verifier"
    VERIFY_INSTANTLY = "verify_instantly"
    MARK_PAID = "mark_paid"


class AttemptOutcome(enum.StrEnum):
    """What one Bakong check of one QR said: a business answer or the kind of error."""

    PAID = "paid"
    NOT_FOUND = "not_found"
    FAILED = "failed"
    STATIC_QR = "static_qr"
    UNAUTHORIZED = "unauthorized"
    BLOCKED = "blocked"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    BAD_RESPONSE = "bad_response"


# Row ids are 64-bit signed integers in both databases (BIGINT identities, SQLite's INTEGER): a
# larger number cannot name a row, and a query with it fails in the driver instead.
MAX_ID = 2**63 - 1


def validate_order_id(order_id: int) -> int:
    """An id some order could have; any other is OrderNotFound before a query is made."""
    if isinstance(order_id, bool) or not isinstance(order_id, int) or not 1 <= order_id <= MAX_ID:
        raise OrderNotFound(f"order {order_id} not found")
    return order_id


# Audit actors fit the 64-character actor column: "staff:" and at most 56 characters.
MAX_STAFF_NAME_LENGTH = 56
_ACTOR = re.compile(r"cli|system|customer|worker:[\w.@:-]{1,56}|api:[\w.-]{1,56}")
_STAFF_PREFIX = "staff:"


def _is_staff_name(name: str) -> bool:
    """Letters and digits of any script with their combining marks (Khmer vowel signs are
    marks), spaces, '_', '.', '@' and '-'."""
    return 1 <= len(name) <= MAX_STAFF_NAME_LENGTH and all(
        character.isalnum()
        or character in " _.@-"
        or unicodedata.category(character) in ("Mn", "Mc")
        for character in name
    )


def validate_actor(actor: str) -> str:
    """Who did something, for the audit trail: `cli`, `system`, `customer`, `worker:<id>`,
    `staff:<name>`, `api:<client>` (the software holding that API client's key)."""
    staff_name = actor.removeprefix(_STAFF_PREFIX) if actor.startswith(_STAFF_PREFIX) else None
    if not (_ACTOR.fullmatch(actor) or (staff_name is not None and _is_staff_name(staff_name))):
        raise OrderError(
            f"actor {actor!r} is not one of cli, system, customer, worker:<id>, staff:<name>, "
            "api:<client>"
        )
    return actor


def staff_actor(name: str) -> str:
    """The audit trail's actor for a member of staff: `staff:<name>`."""
    cleaned = name.strip()
    if not _is_staff_name(cleaned):
        raise OrderError(
            f"a staff name is 1 to {MAX_STAFF_NAME_LENGTH} letters, digits, spaces, "
            f"'_', '.', '@' or '-'; not {cleaned!r}"
        )
    return f"{_STAFF_PREFIX}{cleaned}"


# Tab and line breaks, which a multi-line text (a reason typed in a form) may hold.
_LINE_BREAKS = frozenset("\t\n\r")


def validate_text(text: str, what: str, *, multiline: bool = False) -> str:
    """Text for people (a name, a reason): valid Unicode, and no control characters, which
    would garble a receipt, a log line or a terminal (tabs and line breaks if `multiline`)."""
    for character in text:
        category = unicodedata.category(character)
        if category == "Cs":  # a byte that was not UTF-8, as Python escapes it in argv
            raise OrderError(f"{what} is not valid UTF-8 text")
        if category == "Cc" and not (multiline and character in _LINE_BREAKS):
            raise OrderError(f"{what} must not contain control characters such as {character!r}")
    return text


MAX_REASON_LENGTH = 500
MAX_REFUND_REFERENCE_LENGTH = 128
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def validate_reason(reason: str | None, *, required: bool) -> str | None:
    """Why someone acted, for the audit trail: trimmed, at most MAX_REASON_LENGTH characters;
    None when blank and not `required`."""
    cleaned = (reason or "").strip() or None
    if cleaned is None:
        if required:
            raise OrderError("a reason is required")
        return None
    if len(cleaned) > MAX_REASON_LENGTH:
        raise OrderError(f"a reason is at most {MAX_REASON_LENGTH} characters")
    return validate_text(cleaned, "a reason", multiline=True)


def validate_refund_reference(reference: str) -> str:
    """The bank's or Bakong's reference of a refund staff made: trimmed, one line, 1 to
    MAX_REFUND_REFERENCE_LENGTH characters."""
    cleaned = reference.strip()
    if not cleaned or len(cleaned) > MAX_REFUND_REFERENCE_LENGTH:
        raise OrderError(f"a refund reference is 1 to {MAX_REFUND_REFERENCE_LENGTH} characters")
    if _CONTROL_CHARACTERS.search(cleaned):
        raise OrderError("a refund reference is one line of printable characters")
    return cleaned


_SKU = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PHONE_SEPARATORS = re.compile(r"[\s().-]")
# Cambodian numbers: 8 or 9 digits after the country code 855 (or after a leading 0 nationally).
_KH_PHONE = re.compile(r"(?:\+?855|0)([1-9][0-9]{7,8})")
MAX_QUANTITY = 10_000


MAX_CUSTOMER_NAME_LENGTH = 100
MAX_REFERENCE_LENGTH = 64
_REFERENCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/#:-]{0,63}$")


def normalize_customer_name(name: str | None) -> str | None:
    """A customer's name as they typed it, spaces collapsed; None when blank. One line of
    printable text, at most MAX_CUSTOMER_NAME_LENGTH characters (Khmer welcome)."""
    cleaned = " ".join((name or "").split())
    if not cleaned:
        return None
    if len(cleaned) > MAX_CUSTOMER_NAME_LENGTH or not cleaned.isprintable():
        raise OrderError(
            f"a name is one line of at most {MAX_CUSTOMER_NAME_LENGTH} printable characters"
        )
    return cleaned


def validate_reference(reference: str) -> str:
    """The caller's own reference for an order paid by amount (an invoice number, `INV-0042`)."""
    cleaned = reference.strip()
    if not _REFERENCE.match(cleaned):
        raise OrderError(
            f"a reference is 1-{MAX_REFERENCE_LENGTH} characters: letters, digits, spaces and "
            "._/#:- , starting with a letter or digit"
        )
    return cleaned


def validate_sku(sku: str) -> str:
    if not _SKU.fullmatch(sku):
        raise OrderError(
            f"SKU {sku!r} must be 1-64 characters: letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return sku


def normalize_phone(phone: str) -> str:
    """A Cambodian phone number in E.164 form (`+85512345678`), from `012 345 678` and the like."""
    compact = _PHONE_SEPARATORS.sub("", phone)
    match = _KH_PHONE.fullmatch(compact)
    if match is None:
        raise OrderError(
            f"phone {phone!r} is not a Cambodian number (e.g. 012 345 678 or +855 12 345 678)"
        )
    return f"+855{match.group(1)}"


@dataclass(frozen=True, slots=True)
class Product:
    id: int
    sku: str
    name: str  # English, always set
    name_km: str | None  # Khmer, when staff gave one
    price: Money
    stock: int
    active: bool
    created_ms: int
    updated_ms: int


@dataclass(frozen=True, slots=True)
class LineRequest:
    """One line of a checkout request: a SKU and how many."""

    sku: str
    quantity: int

    def __post_init__(self) -> None:
        validate_sku(self.sku)
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int):
            raise OrderError(f"quantity of {self.sku} must be a whole number")
        if not 1 <= self.quantity <= MAX_QUANTITY:
            raise OrderError(f"quantity of {self.sku} must be between 1 and {MAX_QUANTITY}")

    @classmethod
    def parse(cls, text: str) -> LineRequest:
        """`SKU:QTY` as the CLI takes it."""
        sku, separator, quantity = text.rpartition(":")
        digits = quantity.strip()
        if not separator or not (digits.isascii() and digits.isdigit()):
            raise OrderError(f"line {text!r} must be SKU:QTY with a whole quantity, e.g. TEA-1:2")
        # Python refuses int() of thousands of digits; any number that long is out of range.
        if len(digits.lstrip("0")) > len(str(MAX_QUANTITY)):
            raise OrderError(f"quantity of {sku.strip()} must be between 1 and {MAX_QUANTITY}")
        return cls(sku.strip(), int(digits))


@dataclass(frozen=True, slots=True)
class OrderLine:
    """A line as ordered: the product's SKU, name and price are snapshots taken at checkout."""

    product_id: int
    sku: str
    name: str
    name_km: str | None
    unit_price: Money
    quantity: int

    @property
    def total(self) -> Money:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    # The customer's only way to their order; a secret, so kept out of reprs and logs.
    public_token: str = field(repr=False)
    status: OrderStatus
    total: Money
    customer_phone: str | None = field(repr=False)
    created_ms: int
    window_end_ms: int
    completed_ms: int | None
    review_reason: str | None
    refund_flag: bool
    refund_reason: str | None
    paid_manually_without_hash: bool
    updated_ms: int
    # The reference of the last refund staff recorded (resolving to REFUNDED, clearing a flag).
    refund_reference: str | None = None
    # The name the customer gave at checkout (optional, like the phone).
    customer_name: str | None = field(default=None, repr=False)
    # An order paid by amount through the API (no lines, stock is the caller's): its reference.
    reference: str | None = None
    # The API client that created the order (None: the shop's own checkout); only it sees it.
    api_client: str | None = None

    @property
    def currency(self) -> Currency:
        return self.total.currency


@dataclass(frozen=True, slots=True)
class KhqrPayment:
    """One KHQR code issued for an order, with the verifier's scheduling state."""

    id: int
    order_id: int
    qr: str
    md5: str
    amount: Money
    to_account: str
    created_ms: int
    expires_ms: int
    status: PaymentStatus
    next_check_ms: int | None
    earliest_check_ms: int | None
    hot_until_ms: int | None
    consecutive_errors: int
    lease_owner: str | None
    lease_until_ms: int | None
    check_count: int
    last_checked_ms: int | None
    last_outcome: AttemptOutcome | None


class PaidTime(enum.StrEnum):
    """Where an evidence's `paid_ms` comes from: Bakong's creation time, its acknowledgement
    time when it gives no creation time, or when we received its answer when it gives neither."""

    CREATED = "created"
    ACKNOWLEDGED = "acknowledged"
    SEEN = "seen"


@dataclass(frozen=True, slots=True)
class Evidence:
    """What Bakong says about one transfer: its hash, accounts, amount and currency as given.

    `to_account` None means Bakong did not state the receiving account: a payment found by the
    md5 of our QR is tied to it by that md5, one found by a hash staff typed is not (see
    `find_mismatch`). `paid_time` says where `paid_ms` comes from.
    """

    bakong_hash: str
    from_account: str | None
    to_account: str | None
    amount: Decimal
    currency: str
    paid_ms: int
    paid_time: PaidTime = PaidTime.CREATED

    def __post_init__(self) -> None:
        if not FULL_HASH.fullmatch(self.bakong_hash):
            raise OrderError("a Bakong hash is 64 lower-case hexadecimal characters")
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise OrderError("a paid amount is a finite Decimal")
        if not self.currency.strip():
            raise OrderError("a paid amount needs its currency")
        if self.to_account is not None and not self.to_account.strip():
            raise OrderError("a receiving account is named or None (not stated), never blank")
        if self.paid_ms < 0:
            raise OrderError("a payment time is epoch milliseconds, never negative")

    @property
    def short_hash(self) -> str:
        """What a customer reads off a receipt: the hash's first 8 hex characters."""
        return self.bakong_hash[:SHORT_HASH_LENGTH]

    def money(self) -> Money | None:
        """The amount as exact `Money`, or None if the currency is not ours or needs rounding."""
        try:
            return Money(self.amount, Currency.parse(self.currency))
        except MoneyError:
            return None


@dataclass(frozen=True, slots=True)
class RecordedEvidence:
    id: int
    order_id: int
    payment_id: int | None
    evidence: Evidence
    amount_minor: int | None
    source: EvidenceSource
    matched: bool
    mismatch_reason: str | None
    recorded_ms: int


@dataclass(frozen=True, slots=True)
class NewAuditEntry:
    """An entry of the audit trail, to be appended."""

    order_id: int | None
    at_ms: int
    actor: str
    action: str
    from_status: OrderStatus | None
    to_status: OrderStatus | None
    reason: str | None
    details: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class AuditEntry(NewAuditEntry):
    """An entry as written."""

    id: int


@dataclass(frozen=True, slots=True)
class ReviewNote:
    """One reason an order was sent to (or kept in) review: when, why and by whom."""

    at_ms: int
    reason: str
    actor: str


def review_history(audit: Iterable[AuditEntry]) -> tuple[ReviewNote, ...]:
    """Every review reason an order was given, oldest first, from its audit trail (the order row
    keeps only the latest): each entry that left the order in NEEDS_REVIEW with a reason. The
    decision's reason comes first: a staff entry's own `reason` is why staff acted."""
    notes = []
    for entry in audit:
        if entry.to_status is not OrderStatus.NEEDS_REVIEW:
            continue
        reason = entry.details.get("decision_reason") or entry.reason
        if reason:
            notes.append(ReviewNote(entry.at_ms, str(reason), entry.actor))
    return tuple(notes)


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    created_ms: int
    topic: str
    order_id: int | None
    payload: Mapping[str, object]
    published_ms: int | None
    attempts: int


@dataclass(frozen=True, slots=True)
class VerificationAttempt:
    """One check of one QR with Bakong, as the verifier records it."""

    payment_id: int
    order_id: int
    at_ms: int
    source: EvidenceSource
    outcome: AttemptOutcome
    latency_ms: int | None = None
    detail: str | None = None

    @property
    def routine(self) -> bool:
        """The verifier's scheduled "not paid yet": the bulk of all checks (a million pending
        QRs make hundreds a second). Counted, and the QR keeps its last outcome, but not kept
        as a row of its own; payments, errors and checks people asked for are."""
        return self.source is EvidenceSource.VERIFIER and self.outcome is AttemptOutcome.NOT_FOUND


def current_code(payments: Iterable[KhqrPayment]) -> KhqrPayment:
    """The code to show for an order (every order has one): the newest still pending, else the
    newest (paid or expired)."""
    ordered = sorted(payments, key=lambda payment: payment.id, reverse=True)
    pending = [payment for payment in ordered if payment.status is PaymentStatus.PENDING]
    shown = pending or ordered
    if not shown:
        raise OrderError("an order without a payment code")
    return shown[0]


# -- What a payment does to an order -------------------------------------------------------------


class Action(enum.StrEnum):
    COMPLETE = "COMPLETE"
    # Staff marked the order paid without a hash; this is the payment they saw: attach it only.
    ATTACH_EVIDENCE_ONLY = "ATTACH_EVIDENCE_ONLY"
    # The same Bakong hash is already recorded for this order: nothing to do (idempotence).
    ALREADY_RECORDED = "ALREADY_RECORDED"
    NEEDS_REVIEW = "NEEDS_REVIEW"
    # Money arrived for an order already paid (or refunded): record it and flag it for refund.
    FLAG_REFUND = "FLAG_REFUND"
    # Bakong says this order's QR was paid, but the transfer's hash is recorded for another order
    # (staff gave it there by mistake). The money is real, so it is never refused: this order goes
    # to review (or is flagged for refund if final) and so is the other order, for people to sort.
    CONFLICT = "CONFLICT"
    # Nothing can be recorded (e.g. marking a completed order paid without evidence).
    REFUSED = "REFUSED"


@dataclass(frozen=True, slots=True)
class OrderFacts:
    """What the decision needs to know about the order, read under its lock."""

    status: OrderStatus
    window_end_ms: int
    expected: Money
    receiving_accounts: frozenset[str]
    recorded_hashes: frozenset[str]
    paid_manually_without_hash: bool
    # Hashes already reported as conflicts for this order's QRs (recorded for another order).
    conflict_hashes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    # Why, for NEEDS_REVIEW, FLAG_REFUND, CONFLICT and REFUSED (and review-resolving completions).
    reason: str | None = None
    # Why the evidence does not match the order (amount, currency, account); None if it matches.
    mismatch: str | None = None


# Orders that money arriving (or a disputed payment) sends to review; the others keep their status:
# NEEDS_REVIEW is already there, COMPLETED and REFUNDED are final and get a refund flag instead.
_MONEY_OPENS_REVIEW = frozenset({OrderStatus.PENDING, OrderStatus.EXPIRED, OrderStatus.CANCELLED})


def status_after(action: Action, current: OrderStatus) -> OrderStatus:
    """The order's status once `action` is applied to an order in `current`."""
    if action is Action.COMPLETE:
        return OrderStatus.COMPLETED
    if action is Action.NEEDS_REVIEW:
        return OrderStatus.NEEDS_REVIEW
    if action is Action.CONFLICT and current in _MONEY_OPENS_REVIEW:
        return OrderStatus.NEEDS_REVIEW
    return current


def conflict_flags_refund(status: OrderStatus) -> bool:
    """Whether a CONFLICT flags a refund on an order in `status` (else it sets a review reason)."""
    return status in (OrderStatus.COMPLETED, OrderStatus.REFUNDED)


def flags_refund(action: Action, current: OrderStatus) -> bool:
    """Whether applying `action` to an order in `current` flags a refund: money for an order
    already paid or refunded (or a conflict on one), and money for a cancelled order, which goes
    to review flagged: the shop said no to it, so the money goes back unless staff accept it."""
    return (
        action is Action.FLAG_REFUND
        or (action is Action.CONFLICT and conflict_flags_refund(current))
        or (action is Action.NEEDS_REVIEW and current is OrderStatus.CANCELLED)
    )


def conflict_reason_for_recorded_order(
    evidence: Evidence, *, qr_md5: str | None, paid_order_id: int
) -> str:
    """Why the order that holds a transfer's hash is flagged when the transfer paid another's QR."""
    return (
        f"its recorded Bakong payment {evidence.short_hash} was made for "
        f"{_qr_name(qr_md5)} of order {paid_order_id}"
    )


def _qr_name(qr_md5: str | None) -> str:
    return "a QR" if qr_md5 is None else f"QR {qr_md5}"


# Bakong's clock and the shop's may disagree by this much: a payment found by a QR's md5 was made
# after the QR existed (its creation time is part of the md5), yet may be stamped a little earlier.
CLOCK_SKEW_MS = 5 * 60 * 1000


def find_mismatch(
    evidence: Evidence,
    expected: Money,
    receiving_accounts: frozenset[str],
    *,
    found_by_md5: bool = False,
    qr_created_ms: int | None = None,
) -> str | None:
    """Why this payment is not the order's payment (amount, currency, account, or a time before
    the QR paid, created at `qr_created_ms`, existed), or None.

    A receiving account Bakong does not state is no mismatch when the payment was found by the
    md5 of the order's QR (`found_by_md5`): that md5 ties it to our QR and its account. Found
    any other way (a hash staff typed), nothing ties it to the shop, so it is a mismatch.
    """
    problems: list[str] = []
    if qr_created_ms is not None and evidence.paid_ms < qr_created_ms - CLOCK_SKEW_MS:
        problems.append(
            f"paid at {_utc(evidence.paid_ms)}, before its QR was created at {_utc(qr_created_ms)}"
        )
    paid = evidence.money()
    if paid is None or paid.currency is not expected.currency:
        problems.append(
            f"currency or amount not as expected: expected {expected}, "
            f"paid {evidence.amount} {evidence.currency}"
        )
    elif not paid.same_value(expected):
        problems.append(f"amount mismatch: expected {expected}, paid {paid}")
    accounts = {account.casefold() for account in receiving_accounts}
    if evidence.to_account is None:
        if not found_by_md5:
            problems.append(
                "Bakong does not state the receiving account, and only the md5 of the shop's "
                "QR ties a payment to the shop"
            )
    elif evidence.to_account.strip().casefold() not in accounts:
        problems.append(f"paid to account {evidence.to_account!r}, not to the shop's account")
    return "; ".join(problems) or None


def _utc(ms: int) -> str:
    return ms_to_datetime(ms).strftime("%Y-%m-%d %H:%M:%S UTC")


def decide(
    facts: OrderFacts,
    evidence: Evidence | None,
    *,
    source: EvidenceSource,
    other_order_id: int | None = None,
    qr_md5: str | None = None,
    qr_created_ms: int | None = None,
) -> Decision:
    """What a payment (or a staff mark without evidence, `evidence=None`) does to the order.

    `other_order_id` is the order the evidence's hash is already recorded for, if another one;
    `qr_md5` the QR Bakong says was paid, if known (it names the QR in a conflict's reason);
    `qr_created_ms` when that QR was created (else the order: its QRs are all made after it). A
    payment dated before then is impossible for it: a mismatch, so it never completes the order.
    Money is never lost: every decision except ALREADY_RECORDED, CONFLICT and REFUSED records the
    evidence (a CONFLICT's money is the other order's record, flagged on both orders).
    Only staff (`MARK_PAID`) resolve NEEDS_REVIEW; automatic paths never complete a reviewed order.
    """
    staff = source is EvidenceSource.MARK_PAID
    if evidence is None:
        if not staff:
            return Decision(Action.REFUSED, "only staff may mark an order paid without evidence")
        if facts.status in (OrderStatus.PENDING, OrderStatus.NEEDS_REVIEW):
            return Decision(Action.COMPLETE)
        return Decision(Action.REFUSED, f"a {facts.status} order cannot be marked paid")

    short = evidence.short_hash
    # Automatic sources check by the md5 of the order's own QRs; staff give a hash.
    mismatch = find_mismatch(
        evidence,
        facts.expected,
        facts.receiving_accounts,
        found_by_md5=not staff,
        qr_created_ms=qr_created_ms,
    )
    if other_order_id is not None:
        if staff:
            # Staff typed a hash that belongs to another order: a mistake to refuse, not money.
            return Decision(
                Action.REFUSED,
                f"Bakong payment {short} is already recorded for another order ({other_order_id})",
            )
        if evidence.bakong_hash in facts.conflict_hashes:
            return Decision(Action.ALREADY_RECORDED, mismatch=mismatch)
        return Decision(
            Action.CONFLICT,
            f"Bakong payment {short} for {_qr_name(qr_md5)} is already recorded "
            f"for order {other_order_id}",
            mismatch,
        )
    if evidence.bakong_hash in facts.recorded_hashes:
        if staff and facts.status is OrderStatus.NEEDS_REVIEW:
            return Decision(Action.COMPLETE, "staff accepted the recorded payment", mismatch)
        return Decision(Action.ALREADY_RECORDED, mismatch=mismatch)

    match facts.status:
        case OrderStatus.PENDING:
            if evidence.paid_ms > facts.window_end_ms:
                late = (
                    "seen after the payment window ended (Bakong gave no payment time)"
                    if evidence.paid_time is PaidTime.SEEN
                    else "paid after the payment window ended"
                )
                return Decision(Action.NEEDS_REVIEW, late, mismatch)
            if mismatch is not None:
                return Decision(Action.NEEDS_REVIEW, mismatch, mismatch)
            return Decision(Action.COMPLETE, mismatch=None)
        case OrderStatus.NEEDS_REVIEW:
            if staff and mismatch is None:
                return Decision(Action.COMPLETE, "staff confirmed the payment")
            if facts.paid_manually_without_hash and not facts.recorded_hashes and not mismatch:
                # Staff vouched for a payment, then the order went to review (e.g. short of
                # stock): this is that payment found, not another one; the review reason stays.
                return Decision(Action.ATTACH_EVIDENCE_ONLY)
            return Decision(
                Action.NEEDS_REVIEW,
                mismatch or f"another Bakong payment {short} arrived while the order awaits review",
                mismatch,
            )
        case OrderStatus.COMPLETED:
            if facts.paid_manually_without_hash and not facts.recorded_hashes:
                return Decision(Action.ATTACH_EVIDENCE_ONLY, mismatch=mismatch)
            recorded = ", ".join(sorted(h[:SHORT_HASH_LENGTH] for h in facts.recorded_hashes))
            return Decision(
                Action.FLAG_REFUND,
                f"a second Bakong payment {short} for an order already paid"
                + (f" (recorded: {recorded})" if recorded else ""),
                mismatch,
            )
        case OrderStatus.REFUNDED:
            return Decision(
                Action.FLAG_REFUND,
                f"Bakong payment {short} for an order already refunded",
                mismatch,
            )
        case OrderStatus.EXPIRED:
            return Decision(Action.NEEDS_REVIEW, "paid after the order expired", mismatch)
        case OrderStatus.CANCELLED:
            return Decision(Action.NEEDS_REVIEW, "paid a cancelled order", mismatch)
