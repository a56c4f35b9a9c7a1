"""The owner's decisions on an order: cancel a pending order, settle a review (accept the payment
or record its refund), clear a refund flag. Each takes a reason for the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from khqrpay.orders.model import MAX_REFUND_REFERENCE_LENGTH, OrderError
from khqrpay.orders.model import StaffAction as Resolution
from khqrpay.services.schemas import StaffActionView
from khqrpay.services.staff import (
    StaffActionResult,
    cancel_order,
    clear_refund_flag,
    resolve_review,
)
from khqrpay.web.admin.pages import Context, Owner, Reason, act
from khqrpay.web.i18n import _

router = APIRouter()
Reference = Annotated[str, Form(max_length=MAX_REFUND_REFERENCE_LENGTH)]


async def _decide(
    request: Request, order_id: int, action: Callable[[], StaffActionResult], message: str
) -> Response:
    return await act(
        request,
        action,
        back=f"/admin/orders/{order_id}",
        message=message,
        refusals=(OrderError,),
        result=StaffActionView.of,
    )


@router.post("/admin/orders/{order_id}/cancel")
async def cancel(
    request: Request, context: Context, user: Owner, order_id: int, reason: Reason = ""
) -> Response:
    app = context.app
    return await _decide(
        request,
        order_id,
        lambda: cancel_order(
            app.database, order_id, actor=user.actor, reason=reason, clock=app.clock
        ),
        _("The order is cancelled."),
    )


@router.post("/admin/orders/{order_id}/resolve")
async def resolve(
    *,
    request: Request,
    context: Context,
    user: Owner,
    order_id: int,
    decision: Annotated[Literal["accept", "refund"], Form()],
    reason: Reason = "",
    reference: Reference = "",
) -> Response:
    """Settle a NEEDS_REVIEW order: keep the money (COMPLETED) or record its refund (REFUNDED)."""
    app = context.app
    accept = decision == "accept"
    return await _decide(
        request,
        order_id,
        lambda: resolve_review(
            app.database,
            order_id,
            resolution=Resolution.ACCEPT_PAYMENT if accept else Resolution.REFUND,
            refund_reference=None if accept else reference,
            actor=user.actor,
            reason=reason,
            clock=app.clock,
        ),
        _("Payment accepted: the order is COMPLETED.")
        if accept
        else _("Refund recorded: the order is REFUNDED."),
    )


@router.post("/admin/orders/{order_id}/clear-refund-flag")
async def clear_flag(
    *,
    request: Request,
    context: Context,
    user: Owner,
    order_id: int,
    reason: Reason = "",
    reference: Reference = "",
) -> Response:
    """The money the refund flag was about went back to the customer: clear the flag."""
    app = context.app
    return await _decide(
        request,
        order_id,
        lambda: clear_refund_flag(
            app.database,
            order_id,
            reference=reference,
            actor=user.actor,
            reason=reason,
            clock=app.clock,
        ),
        _("Refund recorded: the refund flag is cleared."),
    )
