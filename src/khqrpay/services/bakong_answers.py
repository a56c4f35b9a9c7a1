"""Bakong's answers in the engine's terms: the schedule's error kinds, the attempt outcomes, the
evidence the completion function records, and a short description for logs and staff."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from khqrpay.bakong.errors import BadResponse, BakongError, Blocked, RateLimited, Unauthorized
from khqrpay.bakong.outcomes import CheckResult, Failed, NotFound, Paid, StaticQr, Transaction
from khqrpay.logging import get_logger
from khqrpay.orders.model import AttemptOutcome, Evidence, OrderError, PaidTime
from khqrpay.orders.schedule import ErrorKind

if TYPE_CHECKING:
    from khqrpay.services.checking import CheckedQr

Answer = CheckResult | BakongError

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
    for a transaction that cannot be evidence (such an answer is treated as a bad response).

    What Bakong leaves out is recorded as absent: no receiving account stays None (the md5 of
    our QR ties the payment to it), and without a creation time the paid time is Bakong's
    acknowledgement, else when we received the answer, and `paid_time` says which.
    """
    paid_ms, paid_time = next(
        (moment, source)
        for moment, source in (
            (transaction.created_ms, PaidTime.CREATED),
            (transaction.acknowledged_ms, PaidTime.ACKNOWLEDGED),
            (transaction.received_ms, PaidTime.SEEN),
        )
        if moment is not None
    )
    return Evidence(
        bakong_hash=transaction.hash.strip().lower(),
        from_account=transaction.from_account_id,
        to_account=transaction.to_account_id,
        amount=transaction.amount,
        currency=transaction.currency,
        paid_ms=paid_ms,
        paid_time=paid_time,
    )


def describe_answer(answer: Answer) -> str | None:
    if isinstance(answer, BakongError):
        # BakongError's text names the endpoint and status, never the token or a body.
        return str(answer)[:500]
    if isinstance(answer, Paid):
        return f"hash {answer.transaction.short_hash}"
    return None


def missing_from_list(md5: str) -> BadResponse:
    """An md5 the list answer left out: a bad answer, never a NOT_FOUND (a partial answer on the
    final check must not expire a paid QR)."""
    return BadResponse(f"the md5 list answer left out {md5[:8]}")


def usable(item: CheckedQr) -> CheckedQr:
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
