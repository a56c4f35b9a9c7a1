"""The verifier: claim due payments → check them with Bakong → apply each answer.

- Claim: one short write transaction leases the payments that are due (plus those close enough
  to ride along in an md5-list call, `plan_batches`), `FOR UPDATE SKIP LOCKED` on PostgreSQL so
  workers never claim the same rows; on SQLite the write transaction (`BEGIN IMMEDIATE`) excludes
  the other writers. A lease ends by itself, so a worker killed mid-batch loses nothing.
- Check: `check_md5_list`, outside any transaction.
- Apply: Paid → the completion function, one transaction per payment. Not paid → the next check
  of the schedule; after the final check the QR expires, and an order left without a pending QR
  expires too. An error → back off per its kind; an error never completes or expires anything.
  Unauthorized pauses all Bakong calls and raises an alert (error log + `bakong.unauthorized`).
  Every attempt is recorded and logged; leases are released.

`check_and_apply` is the one check → apply path; the worker (leased) and Verify Instantly (not
leased) both use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from khqrpay.bakong import (
    BadResponse,
    BakongClient,
    BakongError,
    Blocked,
    CheckResult,
    CircuitOpen,
    Failed,
    NotFound,
    Paid,
    RateLimited,
    StaticQr,
    Transaction,
    Unauthorized,
)
from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.logging import get_logger
from khqrpay.orders.model import (
    Action,
    AttemptOutcome,
    Evidence,
    EvidenceSource,
    KhqrPayment,
    OrderError,
    VerificationAttempt,
    validate_actor,
)
from khqrpay.orders.schedule import (
    MD5_LIST_LIMIT,
    Candidate,
    ErrorKind,
    NextCheck,
    SchedulePolicy,
    plan_batches,
    rides_along,
)
from khqrpay.services.completion import CompletionResult, HashRecordedMeanwhile, record_payment
from khqrpay.services.expiry import expire_order_if_unpaid
from khqrpay.settings import Settings

BAKONG_UNAUTHORIZED_TOPIC = "bakong.unauthorized"
# A transaction that deadlocked with another (PostgreSQL picks a victim) is simply run again.
APPLY_ATTEMPTS = 3

Answer = CheckResult | BakongError
_T = TypeVar("_T")

_log = get_logger(__name__)


def error_kind(error: BakongError) -> ErrorKind:
    """The schedule's name for a Bakong error (the domain does not import the HTTP client)."""
    if isinstance(error, Unauthorized):
        return ErrorKind.UNAUTHORIZED
    if isinstance(error, RateLimited):
        return ErrorKind.RATE_LIMITED
    if isinstance(error, Blocked):
        return ErrorKind.BLOCKED
    if isinstance(error, BadResponse):
        return ErrorKind.BAD_RESPONSE
    # Unavailable, CircuitOpen, and any answer we cannot use: wait and ask again.
    return ErrorKind.UNAVAILABLE


def outcome_of(answer: Answer) -> AttemptOutcome:
    if isinstance(answer, BakongError):
        return AttemptOutcome(error_kind(answer).value)
    match answer:
        case Paid():
            return AttemptOutcome.PAID
        case NotFound():
            return AttemptOutcome.NOT_FOUND
        case Failed():
            return AttemptOutcome.FAILED
        case StaticQr():
            return AttemptOutcome.STATIC_QR


def evidence_of(transaction: Transaction) -> Evidence:
    """Bakong's transaction as the evidence the completion function records; raises OrderError
    for a transaction that cannot be evidence (such an answer is treated as a bad response)."""
    return Evidence(
        bakong_hash=transaction.hash.strip().lower(),
        from_account=transaction.from_account_id,
        to_account=transaction.to_account_id,
        amount=transaction.amount,
        currency=transaction.currency,
        paid_ms=transaction.created_ms,
    )


