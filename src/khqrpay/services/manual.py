"""Actions on one order: Verify Instantly, Check Payment Status and Mark as Paid (staff), and
watching an order (a customer on the payment or order page, or pressing "I have paid").

Verify Instantly uses the one check → apply path (`PaymentChecker`); Mark as Paid checks a given
hash with Bakong before recording anything. Both complete an order only through the completion
function, and neither holds a transaction open across a Bakong call. Check Payment Status writes
nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from functools import partial

from khqrpay.bakong.budget import calling_as
from khqrpay.bakong.errors import BakongError, OverBudget
from khqrpay.bakong.outcomes import CheckResult, Paid
from khqrpay.bakong.port import BakongPort
from khqrpay.clock import Clock
from khqrpay.db import Database
from khqrpay.hashes import FULL_HASH, SHORT_HASH
from khqrpay.orders.budget import CallPriority
from khqrpay.orders.model import (
    Action,
    AttemptOutcome,
    Evidence,
    EvidenceSource,
    KhqrPayment,
    Order,
    OrderError,
    OrderStatus,
    PaymentStatus,
    VerificationAttempt,
    find_mismatch,
    validate_actor,
    validate_order_id,
    validate_reason,
)
from khqrpay.orders.schedule import SchedulePolicy
from khqrpay.services.bakong_answers import (
    describe_answer,
    evidence_of,
    missing_from_list,
    outcome_of,
)
from khqrpay.services.checking import CheckRecord, CheckTarget, PaymentChecker, ask_hedged
from khqrpay.services.completion import CompletionResult, record_payment

RECENT_ATTEMPTS = 20


class ActionRefused(OrderError):
    """A staff action refused before anything changed; the message says why."""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Verify Instantly: each unexpired QR checked now, and the order's status before and after.
    `deferred`: QRs the request budget had no call for now (the verifier checks them, the
    watched ones first)."""

    order_id: int
    previous_status: OrderStatus
    status: OrderStatus
    checks: tuple[CheckRecord, ...]
    deferred: int = 0


@dataclass(frozen=True, slots=True)
class QrStatus:
    """What Bakong says now about one QR of the order (its transaction when paid)."""

    payment: KhqrPayment
    outcome: AttemptOutcome
    detail: str | None
    answer: CheckResult | BakongError


@dataclass(frozen=True, slots=True)
class PaymentStatusReport:
    order: Order
    qrs: tuple[QrStatus, ...]
    recent_attempts: tuple[VerificationAttempt, ...]


@dataclass(frozen=True, slots=True)
class MarkPaidResult:
    completion: CompletionResult
    # The Bakong payment staff named, as Bakong confirmed it; None for a mark without a hash.
    evidence: Evidence | None


