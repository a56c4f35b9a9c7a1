"""Check QRs with Bakong and apply the answers: the one check → apply path.

Stateless and claim-free: given QRs, ask Bakong (md5-list calls, outside any transaction), then
apply the answers of a call in one transaction. Paid → the completion function, all of them in one
call (set-based statements); if that fails, each payment in a savepoint of its own (one that fails
rolls back alone). Not paid → the next check of the schedule (set-based statements); after the
final check the QR expires, and an order left without a pending QR expires too. An error → back
off per its kind; an error never completes or expires anything. Unauthorized raises an alert
(error log + `bakong.unauthorized` outbox event). Every attempt is recorded and logged.

The verifier loop (leased claims), Verify Instantly, and later the web app all call it. What is
not its own (leases, pausing Bakong calls, cadence) belongs to the caller: a run reports until
when Bakong asked not to be called (`CheckRun.pause_until_ms`) and the caller decides.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from khqrpay.bakong.errors import BakongError, CircuitOpen, OverBudget, RateLimited, Unauthorized
from khqrpay.bakong.outcomes import Paid, Transaction
from khqrpay.bakong.port import BakongPort
from khqrpay.clock import Clock
from khqrpay.db import Database, UnitOfWork
from khqrpay.db.retry import TRANSACTION_ATTEMPTS, run_retried
from khqrpay.logging import get_logger
from khqrpay.orders.events import BakongUnauthorized
from khqrpay.orders.model import (
    Action,
    AttemptOutcome,
    EvidenceSource,
    KhqrPayment,
    VerificationAttempt,
    validate_actor,
)
from khqrpay.orders.schedule import MD5_LIST_LIMIT, NextCheck, SchedulePolicy, rides_along
from khqrpay.services.bakong_answers import (
    Answer,
    describe_answer,
    error_kind,
    evidence_of,
    missing_from_list,
    outcome_of,
    usable,
)
from khqrpay.services.completion import (
    CompletionResult,
    HashRecordedMeanwhile,
    ReportedPayment,
    record_payment,
    record_payments,
)
from khqrpay.services.expiry import expire_order_if_unpaid
from khqrpay.services.transitions import ConcurrentChange
from khqrpay.settings import Settings

_log = get_logger(__name__)
# How long each check round is kept (the staff dashboard shows the last hour and last day).
ROUNDS_KEPT_MS = 48 * 3600 * 1000
Answers = TypeVar("Answers")


async def ask_hedged(
    ask: Callable[[], Awaitable[Answers]],
    *,
    after_s: float | None,
    refused: Callable[[Answers], bool],
) -> tuple[Answers, bool]:
    """`ask()`'s answers, and whether Bakong was asked twice: when the first call has not
    answered after `after_s` (None: never ask twice), a second goes out (Bakong's check is a
    read, safe to repeat) and the first answer wins, the other call cancelled. A second answer
    `refused` (the request budget had no call for it) does not win: the first is awaited."""
    if after_s is None:
        return await ask(), False
    calls = [asyncio.ensure_future(ask())]
    try:
        done, _ = await asyncio.wait(calls, timeout=after_s)
        if done:
            return calls[0].result(), False
        _log.info("bakong slow to answer: asked again", after_s=after_s)
        calls.append(asyncio.ensure_future(ask()))
        done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        answers = calls[0].result() if calls[0] in done else calls[1].result()
        if calls[0] not in done and refused(answers):
            answers = await calls[0]
        return answers, True
    finally:
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)


def refused_by_budget(answers: Sequence[CheckedQr] | None) -> bool:
    """Whether the request budget had no call for these answers (None: abandoned)."""
    return answers is not None and any(isinstance(item.answer, OverBudget) for item in answers)


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
class CheckedQr:
    """Bakong's answer for one QR, before it is applied."""

    target: CheckTarget
    answer: Answer
    latency_ms: int
    # Which Bakong call of its round answered it (one md5-list call per batch).
    call: int = 0