@dataclass(frozen=True, slots=True)
class CheckTarget:
    """What checking one QR and applying the answer needs to know about it."""

    payment_id: int
    order_id: int
    md5: str
    created_ms: int
    expires_ms: int
    hot_until_ms: int | None
    consecutive_errors: int
    next_check_ms: int | None
    earliest_check_ms: int | None

    @classmethod
    def of(cls, payment: KhqrPayment) -> CheckTarget:
        return cls(
            payment_id=payment.id,
            order_id=payment.order_id,
            md5=payment.md5,
            created_ms=payment.created_ms,
            expires_ms=payment.expires_ms,
            hot_until_ms=payment.hot_until_ms,
            consecutive_errors=payment.consecutive_errors,
            next_check_ms=payment.next_check_ms,
            earliest_check_ms=payment.earliest_check_ms,
        )


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One check of one QR and what was done with the answer."""

    target: CheckTarget
    at_ms: int
    outcome: AttemptOutcome
    detail: str | None
    latency_ms: int
    transaction: Transaction | None = None
    completion: CompletionResult | None = None
    next_check_ms: int | None = None
    payment_expired: bool = False
    order_expired: bool = False


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one verifier cycle did (the worker turns it into metrics)."""

    now_ms: int
    batch_sizes: tuple[int, ...] = ()
    records: tuple[CheckRecord, ...] = ()
    paused: bool = False
    abandoned: bool = False

    @property
    def claimed(self) -> int:
        return sum(self.batch_sizes)


@dataclass(frozen=True, slots=True)
class _Checked:
    target: CheckTarget
    answer: Answer
    latency_ms: int


def describe_answer(answer: Answer) -> str | None:
    if isinstance(answer, BakongError):
        # BakongError's text names the endpoint and status, never the token or a body.
        return str(answer)[:500]
    if isinstance(answer, Paid):
        return f"hash {answer.transaction.short_hash}"
    return None