class ManualActions:
    """The staff actions; `checker` gives Verify Instantly the one check → apply path."""

    def __init__(
        self, *, database: Database, client: BakongPort, checker: PaymentChecker, clock: Clock
    ) -> None:
        self._database = database
        self._client = client
        self._checker = checker
        self._clock = clock

    async def verify_instantly(self, order_id: int, *, actor: str) -> VerifyResult:
        """Check every unexpired QR of the order now; complete it if one is paid."""
        validate_actor(actor)
        validate_order_id(order_id)
        before, payments = await asyncio.to_thread(self._order_and_payments, order_id)
        pending = [CheckTarget.of(p) for p in payments if p.status is PaymentStatus.PENDING]
        with calling_as(priority_of(actor)):
            run = await self._checker.check_and_apply(
                pending, source=EvidenceSource.VERIFY_INSTANTLY, actor=actor
            )
        after, _ = await asyncio.to_thread(self._order_and_payments, order_id)
        return VerifyResult(order_id, before.status, after.status, run.records, len(run.deferred))

    async def check_status(self, order_id: int) -> PaymentStatusReport:
        """What Bakong says now about each QR of the order, and the recent attempts. Read-only:
        a paid answer is reported, not recorded (that is Verify Instantly's job)."""
        validate_order_id(order_id)
        order, payments, attempts = await asyncio.to_thread(self._recent_attempts, order_id)
        answers: dict[str, CheckResult | BakongError] = {}
        if payments:
            with calling_as(CallPriority.STAFF):
                answers, _ = await ask_hedged(
                    partial(self._answers, [p.md5 for p in payments]),
                    after_s=self._checker.hedge_after_s,
                    refused=lambda asked: any(isinstance(a, OverBudget) for a in asked.values()),
                )
        qrs = []
        for payment in payments:
            answer = answers.get(payment.md5.lower()) or missing_from_list(payment.md5)
            qrs.append(QrStatus(payment, outcome_of(answer), describe_answer(answer), answer))
        return PaymentStatusReport(order, tuple(qrs), tuple(attempts))

    async def _answers(self, md5s: list[str]) -> dict[str, CheckResult | BakongError]:
        """Bakong's answer for each md5 (lower case); a failed call is every md5's answer."""
        try:
            return await self._client.check_md5_list(md5s)
        except BakongError as error:
            return {md5.lower(): error for md5 in md5s}

    async def mark_paid(
        self, order_id: int, *, reason: str, bakong_hash: str | None, actor: str
    ) -> MarkPaidResult:
        """Staff override. With a hash (64 hex) or short hash (its first 8 hex; the amount and
        currency are the order's), Bakong must confirm a matching payment first, or nothing
        changes. Without one, the order completes with no evidence (and is flagged
        `paid_manually_without_hash`)."""
        validate_actor(actor)
        validate_order_id(order_id)
        if validate_reason(reason, required=False) is None:
            raise ActionRefused("Mark as Paid needs a reason")
        evidence = None
        if bakong_hash is not None and bakong_hash.strip():
            evidence = await self._confirmed_evidence(order_id, bakong_hash.strip().lower())
        result = await asyncio.to_thread(
            self._record_mark_paid, order_id, evidence=evidence, reason=reason, actor=actor
        )
        if result.action is Action.REFUSED:
            raise ActionRefused(result.reason or "Mark as Paid was refused")
        return MarkPaidResult(result, evidence)

    async def _confirmed_evidence(self, order_id: int, given: str) -> Evidence:
        if not (FULL_HASH.fullmatch(given) or SHORT_HASH.fullmatch(given)):
            raise ActionRefused(
                "a Bakong hash is 64 hexadecimal characters, or its first 8 (the short hash)"
            )
        order, payments = await asyncio.to_thread(self._order_and_payments, order_id)
        accounts = frozenset(p.to_account for p in payments)
        try:
            with calling_as(CallPriority.STAFF):
                if FULL_HASH.fullmatch(given):
                    answer = await self._client.check_hash(given)
                else:
                    answer = await self._client.check_short_hash(
                        given, order.total.amount, order.currency
                    )
        except BakongError as error:
            raise ActionRefused(f"could not check {given[:8]} with Bakong now: {error}") from error
        if not isinstance(answer, Paid):
            raise ActionRefused(
                f"Bakong has no payment {given[:8]} for {order.total} "
                f"({outcome_of(answer).value}); nothing was changed"
            )
        if not answer.transaction.hash.lower().startswith(given):
            raise ActionRefused(f"Bakong answered another transaction than {given[:8]}")
        try:
            evidence = evidence_of(answer.transaction)
        except OrderError as exc:
            raise ActionRefused(f"Bakong's transaction {given[:8]} is not usable: {exc}") from exc
        mismatch = find_mismatch(evidence, order.total, accounts, qr_created_ms=order.created_ms)
        if mismatch is not None:
            raise ActionRefused(
                f"Bakong payment {evidence.short_hash} is not order {order_id}'s payment: "
                f"{mismatch}; nothing was changed"
            )
        return evidence

    # The database work of the actions, run in a thread so that an async caller (the worker, the
    # web app) keeps serving while a query or a lock wait is in progress.

    def _order_and_payments(self, order_id: int) -> tuple[Order, list[KhqrPayment]]:
        with self._database.read() as uow:
            return uow.orders.get(order_id), uow.payments.for_order(order_id)

    def _recent_attempts(
        self, order_id: int
    ) -> tuple[Order, list[KhqrPayment], list[VerificationAttempt]]:
        with self._database.read() as uow:
            order = uow.orders.get(order_id)
            payments = uow.payments.for_order(order_id)
            attempts = sorted(
                (a for p in payments for a in uow.attempts.recent(p.id)),
                key=lambda attempt: attempt.at_ms,
                reverse=True,
            )[:RECENT_ATTEMPTS]
        return order, payments, attempts

    def _record_mark_paid(
        self, order_id: int, *, evidence: Evidence | None, reason: str, actor: str
    ) -> CompletionResult:
        with self._database.write() as uow:
            return record_payment(
                uow,
                order_id=order_id,
                evidence=evidence,
                source=EvidenceSource.MARK_PAID,
                actor=actor,
                now_ms=self._clock.now_ms(),
                reason=reason,
            )


def priority_of(actor: str) -> CallPriority:
    """Whose share of the request budget an action by `actor` takes: a customer's press the
    smallest, staff (and the CLI) the whole of it, the shop's software (`api:`) the verifier's."""
    if actor == "customer":
        return CallPriority.CUSTOMER
    if actor == "cli" or actor.startswith("staff:"):
        return CallPriority.STAFF
    return CallPriority.VERIFIER


def watch_order(database: Database, order_id: int, *, policy: SchedulePolicy, clock: Clock) -> int:
    """A customer is watching the order: its pending QRs become hot for the hot window and their
    next check is pulled forward. How many QRs were made hot."""
    validate_order_id(order_id)
    now_ms = clock.now_ms()
    watched = 0
    with database.write() as uow:
        uow.orders.get(order_id)  # an unknown order is an error, not "nothing to watch"
        for payment in uow.payments.for_order(order_id):
            if payment.status is not PaymentStatus.PENDING or payment.next_check_ms is None:
                continue
            watch = policy.watch(
                created_ms=payment.created_ms,
                now_ms=now_ms,
                last_checked_ms=payment.last_checked_ms,
                next_check_ms=payment.next_check_ms,
                earliest_check_ms=payment.earliest_check_ms or payment.next_check_ms,
            )
            if uow.payments.mark_watched(payment.id, watch):
                watched += 1
    return watched