@dataclass(frozen=True, slots=True)
class CheckRun:
    """The records of one check → apply run, and until when Bakong should not be called
    (rate limited, circuit open, token refused); 0 when nothing asked for a pause. `deferred`:
    the QRs the request budget had no call for (nothing was asked or recorded for them)."""

    records: tuple[CheckRecord, ...]
    pause_until_ms: int = 0
    deferred: tuple[CheckTarget, ...] = ()


class PaymentChecker:
    """Asks Bakong about QRs and applies the answers. Holds no state between calls."""

    def __init__(
        self,
        *,
        database: Database,
        bakong: BakongPort,
        policy: SchedulePolicy,
        clock: Clock,
        attempts_kept: int,
        unauthorized_pause_ms: int,
        hedge_after_s: float | None = None,
    ) -> None:
        self._database = database
        self._bakong = bakong
        self._policy = policy
        self._clock = clock
        self._attempts_kept = attempts_kept
        self._unauthorized_pause_ms = unauthorized_pause_ms
        self._hedge_after_s = hedge_after_s

    @classmethod
    def configured(
        cls, database: Database, bakong: BakongPort, settings: Settings, clock: Clock
    ) -> PaymentChecker:
        """The checker with the deployment's schedule and limits."""
        return cls(
            database=database,
            bakong=bakong,
            policy=settings.schedule_policy(),
            clock=clock,
            attempts_kept=settings.attempts_kept_per_payment,
            unauthorized_pause_ms=round(settings.worker_unauthorized_pause_s * 1000),
            hedge_after_s=settings.bakong_hedge_after_s or None,
        )

    @property
    def policy(self) -> SchedulePolicy:
        return self._policy

    @property
    def hedge_after_s(self) -> float | None:
        """After how long a call somebody waits on is asked again (None: never)."""
        return self._hedge_after_s

    async def check_and_apply(
        self, targets: Sequence[CheckTarget], *, source: EvidenceSource, actor: str
    ) -> CheckRun:
        """Check these QRs now and apply the answers (no leases: Verify Instantly). Somebody
        waits for the answer: a call Bakong has not answered after `hedge_after_s` is asked
        again. QRs the request budget has no call for are left to the verifier's schedule
        (`deferred`)."""
        validate_actor(actor)
        batches = [
            tuple(targets[i : i + MD5_LIST_LIMIT]) for i in range(0, len(targets), MD5_LIST_LIMIT)
        ]
        asked = await asyncio.gather(
            *(
                ask_hedged(
                    partial(self._ask, batch, call),
                    after_s=self._hedge_after_s,
                    refused=refused_by_budget,
                )
                for call, batch in enumerate(batches)
            )
        )
        checked = [item for answers, _ in asked for item in answers]
        answered = [item for item in checked if not isinstance(item.answer, OverBudget)]
        run = await self.apply(answered, source=source, actor=actor)
        deferred = tuple(item.target for item in checked if isinstance(item.answer, OverBudget))
        return replace(run, deferred=deferred)

    async def ask(
        self, batch: Sequence[CheckTarget], *, abandon: asyncio.Event | None
    ) -> list[CheckedQr] | None:
        """One md5-list call about these QRs. None if `abandon` was set first (the call is then
        cancelled)."""
        asking = asyncio.ensure_future(self._ask(batch, 0))
        if abandon is not None:
            abandoned = asyncio.ensure_future(abandon.wait())
            waited: set[asyncio.Future[Any]] = {asking, abandoned}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
            abandoned.cancel()
            if not asking.done():
                asking.cancel()
                await asyncio.gather(asking, return_exceptions=True)
                return None
        return await asking

    async def _ask(self, batch: Sequence[CheckTarget], call: int) -> list[CheckedQr]:
        started = time.perf_counter()
        answers: dict[str, Answer]
        try:
            answers = await self._bakong.check_md5_list([target.md5 for target in batch])
        except BakongError as error:
            answers = {target.md5.lower(): error for target in batch}
        latency_ms = round((time.perf_counter() - started) * 1000)
        return [
            CheckedQr(
                target,
                answers.get(target.md5.lower(), missing_from_list(target.md5)),
                latency_ms,
                call,
            )
            for target in batch
        ]

    async def apply(
        self,
        checked: Sequence[CheckedQr],
        *,
        source: EvidenceSource,
        actor: str,
        lease_owner: str | None = None,
    ) -> CheckRun:
        """Apply the answers in one transaction (completions, each in its savepoint, then the
        rest rescheduled and every attempt recorded), then expiries. `lease_owner`: the claims
        to release."""
        application = _Application(
            database=self._database,
            policy=self._policy,
            attempts_kept=self._attempts_kept,
            unauthorized_pause_ms=self._unauthorized_pause_ms,
            source=source,
            actor=actor,
            lease_owner=lease_owner,
            now_ms=self._clock.now_ms(),
        )
        return await asyncio.to_thread(application.run, checked)


