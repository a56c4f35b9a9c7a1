"""The order domain: validation, the state machine and the payment decision (exhaustively)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from khqrpay.money import Currency, Money
from khqrpay.orders.model import (
    ALLOWED_TRANSITIONS,
    CLOCK_SKEW_MS,
    MAX_ID,
    STAFF_TRANSITIONS,
    Action,
    AuditEntry,
    Decision,
    Evidence,
    EvidenceSource,
    LineRequest,
    Order,
    OrderError,
    OrderFacts,
    OrderNotFound,
    OrderStatus,
    PaidTime,
    ReviewNote,
    StaffAction,
    TransitionRefused,
    can_transition,
    conflict_flags_refund,
    conflict_reason_for_recorded_order,
    decide,
    find_mismatch,
    flags_refund,
    normalize_phone,
    review_history,
    staff_actor,
    staff_target,
    status_after,
    validate_actor,
    validate_order_id,
    validate_reason,
    validate_refund_reference,
    validate_sku,
    validate_text,
)

SHOP = "shop@devb"
WINDOW_END = 1_800_000_000_000
EXPECTED = Money(Decimal("1.50"), Currency.USD)
H1, H2, H3 = (hashlib.sha256(bytes([n])).hexdigest() for n in range(3))
# The order a hash is already recorded for, when it is another order; and a paid QR's md5.
OTHER_ORDER = 41
QR_MD5 = "0123456789abcdef0123456789abcdef"
STAFF, VERIFIER, INSTANT = (
    EvidenceSource.MARK_PAID,
    EvidenceSource.VERIFIER,
    EvidenceSource.VERIFY_INSTANTLY,
)


def facts(
    status: OrderStatus = OrderStatus.PENDING,
    *,
    recorded: frozenset[str] = frozenset(),
    manual: bool = False,
) -> OrderFacts:
    return OrderFacts(
        status=status,
        window_end_ms=WINDOW_END,
        expected=EXPECTED,
        receiving_accounts=frozenset({SHOP}),
        recorded_hashes=recorded,
        paid_manually_without_hash=manual,
    )


def paid(
    bakong_hash: str = H1,
    *,
    amount: str = "1.5",
    currency: str = "USD",
    to_account: str | None = SHOP,
    paid_ms: int = WINDOW_END - 1,
    paid_time: PaidTime = PaidTime.CREATED,
) -> Evidence:
    return Evidence(
        bakong_hash, "payer@aba", to_account, Decimal(amount), currency, paid_ms, paid_time
    )


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("012 345 678", "+85512345678"),
        ("+855 12 345 678", "+85512345678"),
        ("855-97-123-4567", "+855971234567"),
        ("(012) 345-678", "+85512345678"),
        ("0961234567", "+855961234567"),
    ],
)
def test_phones_are_normalised_to_e164(text: str, expected: str) -> None:
    assert normalize_phone(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "12345678", "+1 555 123 4567", "0012345678", "012 345", "+855 12 345 678 999", "abc"],
)
def test_non_cambodian_phones_are_refused(text: str) -> None:
    with pytest.raises(OrderError, match="not a Cambodian number"):
        normalize_phone(text)


@pytest.mark.parametrize("sku", ["TEA-1", "a", "x.y_z-9", "A" * 64])
def test_valid_skus(sku: str) -> None:
    assert validate_sku(sku) == sku


@pytest.mark.parametrize("sku", ["", "-x", "a b", "A" * 65, "tea/1", "é", "TEA-1\n"])
def test_invalid_skus_are_refused(sku: str) -> None:
    with pytest.raises(OrderError, match="SKU"):
        validate_sku(sku)


def test_line_requests_parse_and_validate() -> None:
    assert LineRequest.parse("TEA-1:2") == LineRequest("TEA-1", 2)
    assert LineRequest.parse(" TEA-1 : 3") == LineRequest("TEA-1", 3)
    for bad in ("TEA-1", "TEA-1:", "TEA-1:x", "TEA-1:-1", ":2"):
        with pytest.raises(OrderError):
            LineRequest.parse(bad)
    for quantity in (0, -1, 10_001):
        with pytest.raises(OrderError, match="between 1 and"):
            LineRequest("TEA-1", quantity)
    with pytest.raises(OrderError, match="whole number"):
        LineRequest("TEA-1", True)


@pytest.mark.parametrize(
    "actor", ["cli", "system", "customer", "worker:host-1:42", "staff:Dara", "staff:ដារ៉ា"]
)
def test_valid_actors(actor: str) -> None:
    assert validate_actor(actor) == actor


@pytest.mark.parametrize(
    "actor", ["", "staff:", "robot", "worker:" + "x" * 57, "staff:a\nb", "cli\n", "staff:dara\n"]
)
def test_invalid_actors_are_refused(actor: str) -> None:
    with pytest.raises(OrderError, match="actor"):
        validate_actor(actor)


def test_evidence_is_validated() -> None:
    with pytest.raises(OrderError, match="64 lower-case"):
        paid("ABC")
    with pytest.raises(OrderError, match="64 lower-case"):
        paid(H1.upper())
    with pytest.raises(OrderError, match="finite Decimal"):
        paid(amount="NaN")
    with pytest.raises(OrderError, match="currency"):
        paid(currency=" ")
    with pytest.raises(OrderError, match="receiving account"):
        paid(to_account="")
    with pytest.raises(OrderError, match="never negative"):
        paid(paid_ms=-1)
    assert paid().short_hash == H1[:8]


def test_evidence_money_is_exact_or_none() -> None:
    assert paid(amount="1.5").money() == Money(Decimal("1.5"), Currency.USD)
    assert paid(amount="1.505").money() is None
    assert paid(currency="EUR").money() is None
    assert paid(amount="4000", currency="khr").money() == Money(Decimal(4000), Currency.KHR)


def test_order_repr_hides_the_token_and_phone() -> None:
    order = Order(
        id=1,
        public_token="secret-token-value",
        status=OrderStatus.PENDING,
        total=EXPECTED,
        customer_phone="+85512345678",
        created_ms=0,
        window_end_ms=1,
        completed_ms=None,
        review_reason=None,
        refund_flag=False,
        refund_reason=None,
        paid_manually_without_hash=False,
        updated_ms=0,
    )
    assert "secret-token-value" not in repr(order)
    assert "85512345678" not in repr(order)


# -- the state machine ----------------------------------------------------------------------------


def test_transitions_are_exactly_the_documented_ones() -> None:
    allowed = {(a, b) for a in OrderStatus for b in OrderStatus if can_transition(a, b)}
    s = OrderStatus
    assert allowed == {
        (s.PENDING, s.COMPLETED),
        (s.PENDING, s.NEEDS_REVIEW),
        (s.PENDING, s.EXPIRED),
        (s.PENDING, s.CANCELLED),
        (s.NEEDS_REVIEW, s.COMPLETED),
        (s.NEEDS_REVIEW, s.REFUNDED),
        (s.EXPIRED, s.NEEDS_REVIEW),
        (s.CANCELLED, s.NEEDS_REVIEW),
    }
    assert set(ALLOWED_TRANSITIONS) == set(OrderStatus)


# -- matching -------------------------------------------------------------------------------------


def test_matching_accepts_the_same_value_in_any_precision_and_account_case() -> None:
    assert find_mismatch(paid(amount="1.50"), EXPECTED, frozenset({SHOP})) is None
    assert find_mismatch(paid(amount="1.5"), EXPECTED, frozenset({SHOP})) is None
    assert find_mismatch(paid(to_account=" SHOP@DEVB "), EXPECTED, frozenset({SHOP})) is None


@pytest.mark.parametrize(
    ("evidence", "words"),
    [
        (paid(amount="1.49"), "amount mismatch: expected 1.50 USD, paid 1.49 USD"),
        (paid(amount="150", currency="KHR"), "currency or amount not as expected"),
        (paid(amount="1.505"), "currency or amount not as expected"),
        (paid(currency="EUR"), "currency or amount not as expected"),
        (paid(to_account="thief@aba"), "paid to account 'thief@aba'"),
    ],
)
def test_mismatches_say_what_differs(evidence: Evidence, words: str) -> None:
    reason = find_mismatch(evidence, EXPECTED, frozenset({SHOP}))
    assert reason is not None
    assert words in reason


def test_an_unstated_receiving_account_is_no_mismatch_only_for_a_payment_found_by_md5() -> None:
    unstated = paid(to_account=None)
    assert find_mismatch(unstated, EXPECTED, frozenset({SHOP}), found_by_md5=True) is None
    mismatch = find_mismatch(unstated, EXPECTED, frozenset({SHOP}))
    assert mismatch is not None
    assert "does not state the receiving account" in mismatch
    # The verifier checks by md5: it completes; staff typed a hash: nothing ties it to the shop.
    assert decide(facts(), unstated, source=EvidenceSource.VERIFIER).action is Action.COMPLETE
    staff = decide(facts(), unstated, source=EvidenceSource.MARK_PAID)
    assert staff.action is Action.NEEDS_REVIEW


def test_a_payment_seen_after_the_window_without_a_bakong_time_says_so() -> None:
    late = paid(paid_ms=WINDOW_END + 1, paid_time=PaidTime.SEEN)
    decision = decide(facts(), late, source=EvidenceSource.VERIFIER)
    assert decision.action is Action.NEEDS_REVIEW
    assert decision.reason == "seen after the payment window ended (Bakong gave no payment time)"


def test_every_mismatch_is_listed() -> None:
    reason = find_mismatch(paid(amount="2", to_account="x@y"), EXPECTED, frozenset({SHOP}))
    assert reason is not None
    assert "amount mismatch" in reason
    assert "paid to account" in reason


# -- the decision, case by case -------------------------------------------------------------------

CASES = [
    # (name, facts, evidence, source, hash elsewhere, action, reason contains)
    ("pending paid", facts(), paid(), VERIFIER, False, Action.COMPLETE, None),
    ("pending paid instantly", facts(), paid(), INSTANT, False, Action.COMPLETE, None),
    ("pending staff hash", facts(), paid(), STAFF, False, Action.COMPLETE, None),
    ("pending staff no hash", facts(), None, STAFF, False, Action.COMPLETE, None),
    (
        "pending wrong amount",
        facts(),
        paid(amount="1"),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "amount mismatch",
    ),
    (
        "pending wrong currency",
        facts(),
        paid(amount="6000", currency="KHR"),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "currency",
    ),
    (
        "pending wrong account",
        facts(),
        paid(to_account="other@devb"),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "paid to account",
    ),
    (
        "pending paid after window",
        facts(),
        paid(paid_ms=WINDOW_END + 1),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "after the payment window",
    ),
    (
        "pending paid exactly at window end",
        facts(),
        paid(paid_ms=WINDOW_END),
        VERIFIER,
        False,
        Action.COMPLETE,
        None,
    ),
    (
        "staff give the hash of another order",
        facts(),
        paid(),
        STAFF,
        True,
        Action.REFUSED,
        "already recorded for another order",
    ),
    (
        "verifier finds a transfer recorded for another order",
        facts(),
        paid(),
        VERIFIER,
        True,
        Action.CONFLICT,
        f"Bakong payment {H1[:8]} for a QR is already recorded for order {OTHER_ORDER}",
    ),
    (
        "automatic without evidence",
        facts(),
        None,
        VERIFIER,
        False,
        Action.REFUSED,
        "only staff",
    ),
    (
        "same hash again",
        facts(OrderStatus.COMPLETED, recorded=frozenset({H1})),
        paid(),
        VERIFIER,
        False,
        Action.ALREADY_RECORDED,
        None,
    ),
    (
        "same hash again by staff",
        facts(OrderStatus.COMPLETED, recorded=frozenset({H1})),
        paid(),
        STAFF,
        False,
        Action.ALREADY_RECORDED,
        None,
    ),
    (
        "same hash on a reviewed order",
        facts(OrderStatus.NEEDS_REVIEW, recorded=frozenset({H1})),
        paid(amount="1"),
        VERIFIER,
        False,
        Action.ALREADY_RECORDED,
        None,
    ),
    (
        "staff accepts the recorded payment",
        facts(OrderStatus.NEEDS_REVIEW, recorded=frozenset({H1})),
        paid(amount="1"),
        STAFF,
        False,
        Action.COMPLETE,
        "staff accepted",
    ),
    (
        "staff completes a reviewed order without hash",
        facts(OrderStatus.NEEDS_REVIEW, recorded=frozenset({H1})),
        None,
        STAFF,
        False,
        Action.COMPLETE,
        None,
    ),
    (
        "staff gives a new matching hash for a reviewed order",
        facts(OrderStatus.NEEDS_REVIEW, recorded=frozenset({H1})),
        paid(H2),
        STAFF,
        False,
        Action.COMPLETE,
        "staff confirmed",
    ),
    (
        "staff gives a new mismatching hash for a reviewed order",
        facts(OrderStatus.NEEDS_REVIEW, recorded=frozenset({H1})),
        paid(H2, amount="1"),
        STAFF,
        False,
        Action.NEEDS_REVIEW,
        "amount mismatch",
    ),
    (
        "another payment while in review",
        facts(OrderStatus.NEEDS_REVIEW, recorded=frozenset({H1})),
        paid(H2),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "awaits review",
    ),
    (
        "second QR paid",
        facts(OrderStatus.COMPLETED, recorded=frozenset({H1})),
        paid(H2),
        VERIFIER,
        False,
        Action.FLAG_REFUND,
        "second Bakong payment",
    ),
    (
        "detection after staff marked paid without hash",
        facts(OrderStatus.COMPLETED, manual=True),
        paid(),
        VERIFIER,
        False,
        Action.ATTACH_EVIDENCE_ONLY,
        None,
    ),
    (
        "the payment staff vouched for, found while the order is in review",
        facts(OrderStatus.NEEDS_REVIEW, manual=True),
        paid(),
        VERIFIER,
        False,
        Action.ATTACH_EVIDENCE_ONLY,
        None,
    ),
    (
        "a mismatching payment while an order staff vouched for is in review",
        facts(OrderStatus.NEEDS_REVIEW, manual=True),
        paid(amount="1"),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "amount mismatch",
    ),
    (
        "a second detection after the one staff saw was attached",
        facts(OrderStatus.COMPLETED, recorded=frozenset({H1}), manual=True),
        paid(H2),
        VERIFIER,
        False,
        Action.FLAG_REFUND,
        "second Bakong payment",
    ),
    (
        "a hash other than the one staff recorded",
        facts(OrderStatus.COMPLETED, recorded=frozenset({H1})),
        paid(H3),
        STAFF,
        False,
        Action.FLAG_REFUND,
        H1[:8],
    ),
    (
        "paid a refunded order",
        facts(OrderStatus.REFUNDED, recorded=frozenset({H1})),
        paid(H2),
        VERIFIER,
        False,
        Action.FLAG_REFUND,
        "already refunded",
    ),
    (
        "paid an expired order",
        facts(OrderStatus.EXPIRED),
        paid(),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "after the order expired",
    ),
    (
        "paid a cancelled order",
        facts(OrderStatus.CANCELLED),
        paid(),
        VERIFIER,
        False,
        Action.NEEDS_REVIEW,
        "cancelled",
    ),
    (
        "staff marks a completed order paid",
        facts(OrderStatus.COMPLETED, recorded=frozenset({H1})),
        None,
        STAFF,
        False,
        Action.REFUSED,
        "cannot be marked paid",
    ),
    (
        "staff marks an expired order paid without hash",
        facts(OrderStatus.EXPIRED),
        None,
        STAFF,
        False,
        Action.REFUSED,
        "EXPIRED order cannot be marked paid",
    ),
]


@pytest.mark.parametrize(
    ("order_facts", "evidence", "source", "elsewhere", "action", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decision(
    order_facts: OrderFacts,
    evidence: Evidence | None,
    source: EvidenceSource,
    elsewhere: bool,
    action: Action,
    words: str | None,
) -> None:
    decision = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    assert decision.action is action
    if words is None:
        assert decision.reason is None or action is Action.COMPLETE
    else:
        assert decision.reason is not None
        assert words in decision.reason


def test_mismatch_is_reported_with_every_decision_that_records_evidence() -> None:
    decision = decide(facts(OrderStatus.COMPLETED, manual=True), paid(amount="2"), source=VERIFIER)
    assert decision.action is Action.ATTACH_EVIDENCE_ONLY
    assert decision.mismatch is not None
    assert "amount mismatch" in decision.mismatch
    assert decide(facts(), paid(), source=VERIFIER).mismatch is None


# -- the decision, as properties over all inputs --------------------------------------------------

statuses = st.sampled_from(OrderStatus)
hashes = st.sampled_from([H1, H2, H3])
evidences = st.one_of(
    st.none(),
    st.builds(
        Evidence,
        bakong_hash=hashes,
        from_account=st.none() | st.just("payer@aba"),
        to_account=st.sampled_from([SHOP, "SHOP@DEVB", "other@devb"]),
        amount=st.sampled_from([Decimal("1.5"), Decimal("1.50"), Decimal("1.49"), Decimal(6000)]),
        currency=st.sampled_from(["USD", "usd", "KHR", "EUR"]),
        paid_ms=st.integers(WINDOW_END - 10, WINDOW_END + 10),
    ),
)
all_facts = st.builds(
    OrderFacts,
    status=statuses,
    window_end_ms=st.just(WINDOW_END),
    expected=st.just(EXPECTED),
    receiving_accounts=st.just(frozenset({SHOP})),
    recorded_hashes=st.frozensets(hashes, max_size=2),
    paid_manually_without_hash=st.booleans(),
    conflict_hashes=st.frozensets(hashes, max_size=1),
)
sources = st.sampled_from(EvidenceSource)


@given(all_facts, evidences, sources, st.booleans())
def test_decisions_only_move_orders_along_allowed_transitions(
    order_facts: OrderFacts, evidence: Evidence | None, source: EvidenceSource, elsewhere: bool
) -> None:
    decision = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    target = status_after(decision.action, order_facts.status)
    assert target == order_facts.status or can_transition(order_facts.status, target)


@given(all_facts, evidences, sources, st.booleans())
def test_automatic_paths_complete_only_a_pending_order_paid_exactly_in_time(
    order_facts: OrderFacts, evidence: Evidence | None, source: EvidenceSource, elsewhere: bool
) -> None:
    decision = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    if decision.action is Action.COMPLETE and source is not STAFF:
        assert order_facts.status is OrderStatus.PENDING
        assert evidence is not None
        assert evidence.paid_ms <= WINDOW_END
        assert find_mismatch(evidence, EXPECTED, frozenset({SHOP})) is None
        assert evidence.bakong_hash not in order_facts.recorded_hashes
        assert not elsewhere


@given(all_facts, evidences, sources, st.booleans())
def test_a_recorded_hash_is_never_recorded_again(
    order_facts: OrderFacts, evidence: Evidence | None, source: EvidenceSource, elsewhere: bool
) -> None:
    decision = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    if elsewhere and evidence is not None:
        if source is STAFF:
            assert decision.action is Action.REFUSED
        elif evidence.bakong_hash in order_facts.conflict_hashes:
            assert decision.action is Action.ALREADY_RECORDED
        else:
            assert decision.action is Action.CONFLICT
    elif evidence is not None and evidence.bakong_hash in order_facts.recorded_hashes:
        staff_resolves = source is STAFF and order_facts.status is OrderStatus.NEEDS_REVIEW
        assert decision.action is (Action.COMPLETE if staff_resolves else Action.ALREADY_RECORDED)


@given(all_facts, evidences, sources, st.booleans())
def test_money_found_for_a_paid_order_is_never_silently_dropped(
    order_facts: OrderFacts, evidence: Evidence | None, source: EvidenceSource, elsewhere: bool
) -> None:
    decision = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    if evidence is None:
        assert decision.action in (Action.COMPLETE, Action.REFUSED)
        assert decision.action is Action.REFUSED or source is STAFF
        return
    new_money = evidence.bakong_hash not in order_facts.recorded_hashes and not elsewhere
    if new_money:
        # Every new transfer is recorded, whatever it does to the order.
        assert decision.action in (
            Action.COMPLETE,
            Action.NEEDS_REVIEW,
            Action.FLAG_REFUND,
            Action.ATTACH_EVIDENCE_ONLY,
        )
    if decision.action is Action.FLAG_REFUND:
        assert order_facts.status in (OrderStatus.COMPLETED, OrderStatus.REFUNDED)
    if decision.action is Action.ATTACH_EVIDENCE_ONLY:
        # The payment staff vouched for, found after the order completed or went to review.
        assert order_facts.status in (OrderStatus.COMPLETED, OrderStatus.NEEDS_REVIEW)
        assert order_facts.paid_manually_without_hash
        assert not order_facts.recorded_hashes
    if decision.action not in (Action.REFUSED,):
        assert decision.mismatch == find_mismatch(evidence, EXPECTED, frozenset({SHOP}))


@given(all_facts, evidences, st.sampled_from([VERIFIER, INSTANT]), st.booleans())
def test_money_bakong_reports_is_never_refused(
    order_facts: OrderFacts, evidence: Evidence | None, source: EvidenceSource, elsewhere: bool
) -> None:
    # Refusing a transfer Bakong says paid this order's QR would let the QR expire: money guessed.
    decision = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    assert (decision.action is Action.REFUSED) == (evidence is None)


@given(all_facts, evidences, sources, st.booleans())
def test_the_decision_is_a_function_of_its_inputs(
    order_facts: OrderFacts, evidence: Evidence | None, source: EvidenceSource, elsewhere: bool
) -> None:
    first = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    again = decide(
        order_facts, evidence, source=source, other_order_id=OTHER_ORDER if elsewhere else None
    )
    assert first == again


# -- a transfer recorded for another order ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "after", "refund"),
    [
        (OrderStatus.PENDING, OrderStatus.NEEDS_REVIEW, False),
        (OrderStatus.EXPIRED, OrderStatus.NEEDS_REVIEW, False),
        (OrderStatus.CANCELLED, OrderStatus.NEEDS_REVIEW, False),
        (OrderStatus.NEEDS_REVIEW, OrderStatus.NEEDS_REVIEW, False),
        (OrderStatus.COMPLETED, OrderStatus.COMPLETED, True),
        (OrderStatus.REFUNDED, OrderStatus.REFUNDED, True),
    ],
)
@pytest.mark.parametrize("source", [VERIFIER, INSTANT])
def test_bakong_finding_a_transfer_recorded_for_another_order_is_a_conflict(
    status: OrderStatus, after: OrderStatus, refund: bool, source: EvidenceSource
) -> None:
    order_facts = facts(status, recorded=frozenset({H2}))
    decision = decide(
        order_facts, paid(H1), source=source, other_order_id=OTHER_ORDER, qr_md5=QR_MD5
    )
    assert decision == Decision(
        Action.CONFLICT,
        f"Bakong payment {H1[:8]} for QR {QR_MD5} is already recorded for order {OTHER_ORDER}",
        None,
    )
    assert status_after(decision.action, status) is after
    assert conflict_flags_refund(status) is refund


def test_a_conflict_keeps_the_mismatch_of_the_transfer() -> None:
    decision = decide(facts(), paid(H1, amount="2"), source=VERIFIER, other_order_id=OTHER_ORDER)
    assert decision.action is Action.CONFLICT
    assert decision.mismatch is not None
    assert "amount mismatch" in decision.mismatch


@pytest.mark.parametrize("status", list(OrderStatus))
def test_the_same_conflict_again_is_already_recorded(status: OrderStatus) -> None:
    order_facts = replace(facts(status), conflict_hashes=frozenset({H1}))
    seen = decide(order_facts, paid(H1), source=VERIFIER, other_order_id=OTHER_ORDER)
    assert seen.action is Action.ALREADY_RECORDED
    # Another transfer recorded elsewhere is a new conflict.
    other = decide(order_facts, paid(H2), source=VERIFIER, other_order_id=OTHER_ORDER)
    assert other.action is Action.CONFLICT


def test_staff_giving_a_hash_recorded_for_another_order_stays_refused() -> None:
    decision = decide(facts(), paid(H1), source=STAFF, other_order_id=OTHER_ORDER, qr_md5=QR_MD5)
    assert decision.action is Action.REFUSED
    assert decision.reason == (
        f"Bakong payment {H1[:8]} is already recorded for another order ({OTHER_ORDER})"
    )


def test_the_recorded_order_is_told_which_order_and_qr_the_transfer_paid() -> None:
    assert conflict_reason_for_recorded_order(paid(H1), qr_md5=QR_MD5, paid_order_id=7) == (
        f"its recorded Bakong payment {H1[:8]} was made for QR {QR_MD5} of order 7"
    )
    assert conflict_reason_for_recorded_order(paid(H1), qr_md5=None, paid_order_id=7) == (
        f"its recorded Bakong payment {H1[:8]} was made for a QR of order 7"
    )


# -- staff actions --------------------------------------------------------------------------------


def test_staff_transitions_are_transitions_the_state_machine_allows() -> None:
    for source, target in STAFF_TRANSITIONS.values():
        assert can_transition(source, target)
    assert set(STAFF_TRANSITIONS) == set(StaffAction)


@pytest.mark.parametrize("action", list(StaffAction))
@pytest.mark.parametrize("current", list(OrderStatus))
def test_a_staff_action_moves_only_from_its_own_status(
    action: StaffAction, current: OrderStatus
) -> None:
    source, target = STAFF_TRANSITIONS[action]
    if current is source:
        assert staff_target(action, order_id=5, current=current) is target
    else:
        with pytest.raises(TransitionRefused, match=f"order 5 is {current}: only a {source}"):
            staff_target(action, order_id=5, current=current)


@pytest.mark.parametrize(
    ("action", "current", "flagged"),
    [
        (Action.NEEDS_REVIEW, OrderStatus.CANCELLED, True),
        (Action.NEEDS_REVIEW, OrderStatus.PENDING, False),
        (Action.NEEDS_REVIEW, OrderStatus.EXPIRED, False),
        (Action.FLAG_REFUND, OrderStatus.COMPLETED, True),
        (Action.CONFLICT, OrderStatus.COMPLETED, True),
        (Action.CONFLICT, OrderStatus.CANCELLED, False),
        (Action.COMPLETE, OrderStatus.PENDING, False),
    ],
)
def test_money_for_a_cancelled_order_is_flagged_for_refund(
    action: Action, current: OrderStatus, flagged: bool
) -> None:
    assert flags_refund(action, current) is flagged


def test_money_for_a_cancelled_order_always_goes_to_review_flagged() -> None:
    for evidence in (paid(), paid(amount="9"), paid(paid_ms=WINDOW_END + 1)):
        decision = decide(facts(OrderStatus.CANCELLED), evidence, source=VERIFIER)
        assert status_after(decision.action, OrderStatus.CANCELLED) is OrderStatus.NEEDS_REVIEW
        assert flags_refund(decision.action, OrderStatus.CANCELLED)


def test_a_reason_is_trimmed_bounded_and_required_when_asked() -> None:
    assert validate_reason("  broken cup ", required=True) == "broken cup"
    assert validate_reason("  ", required=False) is None
    with pytest.raises(OrderError, match="a reason is required"):
        validate_reason(" ", required=True)
    with pytest.raises(OrderError, match="at most 500"):
        validate_reason("x" * 501, required=False)


@pytest.mark.parametrize("reference", ["", "  ", "x" * 129, "FT1\nFT2", "tab\there"])
def test_a_refund_reference_is_one_printable_line(reference: str) -> None:
    with pytest.raises(OrderError, match="refund reference"):
        validate_refund_reference(reference)


def test_a_refund_reference_is_kept_as_given_but_trimmed() -> None:
    assert validate_refund_reference(" FT24338-0001 ") == "FT24338-0001"


# -- text, ids and amounts from outside ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "multiline", "words"),
    [
        ("Iced\x01tea", False, "control characters"),
        ("Iced\ntea", False, "control characters"),
        ("Iced\x7ftea", False, "control characters"),
        ("Iced\x85tea", False, "control characters"),
        ("receipt\x00", True, "control characters"),
        ("caf\udce9", False, "not valid UTF-8"),
        ("caf\udce9", True, "not valid UTF-8"),
    ],
)
def test_names_and_reasons_with_control_characters_or_undecodable_bytes_are_refused(
    text: str, multiline: bool, words: str
) -> None:
    with pytest.raises(OrderError, match=words):
        validate_text(text, "a name", multiline=multiline)


@pytest.mark.parametrize(
    ("text", "multiline"),
    [("Iced tea", False), ("កាហ្វេទឹកកក", False), ("Café\u200bnoir", False), ("seen\r\n\tok", True)],
)
def test_printable_text_in_any_script_is_accepted(text: str, multiline: bool) -> None:
    assert validate_text(text, "a name", multiline=multiline) == text


def test_a_reason_is_cleaned_and_bounded() -> None:
    assert validate_reason("  receipt shown\nat the till ", required=False) == (
        "receipt shown\nat the till"
    )
    assert validate_reason("   ", required=False) is None
    assert validate_reason(None, required=False) is None
    with pytest.raises(OrderError, match="at most 500"):
        validate_reason("x" * 501, required=False)
    with pytest.raises(OrderError, match="not valid UTF-8"):
        validate_reason("bad \udcff", required=False)


@pytest.mark.parametrize("name", ["Dara", " Sok Dara ", "dara.k@shop", "x" * 56, "ដារ៉ា"])
def test_staff_names_become_staff_actors(name: str) -> None:
    assert staff_actor(name) == f"staff:{name.strip()}"
    assert len(staff_actor(name)) <= 64  # the actor column


@pytest.mark.parametrize("name", ["", "  ", "!!bad!!", "x" * 57, "a\nb", "a\udcffb", "a:b"])
def test_bad_staff_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(OrderError, match="a staff name is 1 to 56"):
        staff_actor(name)


@pytest.mark.parametrize("order_id", [1, 42, MAX_ID])
def test_ids_a_row_can_have_are_accepted(order_id: int) -> None:
    assert validate_order_id(order_id) == order_id


@pytest.mark.parametrize("order_id", [0, -1, MAX_ID + 1, 10**20, True])
def test_ids_no_row_can_have_are_not_found_before_any_query(order_id: int) -> None:
    with pytest.raises(OrderNotFound, match="not found"):
        validate_order_id(order_id)


@pytest.mark.parametrize("quantity", ["²", "١", "1" * 5000, "99999999999"])
def test_a_line_quantity_is_ascii_digits_in_range(quantity: str) -> None:
    with pytest.raises(OrderError, match=r"SKU:QTY|between 1 and"):
        LineRequest.parse(f"TEA-1:{quantity}")
    assert LineRequest.parse("TEA-1:0003") == LineRequest("TEA-1", 3)


def test_a_phone_with_digits_of_another_script_is_refused() -> None:
    with pytest.raises(OrderError, match="not a Cambodian number"):
        normalize_phone("0١٢٣٤٥٦٧٨")


def test_a_hash_with_a_trailing_line_break_is_refused() -> None:
    with pytest.raises(OrderError, match="64 lower-case"):
        paid(H1 + "\n")


# -- a payment dated before its QR existed ---------------------------------------------------------

QR_CREATED = WINDOW_END - 86_400_000
YEAR_2001_MS = 1_000_000_000_000  # 2001-09-09


@pytest.mark.parametrize("source", [VERIFIER, INSTANT])
def test_a_payment_dated_before_its_qr_was_created_goes_to_review(source: EvidenceSource) -> None:
    decision = decide(facts(), paid(paid_ms=YEAR_2001_MS), source=source, qr_created_ms=QR_CREATED)
    assert decision.action is Action.NEEDS_REVIEW
    assert decision.reason == decision.mismatch
    assert decision.reason is not None
    assert decision.reason.startswith(
        "paid at 2001-09-09 01:46:40 UTC, before its QR was created at 2027-01-14"
    )


def test_clock_skew_between_bakong_and_the_shop_is_allowed() -> None:
    skewed = paid(paid_ms=QR_CREATED - CLOCK_SKEW_MS)
    assert decide(facts(), skewed, source=VERIFIER, qr_created_ms=QR_CREATED).action is (
        Action.COMPLETE
    )
    too_early = paid(paid_ms=QR_CREATED - CLOCK_SKEW_MS - 1)
    assert decide(facts(), too_early, source=VERIFIER, qr_created_ms=QR_CREATED).action is (
        Action.NEEDS_REVIEW
    )


def test_staff_cannot_complete_a_reviewed_order_with_a_payment_older_than_its_qr() -> None:
    decision = decide(
        facts(OrderStatus.NEEDS_REVIEW),
        paid(paid_ms=YEAR_2001_MS),
        source=STAFF,
        qr_created_ms=QR_CREATED,
    )
    assert decision.action is Action.NEEDS_REVIEW
    assert "before its QR was created" in (decision.reason or "")


@given(all_facts, evidences, sources, st.booleans(), st.integers(WINDOW_END - 10**10, WINDOW_END))
def test_a_new_payment_completes_an_order_only_if_made_after_its_qr_existed(
    order_facts: OrderFacts,
    evidence: Evidence | None,
    source: EvidenceSource,
    elsewhere: bool,
    qr_created_ms: int,
) -> None:
    decision = decide(
        order_facts,
        evidence,
        source=source,
        other_order_id=OTHER_ORDER if elsewhere else None,
        qr_created_ms=qr_created_ms,
    )
    new_payment = evidence is not None and evidence.bakong_hash not in order_facts.recorded_hashes
    if decision.action is Action.COMPLETE and new_payment:
        assert evidence is not None
        assert evidence.paid_ms >= qr_created_ms - CLOCK_SKEW_MS


# -- every review reason, and the same payment never called another --------------------------------


@given(all_facts, evidences, sources)
def test_a_payment_already_recorded_or_vouched_for_is_never_called_another(
    order_facts: OrderFacts, evidence: Evidence | None, source: EvidenceSource
) -> None:
    decision = decide(order_facts, evidence, source=source)
    if "another Bakong payment" in (decision.reason or ""):
        assert evidence is not None
        assert evidence.bakong_hash not in order_facts.recorded_hashes
        # Staff vouched for one payment without a hash: the first one found is that one.
        assert order_facts.recorded_hashes or not order_facts.paid_manually_without_hash


def _audit(
    entry_id: int,
    action: str,
    to_status: OrderStatus | None,
    *,
    reason: str | None = None,
    decision_reason: str | None = None,
    actor: str = "worker:w1",
) -> AuditEntry:
    return AuditEntry(
        id=entry_id,
        order_id=7,
        at_ms=1_000 * entry_id,
        actor=actor,
        action=action,
        from_status=None,
        to_status=to_status,
        reason=reason,
        details={"decision_reason": decision_reason} if decision_reason else {},
    )


def test_the_review_history_is_every_reason_the_order_was_sent_to_or_kept_in_review() -> None:
    review = OrderStatus.NEEDS_REVIEW
    audit = [
        _audit(1, "order_created", OrderStatus.PENDING, actor="customer"),
        _audit(2, "needs_review", review, decision_reason="amount mismatch: ...", reason="x"),
        _audit(3, "evidence_attached", review),  # no new reason
        _audit(4, "payment_conflict", review, decision_reason="Bakong payment ... conflict"),
        _audit(5, "needs_review", review, reason="staff's own words", actor="staff:sok"),
        _audit(6, "completed", OrderStatus.COMPLETED, decision_reason="staff confirmed"),
    ]
    assert review_history(audit) == (
        ReviewNote(2_000, "amount mismatch: ...", "worker:w1"),
        ReviewNote(4_000, "Bakong payment ... conflict", "worker:w1"),
        ReviewNote(5_000, "staff's own words", "staff:sok"),
    )
