"""`khqrpay orders verify|check|mark-paid ID`: the staff actions, each printing JSON.

`register(app)` adds them to the `orders` command group.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from khqrpay.cli.common import amount, iso, open_database, print_json
from khqrpay.clock import SystemClock
from khqrpay.orders.model import Evidence, VerificationAttempt, validate_actor

if TYPE_CHECKING:
    from khqrpay.bakong import Transaction
    from khqrpay.db import Database
    from khqrpay.services.completion import CompletionResult
    from khqrpay.services.manual import (
        ManualActions,
        MarkPaidResult,
        PaymentStatusReport,
        QrStatus,
        VerifyResult,
    )
    from khqrpay.services.verification import CheckRecord
    from khqrpay.settings import Settings

_T = TypeVar("_T")

OrderId = Annotated[int, typer.Argument(min=1, help="The order's id.")]
Staff = Annotated[
    str | None,
    typer.Option(help="Who acts, for the audit trail (recorded as staff:NAME; default: cli)."),
]


def _actor(staff: str | None) -> str:
    return validate_actor("cli" if staff is None else f"staff:{staff.strip()}")


@asynccontextmanager
async def _manual_actions(database: Database, settings: Settings) -> AsyncIterator[ManualActions]:
    # The HTTP client and the verifier: imported when a staff action runs.
    from khqrpay.bakong import BakongClient
    from khqrpay.services.manual import ManualActions
    from khqrpay.services.verification import Verifier
    from khqrpay.worker import new_worker_id

    clock = SystemClock()
    async with BakongClient(settings=settings, clock=clock) as client:
        verifier = Verifier(
            database=database,
            client=client,
            settings=settings,
            clock=clock,
            worker_id=new_worker_id(),
        )
        yield ManualActions(database=database, client=client, verifier=verifier, clock=clock)


def _run(action: Callable[[ManualActions], Awaitable[_T]]) -> _T:
    async def main(database: Database, settings: Settings) -> _T:
        async with _manual_actions(database, settings) as actions:
            return await action(actions)

    with open_database() as (database, settings):
        return asyncio.run(main(database, settings))


def verify(order_id: OrderId, staff: Staff = None) -> None:
    """Verify Instantly: check every unexpired QR of the order now; complete it if paid."""
    actor = _actor(staff)
    print_json(verify_json(_run(lambda actions: actions.verify_instantly(order_id, actor=actor))))


def check(order_id: OrderId) -> None:
    """Check Payment Status: what Bakong says now for each QR, and the recent attempts.
    Changes nothing."""
    print_json(status_json(_run(lambda actions: actions.check_status(order_id))))


def mark_paid(
    order_id: OrderId,
    reason: Annotated[str, typer.Option(help="Why staff mark the order paid (required).")],
    hash_: Annotated[
        str | None,
        typer.Option(
            "--hash",
            help="The Bakong hash (64 hex) or short hash (8 hex), checked with Bakong first.",
        ),
    ] = None,
    staff: Staff = None,
) -> None:
    """Mark as Paid (staff override)."""
    actor = _actor(staff)
    result = _run(
        lambda actions: actions.mark_paid(order_id, reason=reason, bakong_hash=hash_, actor=actor)
    )
    print_json(mark_paid_json(result))


def register(app: typer.Typer) -> None:
    """Add `verify`, `check` and `mark-paid` to the `orders` group."""
    app.command("verify")(verify)
    app.command("check")(check)
    app.command("mark-paid")(mark_paid)


# JSON views ----------------------------------------------------------------------------------


def _transaction_json(transaction: Transaction) -> dict[str, object]:
    return {
        "hash": transaction.hash,
        "short_hash": transaction.short_hash,
        "amount": str(transaction.amount),
        "currency": transaction.currency,
        "from_account": transaction.from_account_id,
        "to_account": transaction.to_account_id,
        "paid_at": iso(transaction.created_ms),
    }


def _completion_json(completion: CompletionResult | None) -> dict[str, object] | None:
    if completion is None:
        return None
    return {
        "action": completion.action.value,
        "previous_status": completion.previous_status.value,
        "status": completion.status.value,
        "reason": completion.reason,
    }


def _check_json(record: CheckRecord) -> dict[str, object]:
    return {
        "payment_id": record.target.payment_id,
        "md5": record.target.md5,
        "outcome": record.outcome.value,
        "detail": record.detail,
        "transaction": None
        if record.transaction is None
        else _transaction_json(record.transaction),
        "completion": _completion_json(record.completion),
        "next_check_at": iso(record.next_check_ms),
        "qr_expired": record.payment_expired,
    }


def verify_json(result: VerifyResult) -> dict[str, object]:
    return {
        "order_id": result.order_id,
        "previous_status": result.previous_status.value,
        "status": result.status.value,
        "checked": [_check_json(record) for record in result.checks],
    }


def _qr_status_json(qr: QrStatus) -> dict[str, object]:
    from khqrpay.bakong import BakongError, Paid

    answer = qr.answer
    return {
        "payment_id": qr.payment.id,
        "md5": qr.payment.md5,
        "qr_status": qr.payment.status.value,
        "amount": amount(qr.payment.amount),
        "currency": qr.payment.amount.currency.value,
        "expires_at": iso(qr.payment.expires_ms),
        "bakong": qr.outcome.value,
        "error": isinstance(answer, BakongError),
        "detail": qr.detail,
        "transaction": _transaction_json(answer.transaction) if isinstance(answer, Paid) else None,
    }


def _attempt_json(attempt: VerificationAttempt) -> dict[str, object]:
    return {
        "payment_id": attempt.payment_id,
        "at": iso(attempt.at_ms),
        "source": attempt.source.value,
        "outcome": attempt.outcome.value,
        "latency_ms": attempt.latency_ms,
        "detail": attempt.detail,
    }


def status_json(report: PaymentStatusReport) -> dict[str, object]:
    return {
        "order_id": report.order.id,
        "status": report.order.status.value,
        "qrs": [_qr_status_json(qr) for qr in report.qrs],
        "recent_attempts": [_attempt_json(attempt) for attempt in report.recent_attempts],
    }


def _evidence_json(evidence: Evidence | None) -> dict[str, object] | None:
    if evidence is None:
        return None
    return {
        "bakong_hash": evidence.bakong_hash,
        "short_hash": evidence.short_hash,
        "amount": str(evidence.amount),
        "currency": evidence.currency,
        "to_account": evidence.to_account,
        "paid_at": iso(evidence.paid_ms),
    }


def mark_paid_json(result: MarkPaidResult) -> dict[str, object]:
    completion = result.completion
    return {
        "order_id": completion.order_id,
        "action": completion.action.value,
        "previous_status": completion.previous_status.value,
        "status": completion.status.value,
        "reason": completion.reason,
        "evidence": _evidence_json(result.evidence),
    }