@dataclass(slots=True)
class _Application:
    """One `PaymentChecker.apply` call, run in a worker thread."""

    database: Database
    policy: SchedulePolicy
    attempts_kept: int
    unauthorized_pause_ms: int
    source: EvidenceSource
    actor: str
    lease_owner: str | None
    now_ms: int
    pause_until_ms: int = 0

    def run(self, checked: Sequence[CheckedQr]) -> CheckRun:
        items = list(map(usable, checked))
        calls = len({item.call for item in checked})
        completed, scheduled = run_retried(partial(self._apply, items, calls))
        records = (
            *completed,
            *(self._expire_order(r) if r.payment_expired else r for r in scheduled),
        )
        for record in records:
            self._log_attempt(record)
        return CheckRun(records, self.pause_until_ms)

    def _apply(
        self, items: Sequence[CheckedQr], calls: int
    ) -> tuple[list[CheckRecord], list[CheckRecord]]:
        """One transaction for the answers of a call (one commit, one WAL flush): the Paid
        answers through the completion function together (`_record`), then every other QR
        rescheduled, backed off or expired in set-based statements, all attempts and the round
        (its `calls`) recorded, and the alert raised if Bakong refused the token. The records
        of the completions and of the rest."""
        paid = sorted(
            (item for item in items if isinstance(item.answer, Paid)),
            key=lambda item: (item.target.order_id, item.target.payment_id),
        )
        with self.database.write() as uow:
            completed: list[CheckRecord] = []
            rest = [item for item in items if not isinstance(item.answer, Paid)]
            for item, result in zip(paid, self._record(uow, paid), strict=True):
                record = None if result is None else self._completion(item, result)
                if record is None:
                    rest.append(item)
                else:
                    completed.append(record)
            records = self._reschedule(uow, rest)
            if completed:
                uow.payments.count_found_checks(
                    [record.target.payment_id for record in completed], checked_ms=self.now_ms
                )
            uow.attempts.record_batch(
                [
                    VerificationAttempt(
                        payment_id=record.target.payment_id,
                        order_id=record.target.order_id,
                        at_ms=record.at_ms,
                        source=self.source,
                        outcome=record.outcome,
                        latency_ms=record.latency_ms,
                        detail=record.detail,
                    )
                    for record in [*completed, *records]
                ],
                keep=self.attempts_kept,
            )
            if calls:
                uow.attempts.record_round(
                    at_ms=self.now_ms,
                    source=self.source,
                    calls=calls,
                    outcomes=Counter(record.outcome for record in [*completed, *records]),
                    keep_ms=ROUNDS_KEPT_MS,
                )
            refused = next((i.answer for i in rest if isinstance(i.answer, Unauthorized)), None)
            if refused is not None:
                self._alert_unauthorized(uow, refused)
        return completed, records

    def _record(self, uow: UnitOfWork, paid: Sequence[CheckedQr]) -> list[CompletionResult | None]:
        """The Paid answers through the completion function, all in one call (a few statements
        for all of them), in a savepoint; if that fails (a hash recorded meanwhile, a database
        error), one by one, each in a savepoint of its own, so a failing one rolls back alone."""
        if not paid:
            return []
        try:
            with uow.connection.begin_nested():
                return list(
                    record_payments(
                        uow,
                        [
                            ReportedPayment(
                                item.target.order_id,
                                evidence_of(self._transaction(item)),
                                item.target.payment_id,
                            )
                            for item in paid
                        ],
                        source=self.source,
                        actor=self.actor,
                        now_ms=self.now_ms,
                    )
                )
        except (HashRecordedMeanwhile, DBAPIError, ConcurrentChange) as exc:
            _log.warning("recording payments together failed: one by one", error=str(exc))
        # The savepoint's rollback released its locks: orders, then their products, each in id
        # order (as every completion locks them) again up front, so that two transactions
        # completing overlapping batches never deadlock.
        order_ids = [item.target.order_id for item in paid]
        uow.orders.lock_all(order_ids)
        uow.products.lock_for_orders(order_ids)
        return [self._record_one(uow, item) for item in paid]

    @staticmethod
    def _transaction(item: CheckedQr) -> Transaction:
        assert isinstance(item.answer, Paid)
        return item.answer.transaction

    def _record_one(self, uow: UnitOfWork, item: CheckedQr) -> CompletionResult | None:
        """A Paid answer through the completion function, in a savepoint: when it fails only
        its own writes are undone, and None is returned (the QR stays pending and is checked
        again on its schedule)."""
        target = item.target
        evidence = evidence_of(self._transaction(item))
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                with uow.connection.begin_nested():
                    return record_payment(
                        uow,
                        order_id=target.order_id,
                        evidence=evidence,
                        source=self.source,
                        actor=self.actor,
                        now_ms=self.now_ms,
                        payment_id=target.payment_id,
                    )
            except HashRecordedMeanwhile as exc:
                # Run again: it now sees the order holding the hash and locks it up front.
                if attempt < TRANSACTION_ATTEMPTS:
                    continue
                error = str(exc)
            except DBAPIError as exc:
                error = str(exc)
            _log.error("recording a payment failed", payment_id=target.payment_id, error=error)
            return None
        raise AssertionError("unreachable")  # pragma: no cover

    def _completion(self, item: CheckedQr, result: CompletionResult) -> CheckRecord | None:
        """The record of a Paid answer the completion function recorded; None when it refused
        it (the QR stays pending and is checked again on its schedule)."""
        transaction, target = self._transaction(item), item.target
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
            self.now_ms,
            AttemptOutcome.PAID,
            f"hash {transaction.short_hash}: {result.action.value}",
            item.latency_ms,
            transaction=transaction,
            completion=result,
        )

    def _reschedule(self, uow: UnitOfWork, rest: Sequence[CheckedQr]) -> list[CheckRecord]:
        """Every QR not recorded paid moved to its next check (or backed off, or expired after
        its final one) in set-based statements; their records."""
        planned = [(item, *self._next_check(item)) for item in rest]
        expired = uow.payments.record_checks(
            [
                (item.target.payment_id, outcome_of(item.answer), next_check)
                for item, _, next_check in planned
            ],
            checked_ms=self.now_ms,
            lease_owner=self.lease_owner,
        )
        return [
            CheckRecord(
                item.target,
                self.now_ms,
                outcome_of(item.answer),
                describe_answer(item.answer),
                item.latency_ms,
                next_check_ms=next_check_ms,
                payment_expired=item.target.payment_id in expired,
            )
            for item, next_check_ms, _ in planned
        ]

    def _next_check(self, item: CheckedQr) -> tuple[int | None, NextCheck | None]:
        """The QR's next check time and the schedule to write (None: leave it as it is)."""
        target, answer, policy = item.target, item.answer, self.policy
        leased = self.lease_owner is not None
        if leased and rides_along(earliest_check_ms=target.earliest_check_ms, now_ms=self.now_ms):
            # A ride-along in a free place: the schedule stays as it is, whatever the answer.
            return target.next_check_ms, None
        if isinstance(answer, BakongError):
            next_check_ms = self._back_off(target, answer)
            # A retry repeats the failed check: never early. None: the schedule stays as it is.
            if next_check_ms is None:
                return None, None
            return next_check_ms, NextCheck(
                next_check_ms, next_check_ms, target.consecutive_errors + 1
            )
        # An answer, not an error (a Paid that could not be recorded counts as not paid here:
        # it is asked again on schedule). None: that was the final check.
        next_check_ms = policy.next_check_ms(
            created_ms=target.created_ms,
            now_ms=self.now_ms,
            hot_until_ms=target.hot_until_ms,
            window_end_ms=target.expires_ms,
        )
        earliest_check_ms = (
            None
            if next_check_ms is None
            else policy.earliest_check_ms(
                checked_ms=self.now_ms,
                next_check_ms=next_check_ms,
                window_end_ms=target.expires_ms,
            )
        )
        return next_check_ms, NextCheck(next_check_ms, earliest_check_ms, consecutive_errors=0)

    def _back_off(self, target: CheckTarget, error: BakongError) -> int | None:
        """The next check after an error, or None to leave the payment due (token refused: the
        caller pauses every call instead). Errors about Bakong as a whole also ask for a pause."""
        retry_after_s = error.retry_after_s if isinstance(error, RateLimited) else None
        backoff_ms = self.policy.error_backoff_ms(
            error_kind(error),
            consecutive_errors=target.consecutive_errors + 1,
            retry_after_s=retry_after_s,
        )
        if backoff_ms is None:
            return None
        if retry_after_s is not None:
            self._pause_until(self.now_ms + backoff_ms)
        if isinstance(error, CircuitOpen):
            self._pause_until(self.now_ms + round(error.retry_in_s * 1000))
        return self.now_ms + backoff_ms

    def _pause_until(self, until_ms: int) -> None:
        self.pause_until_ms = max(self.pause_until_ms, until_ms)

    def _alert_unauthorized(self, uow: UnitOfWork, error: Unauthorized) -> None:
        """A token problem must be loud: an error log and an outbox event, and no more calls for
        a while (each later probe that is refused alerts again)."""
        self._pause_until(self.now_ms + self.unauthorized_pause_ms)
        _log.error(
            "bakong refused the token: payment checks stopped",
            error=str(error),
            source=self.source.value,
            paused_until_ms=self.pause_until_ms,
            action="renew the Bakong token (KHQRPAY_BAKONG_TOKEN) and restart the worker",
        )
        uow.outbox.add_event(
            BakongUnauthorized(at_ms=self.now_ms, error=str(error), worker=self.actor),
            now_ms=self.now_ms,
        )

    def _expire_order(self, record: CheckRecord) -> CheckRecord:
        def expire() -> bool:
            with self.database.write() as uow:
                return expire_order_if_unpaid(
                    uow, record.target.order_id, actor=self.actor, now_ms=self.now_ms
                )

        return replace(record, order_expired=run_retried(expire))

    def _log_attempt(self, record: CheckRecord) -> None:
        _log.info(
            "payment checked",
            payment_id=record.target.payment_id,
            order_id=record.target.order_id,
            md5=record.target.md5[:8],
            source=self.source.value,
            outcome=record.outcome.value,
            latency_ms=record.latency_ms,
            detail=record.detail,
            action=None if record.completion is None else record.completion.action.value,
            next_check_ms=record.next_check_ms,
            payment_expired=record.payment_expired,
            order_expired=record.order_expired,
        )
