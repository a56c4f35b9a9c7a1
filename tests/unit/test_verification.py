"""The verifier's pure pieces: how Bakong's answers and errors map to outcomes, schedule error
kinds and evidence; the worker's id; a cycle report as metrics."""

from __future__ import annotations

from decimal import Decimal

import pytest
from prometheus_client import REGISTRY

from khqrpay.bakong import (
    BadResponse,
    Blocked,
    CircuitOpen,
    Failed,
    NotFound,
    Paid,
    RateLimited,
    Rejected,
    StaticQr,
    Transaction,
    Unauthorized,
    Unavailable,
)
from khqrpay.orders.budget import CallBudget
from khqrpay.orders.model import (
    Action,
    AttemptOutcome,
    OrderError,
    OrderStatus,
    PaidTime,
    validate_actor,
)
from khqrpay.orders.schedule import ErrorKind
from khqrpay.services.bakong_answers import describe_answer, error_kind, evidence_of, outcome_of
from khqrpay.services.budget import BudgetUse
from khqrpay.services.checking import CheckRecord, CheckTarget
from khqrpay.services.completion import CompletionResult
from khqrpay.services.verification import CycleReport
from khqrpay.worker.runtime import new_worker_id, observe

HASH = "8465d722d7d5065f2886f0a474a4d34dc6a7855355b611836f7b6111228893e9"


def _transaction(**changes: object) -> Transaction:
    fields: dict[str, object] = {
        "hash": HASH,
        "amount": Decimal("1.0"),
        "currency": "USD",
        "received_ms": 1_586_852_125_000,
        "to_account_id": "shop@devb",
        "from_account_id": "abaakhppxxx@abaa",
        "created_ms": 1_586_852_120_700,
        "acknowledged_ms": 1_586_852_123_544,
        "description": None,
        "tracking_status": None,
        "receiver_bank": None,
        "receiver_bank_account": None,
        "instruction_ref": None,
        "external_ref": "100FT38906478429",
    }
    return Transaction(**(fields | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (Unauthorized("token refused"), ErrorKind.UNAUTHORIZED),
        (RateLimited("slow down", retry_after_s=3), ErrorKind.RATE_LIMITED),
        (Blocked("firewall"), ErrorKind.BLOCKED),
        (BadResponse("not the envelope"), ErrorKind.BAD_RESPONSE),
        (Unavailable("503"), ErrorKind.UNAVAILABLE),
        (CircuitOpen("open", retry_in_s=5), ErrorKind.UNAVAILABLE),
        (Rejected("errorCode 5"), ErrorKind.UNAVAILABLE),
    ],
)
def test_every_bakong_error_is_an_error_kind_and_an_error_outcome(
    error: Exception, kind: ErrorKind
) -> None:
    assert error_kind(error) is kind  # type: ignore[arg-type]
    outcome = outcome_of(error)  # type: ignore[arg-type]
    assert outcome.value == kind.value
    assert outcome not in {AttemptOutcome.PAID, AttemptOutcome.NOT_FOUND}


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (NotFound(), AttemptOutcome.NOT_FOUND),
        (Failed(), AttemptOutcome.FAILED),
        (StaticQr(), AttemptOutcome.STATIC_QR),
        (Paid(_transaction()), AttemptOutcome.PAID),
    ],
)
def test_business_answers_map_to_their_outcomes(answer: object, outcome: AttemptOutcome) -> None:
    assert outcome_of(answer) is outcome  # type: ignore[arg-type]


def test_a_transaction_becomes_evidence_exactly() -> None:
    evidence = evidence_of(_transaction(hash=HASH.upper(), amount=Decimal("0.01")))
    assert evidence.bakong_hash == HASH  # Bakong's case does not make a second hash
    assert (evidence.amount, evidence.currency) == (Decimal("0.01"), "USD")
    assert (evidence.to_account, evidence.paid_ms) == ("shop@devb", 1_586_852_120_700)


@pytest.mark.parametrize("changes", [{"hash": "abc"}, {"to_account_id": " "}, {"currency": ""}])
def test_a_transaction_that_cannot_be_evidence_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(OrderError):
        evidence_of(_transaction(**changes))


@pytest.mark.parametrize(
    ("changes", "paid_ms", "paid_time"),
    [
        ({}, 1_586_852_120_700, PaidTime.CREATED),
        ({"created_ms": None}, 1_586_852_123_544, PaidTime.ACKNOWLEDGED),
        ({"created_ms": None, "acknowledged_ms": None}, 1_586_852_125_000, PaidTime.SEEN),
    ],
)
def test_the_paid_time_falls_back_to_when_bakong_acknowledged_then_saw_it_and_says_so(
    changes: dict[str, object], paid_ms: int, paid_time: PaidTime
) -> None:
    evidence = evidence_of(_transaction(**changes))
    assert (evidence.paid_ms, evidence.paid_time) == (paid_ms, paid_time)