class Verifier:
    """Claims, checks and applies; one per process. `worker_id` names its leases and audit."""

    def __init__(
        self,
        *,
        database: Database,
        client: BakongClient,
        settings: Settings,
        clock: Clock,
        worker_id: str,
    ) -> None:
        self._database = database
        self._client = client
        self._clock = clock
        self._policy = SchedulePolicy.from_settings(settings)
        self._worker_id = worker_id
        self._actor = validate_actor(f"worker:{worker_id}")
        self._batch_size = settings.worker_batch_size
        self._lease_ms = round(settings.worker_lease_s * 1000)
        self._unauthorized_pause_ms = round(settings.worker_unauthorized_pause_s * 1000)
        self._attempts_kept = settings.attempts_kept_per_payment
        self._paused_until_ms = 0

    @property
    def actor(self) -> str:
        return self._actor

    @property
    def policy(self) -> SchedulePolicy:
        return self._policy

    @property
    def paused_until_ms(self) -> int:
        """Until when no Bakong call is made (token refused, rate limited, circuit open)."""
        return self._paused_until_ms

    async def run_cycle(self, *, abandon: asyncio.Event | None = None) -> CycleReport:
        """Claim → check → apply once. If `abandon` is set while Bakong is being asked (shutdown),
        the call is cancelled and the batch's leases are released for another worker."""
        now_ms = self._clock.now_ms()
        if now_ms < self._paused_until_ms:
            return CycleReport(now_ms, paused=True)
        batches = await asyncio.to_thread(self._claim, now_ms)
        if not batches:
            return CycleReport(now_ms)
        sizes = tuple(len(batch) for batch in batches)
        checked = await self._ask_bakong(batches, abandon)
        if checked is None:
            await asyncio.to_thread(self._release, [t for batch in batches for t in batch])
            return CycleReport(now_ms, sizes, abandoned=True)
        records = await asyncio.to_thread(
            self._apply, checked, EvidenceSource.VERIFIER, self._actor, True
        )
        return CycleReport(now_ms, sizes, tuple(records))

    async def check_and_apply(
        self, targets: Sequence[CheckTarget], *, source: EvidenceSource, actor: str
    ) -> list[CheckRecord]:
        """Check these QRs now and apply the answers, without leases (Verify Instantly)."""
        validate_actor(actor)
        batches = [
            tuple(targets[i : i + MD5_LIST_LIMIT]) for i in range(0, len(targets), MD5_LIST_LIMIT)
        ]
        checked = await self._ask_bakong(batches, None)
        assert checked is not None  # only an abandon event gives None
        return await asyncio.to_thread(self._apply, checked, source, actor, False)

    # Claim ---------------------------------------------------------------------------------------

    def _claim(self, now_ms: int) -> list[tuple[CheckTarget, ...]]:
        with self._database.write() as uow:
            riders_after_ms = self._policy.ride_along_after_ms
            due = uow.payments.lock_due(
                now_ms=now_ms, limit=self._batch_size, ride_along_after_ms=riders_after_ms
            )
            plan = plan_batches(
                map(_candidate, due), now_ms=now_ms, ride_along_after_ms=riders_after_ms
            )
            chosen = [candidate.payment_id for batch in plan for candidate in batch]
            if chosen:
                uow.payments.lease(chosen, owner=self._worker_id, until_ms=now_ms + self._lease_ms)
        targets = {payment.id: CheckTarget.of(payment) for payment in due}
        return [tuple(targets[c.payment_id] for c in batch) for batch in plan]

    def _release(self, targets: Iterable[CheckTarget]) -> None:
        with self._database.write() as uow:
            uow.payments.release_leases(
                [target.payment_id for target in targets], owner=self._worker_id
            )

    # Check ---------------------------------------------------------------------------------------

    async def _ask_bakong(
        self, batches: Sequence[Sequence[CheckTarget]], abandon: asyncio.Event | None
    ) -> list[_Checked] | None:
        asking = asyncio.ensure_future(asyncio.gather(*(self._ask(b) for b in batches)))
        if abandon is not None:
            abandoned = asyncio.ensure_future(abandon.wait())
            waited: set[asyncio.Future[Any]] = {asking, abandoned}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            abandoned.cancel()
            if not asking.done():
                asking.cancel()
                await asyncio.gather(asking, return_exceptions=True)
                return None
        return [checked for batch in await asking for checked in batch]

    async def _ask(self, batch: Sequence[CheckTarget]) -> list[_Checked]:
        started = time.perf_counter()
        answers: dict[str, Answer]
        try:
            answers = await self._client.check_md5_list([target.md5 for target in batch])
        except BakongError as error:
            answers = {target.md5.lower(): error for target in batch}
        latency_ms = round((time.perf_counter() - started) * 1000)
        missing = BadResponse("the md5 list answer left this md5 out")
        return [
            _Checked(target, answers.get(target.md5.lower(), missing), latency_ms)
            for target in batch
        ]

    # Apply ---------------------------------------------------------------------------------------

    def _apply(
        self, checked: Sequence[_Checked], source: EvidenceSource, actor: str, leased: bool
    ) -> list[CheckRecord]:
        now_ms = self._clock.now_ms()
        completed: list[CheckRecord] = []
        rest: list[_Checked] = []
        for item in map(_usable, checked):
            paid = isinstance(item.answer, Paid)
            record = self._complete(item, source, actor, now_ms) if paid else None
            if record is None:
                rest.append(item)
            else:
                completed.append(record)
        scheduled = _retried(partial(self._schedule, rest, completed, source, leased, now_ms))
        records = [
            *completed,
            *(self._expire_order(r, now_ms) if r.payment_expired else r for r in scheduled),
        ]
        for record in records:
            self._log_attempt(record, source)
        return records

    def _complete(
        self, item: _Checked, source: EvidenceSource, actor: str, now_ms: int
    ) -> CheckRecord | None:
        """A Paid answer through the completion function; None when it could not be recorded
        (then the QR stays pending and is checked again on its schedule)."""
        assert isinstance(item.answer, Paid)
        transaction, target = item.answer.transaction, item.target
        record = partial(self._record, target, evidence_of(transaction), source, actor, now_ms)
        try:
            result = _retried(record)
        except (DBAPIError, HashRecordedMeanwhile) as exc:
            _log.error("recording a payment failed", payment_id=target.payment_id, error=str(exc))
            return None
        if result.action is Action.REFUSED:
            _log.error(
                "bakong payment not recorded",
                payment_id=target.payment_id,
                order_id=target.order_id,
                reason=result.reason,
            )
            return None
        if result.action is Action.CONFLICT:
            # Recorded (the QR is paid, both orders flagged), but people must sort it out.
            _log.error(
                "bakong payment already recorded for another order: both orders flagged",
                payment_id=target.payment_id,
                order_id=target.order_id,
                recorded_order_id=result.other_order_id,
                reason=result.reason,
            )
        return CheckRecord(
            target,
            now_ms,
            AttemptOutcome.PAID,
            f"hash {transaction.short_hash}: {result.action.value}",
            item.latency_ms,
            transaction=transaction,
            completion=result,
        )

    def _record(
        self,
        target: CheckTarget,
        evidence: Evidence,
        source: EvidenceSource,
        actor: str,
        now_ms: int,
    ) -> CompletionResult:
        with self._database.write() as uow:
            return record_payment(
                uow,
                order_id=target.order_id,
                evidence=evidence,
                source=source,
                actor=actor,
                now_ms=now_ms,
                payment_id=target.payment_id,
            )

    def _schedule(
        self,
        rest: Sequence[_Checked],
        completed: Sequence[CheckRecord],
        source: EvidenceSource,
        leased: bool,
        now_ms: int,
    ) -> list[CheckRecord]:
        """One transaction: reschedule, back off or expire every QR not recorded paid, record
        all attempts, and raise the alert if Bakong refused the token."""
        with self._database.write() as uow:
            # In id order, so two transactions touching the same rows never deadlock.
            records = [
                self._reschedule(uow, item, leased, now_ms)
                for item in sorted(rest, key=lambda i: i.target.payment_id)
            ]
            if completed:
                uow.payments.count_found_checks(
                    [record.target.payment_id for record in completed], checked_ms=now_ms
                )
            uow.attempts.record_batch(
                [
                    VerificationAttempt(
                        payment_id=record.target.payment_id,
                        order_id=record.target.order_id,
                        at_ms=record.at_ms,
                        source=source,
                        outcome=record.outcome,
                        latency_ms=record.latency_ms,
                        detail=record.detail,
                    )
                    for record in [*completed, *records]
                ],
                keep=self._attempts_kept,
            )
            refused = next((i.answer for i in rest if isinstance(i.answer, Unauthorized)), None)
            if refused is not None:
                self._alert_unauthorized(uow, refused, source, now_ms)
        return records

    def _reschedule(
        self, uow: UnitOfWork, item: _Checked, leased: bool, now_ms: int
    ) -> CheckRecord:
        target, answer = item.target, item.answer
        next_check_ms: int | None
        next_check: NextCheck | None
        if leased and rides_along(earliest_check_ms=target.earliest_check_ms, now_ms=now_ms):
            # A ride-along in a free place: the schedule stays as it is, whatever the answer.
            next_check_ms, next_check = target.next_check_ms, None
        elif isinstance(answer, BakongError):
            next_check_ms = self._back_off(target, answer, now_ms)
            # A retry repeats the failed check: never early. None: the schedule stays as it is.
            next_check = (
                None
                if next_check_ms is None
                else NextCheck(next_check_ms, next_check_ms, target.consecutive_errors + 1)
            )
        else:
            # An answer, not an error (a Paid that could not be recorded counts as not paid here:
            # it is asked again on schedule). None: that was the final check.
            next_check_ms = self._policy.next_check_ms(
                created_ms=target.created_ms,
                now_ms=now_ms,
                hot_until_ms=target.hot_until_ms,
                window_end_ms=target.expires_ms,
            )
            earliest_check_ms = (
                None
                if next_check_ms is None
                else self._policy.earliest_check_ms(
                    checked_ms=now_ms, next_check_ms=next_check_ms, window_end_ms=target.expires_ms
                )
            )
            next_check = NextCheck(next_check_ms, earliest_check_ms, consecutive_errors=0)
        changed = uow.payments.record_check(
            target.payment_id,
            checked_ms=now_ms,
            outcome=outcome_of(answer),
            next_check=next_check,
            lease_owner=self._worker_id if leased else None,
        )
        return CheckRecord(
            target,
            now_ms,
            outcome_of(answer),
            describe_answer(answer),
            item.latency_ms,
            next_check_ms=next_check_ms,
            payment_expired=changed and next_check is not None and next_check.final,
        )

    def _back_off(self, target: CheckTarget, error: BakongError, now_ms: int) -> int | None:
        """The next check after an error, or None to leave the payment due (token refused: the
        whole worker pauses instead). Errors about Bakong as a whole also pause every call."""
        retry_after_s = error.retry_after_s if isinstance(error, RateLimited) else None
        backoff_ms = self._policy.error_backoff_ms(
            error_kind(error),
            consecutive_errors=target.consecutive_errors + 1,
            retry_after_s=retry_after_s,
        )
        if backoff_ms is None:
            return None
        if retry_after_s is not None:
            self._pause_until(now_ms + backoff_ms)
        if isinstance(error, CircuitOpen):
            self._pause_until(now_ms + round(error.retry_in_s * 1000))
        return now_ms + backoff_ms

    def _pause_until(self, until_ms: int) -> None:
        self._paused_until_ms = max(self._paused_until_ms, until_ms)

    def _alert_unauthorized(
        self, uow: UnitOfWork, error: Unauthorized, source: EvidenceSource, now_ms: int
    ) -> None:
        """A token problem must be loud: an error log and an outbox event, and no more calls for
        a while (each later probe that is refused alerts again)."""
        self._pause_until(now_ms + self._unauthorized_pause_ms)
        _log.error(
            "bakong refused the token: payment checks stopped",
            error=str(error),
            source=source.value,
            paused_until_ms=self._paused_until_ms,
            action="renew the Bakong token (KHQRPAY_BAKONG_TOKEN) and restart the worker",
        )
        uow.outbox.add(
            topic=BAKONG_UNAUTHORIZED_TOPIC,
            order_id=None,
            payload={"at_ms": now_ms, "error": str(error), "worker": self._worker_id},
            now_ms=now_ms,
        )

    def _expire_order(self, record: CheckRecord, now_ms: int) -> CheckRecord:
        def expire() -> bool:
            with self._database.write() as uow:
                return expire_order_if_unpaid(
                    uow, record.target.order_id, actor=self._actor, now_ms=now_ms
                )

        return replace(record, order_expired=_retried(expire))

    def _log_attempt(self, record: CheckRecord, source: EvidenceSource) -> None:
        _log.info(
            "payment checked",
            payment_id=record.target.payment_id,
            order_id=record.target.order_id,
            md5=record.target.md5[:8],
            source=source.value,
            outcome=record.outcome.value,
            latency_ms=record.latency_ms,
            detail=record.detail,
            action=None if record.completion is None else record.completion.action.value,
            next_check_ms=record.next_check_ms,
            payment_expired=record.payment_expired,
            order_expired=record.order_expired,
        )