def test_an_unstated_receiving_account_is_recorded_as_absent() -> None:
    evidence = evidence_of(_transaction(to_account_id=None, from_account_id=None))
    assert (evidence.to_account, evidence.from_account) == (None, None)


def test_answers_are_described_for_the_attempt_record() -> None:
    error = Unauthorized("token refused", endpoint="check_transaction_by_md5_list", http_status=401)
    assert describe_answer(error) == "token refused (check_transaction_by_md5_list, HTTP 401)"
    assert describe_answer(Paid(_transaction())) == f"hash {HASH[:8]}"
    assert describe_answer(NotFound()) is None


def test_worker_ids_are_unique_and_valid_audit_actors() -> None:
    ids = {new_worker_id() for _ in range(50)}
    assert len(ids) == 50
    for worker_id in ids:
        host, pid, suffix = worker_id.split(":")
        assert host
        assert pid.isdigit()
        assert len(suffix) == 6
        assert validate_actor(f"worker:{worker_id}")


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def test_a_cycle_report_becomes_metrics() -> None:
    target = CheckTarget(1, 1, "a" * 32, 0, 10_000, None, 0, 15_000, 15_000)
    completed = CompletionResult(
        1, Action.COMPLETE, OrderStatus.PENDING, OrderStatus.COMPLETED, None, 1
    )
    report = CycleReport(
        now_ms=20_000,
        batch_sizes=(50, 3),
        records=(
            CheckRecord(
                target,
                20_000,
                AttemptOutcome.PAID,
                None,
                5,
                _transaction(created_ms=17_000),
                completed,
            ),
            CheckRecord(target, 20_000, AttemptOutcome.RATE_LIMITED, "429", 5),
            CheckRecord(target, 20_000, AttemptOutcome.NOT_FOUND, None, 5, order_expired=True),
        ),
    )
    before = {
        "paid": _sample("khqrpay_verifier_checks_total", {"outcome": "paid"}),
        "limited": _sample("khqrpay_verifier_errors_total", {"type": "rate_limited"}),
        "latency": _sample("khqrpay_detection_latency_seconds_sum"),
        "batches": _sample("khqrpay_verifier_batch_size_count"),
        "expired": _sample("khqrpay_orders_expired_total"),
        "completed": _sample("khqrpay_verifier_completions_total", {"result": "COMPLETE"}),
    }
    observe(report)
    assert _sample("khqrpay_verifier_checks_total", {"outcome": "paid"}) == before["paid"] + 1
    assert (
        _sample("khqrpay_verifier_errors_total", {"type": "rate_limited"}) == before["limited"] + 1
    )
    assert _sample("khqrpay_detection_latency_seconds_sum") == before["latency"] + 3.0
    assert _sample("khqrpay_verifier_batch_size_count") == before["batches"] + 2
    assert _sample("khqrpay_orders_expired_total") == before["expired"] + 1
    assert (
        _sample("khqrpay_verifier_completions_total", {"result": "COMPLETE"})
        == before["completed"] + 1
    )
    assert _sample("khqrpay_worker_bakong_paused") == 0
    observe(CycleReport(now_ms=30_000, paused=True))
    assert _sample("khqrpay_worker_bakong_paused") == 1


def test_the_budget_a_cycle_planned_with_becomes_metrics() -> None:
    budget = CallBudget(calls_per_min=60, staff_reserved=6)
    deferred_before = _sample("khqrpay_verifier_deferred_total")
    refused = BudgetUse(at_ms=30_000, budget=budget, used=42, list_refused_until_ms=90_000)
    observe(CycleReport(now_ms=30_000, budget=refused, deferred=7))
    assert _sample("khqrpay_bakong_budget_calls_per_minute") == 60
    assert _sample("khqrpay_bakong_budget_calls_used") == 42
    assert _sample("khqrpay_bakong_check_mode", {"mode": "single"}) == 1
    assert _sample("khqrpay_bakong_check_mode", {"mode": "list"}) == 0
    assert _sample("khqrpay_verifier_deferred_total") == deferred_before + 7
    listed = BudgetUse(at_ms=100_000, budget=budget, used=1, list_refused_until_ms=90_000)
    assert (listed.single_checks, listed.per_call) == (False, 50)
    observe(CycleReport(now_ms=100_000, budget=listed))
    assert _sample("khqrpay_bakong_check_mode", {"mode": "single"}) == 0
    assert _sample("khqrpay_bakong_check_mode", {"mode": "list"}) == 1