def _candidate(payment: KhqrPayment) -> Candidate[int]:
    # A claimed payment has an earliest check, and every write sets or clears both together.
    assert payment.next_check_ms is not None
    assert payment.earliest_check_ms is not None
    return Candidate(
        payment.id, payment.next_check_ms, payment.earliest_check_ms, payment.last_checked_ms
    )


def _usable(item: _Checked) -> _Checked:
    """A Paid whose transaction cannot be evidence is a bad response: never completes, never
    expires, asked again after a back-off."""
    if isinstance(item.answer, Paid):
        try:
            evidence_of(item.answer.transaction)
        except OrderError as exc:
            _log.error(
                "bakong transaction unusable", payment_id=item.target.payment_id, reason=str(exc)
            )
            return replace(item, answer=BadResponse(f"unusable transaction: {exc}"))
    return item


# PostgreSQL's deadlock and serialization failures: the victim transaction is simply run again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def _retried(step: Callable[[], _T]) -> _T:
    for attempt in range(1, APPLY_ATTEMPTS + 1):
        try:
            return step()
        except DBAPIError as exc:
            retryable = getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
            if not retryable or attempt == APPLY_ATTEMPTS:
                raise
            reason = type(exc.orig).__name__
        except HashRecordedMeanwhile:
            # Run again, the completion then locks the order that got the hash as well.
            if attempt == APPLY_ATTEMPTS:
                raise
            reason = HashRecordedMeanwhile.__name__
        _log.warning("transaction retried", reason=reason, attempt=attempt)
    raise AssertionError("unreachable")  # pragma: no cover


def pending_payments_by_age(
    database: Database, *, now_ms: int, bands: Sequence[tuple[str, int]]
) -> dict[str, int]:
    """How many QRs are still pending in each age band (see `uow.payments.count_pending_by_age`)."""
    with database.read() as uow:
        return uow.payments.count_pending_by_age(now_ms=now_ms, bands=bands)
