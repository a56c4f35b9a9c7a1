"""Orders for staff: the list (filters, search, pages, CSV), one order's page followed live, and
the three buttons: Verify Instantly, Check Payment Status, Mark as Paid."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import date
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from khqrpay.khqr.image import qr_svg
from khqrpay.orders.model import OrderError, OrderStatus
from khqrpay.services.checkout import bill_number
from khqrpay.services.console import (
    OrderFilters,
    export_orders,
    find_orders,
    order_for_staff,
)
from khqrpay.services.manual import ActionRefused
from khqrpay.services.schemas import MarkPaidView, PaymentStatusView, VerifyView
from khqrpay.web.admin import wording
from khqrpay.web.admin.live import live_region
from khqrpay.web.admin.pages import Context, Reason, Staff, done, fragment, page, refused
from khqrpay.web.admin.wording import review_history, verify_summary
from khqrpay.web.context import WebContext
from khqrpay.web.i18n import _, local_time

router = APIRouter()


# The list ---------------------------------------------------------------------------------------


def _filters(
    status: str = "",
    flagged: str = "",
    created_from: Annotated[str, Query(alias="from")] = "",
    created_to: Annotated[str, Query(alias="to")] = "",
    q: Annotated[str, Query(max_length=200)] = "",
) -> OrderFilters:
    """The list's filters from the address (`?status=PENDING&from=2026-12-01&q=...`)."""
    if status and status not in OrderStatus.__members__:
        raise OrderError(f"no order status is called {status!r}")
    return OrderFilters(
        status=OrderStatus(status) if status else None,
        refund_flagged=flagged == "1",
        created_from=_date(created_from),
        created_to=_date(created_to),
        search=q,
    )


def _date(text: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise OrderError(f"{text!r} is not a date (YYYY-MM-DD)") from None


Filters = Annotated[OrderFilters, Depends(_filters)]


def _query_string(filters: OrderFilters, **extra: object) -> str:
    """The address's query for these filters (and `extra`, e.g. a page), empty values left out."""
    values: dict[str, object] = {
        "status": "" if filters.status is None else filters.status.value,
        "flagged": "1" if filters.refund_flagged else "",
        "from": filters.created_from or "",
        "to": filters.created_to or "",
        "q": filters.search,
        **extra,
    }
    return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def _list_values(context: WebContext, filters: OrderFilters, page_number: int) -> dict[str, Any]:
    found = find_orders(context.app.database, filters, page=page_number)
    return {
        "found": found,
        "filters": filters,
        "statuses": list(OrderStatus),
        "query": _query_string(filters),
        "page_query": lambda n: _query_string(filters, page=n),
    }


@router.get("/admin/orders")
async def orders_page(
    request: Request,
    context: Context,
    user: Staff,
    filters: Filters,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    values = await asyncio.to_thread(_list_values, context, filters, page_number)
    return page(request, "orders.html", user, values, section="orders")


@router.get("/admin/orders/live")
async def orders_live(
    request: Request,
    context: Context,
    filters: Filters,
    page_number: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    return await live_region(
        request,
        context,
        lambda: fragment(request, "_order_rows.html", _list_values(context, filters, page_number)),
    )


CSV_COLUMNS = (
    "order",
    "bill_number",
    "status",
    "total",
    "currency",
    "created_at",
    "completed_at",
    "phone",
    "refund_flag",
    "review_reason",
)


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula (`=`, `+`, `-`, `@` first)."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(context: WebContext, filters: OrderFilters) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for order in export_orders(context.app.database, filters):
        writer.writerow(
            _cell(value)
            for value in (
                order.id,
                bill_number(order.id),
                order.status.value,
                f"{order.total.amount:.{order.currency.exponent}f}",
                order.currency.value,
                local_time(order.created_ms, "yyyy-MM-dd HH:mm:ss"),
                local_time(order.completed_ms, "yyyy-MM-dd HH:mm:ss"),
                wording.phone(order.customer_phone) if order.customer_phone else "",
                "yes" if order.refund_flag else "",
                order.review_reason,
            )
        )
    return out.getvalue()


@router.get("/admin/orders.csv")
async def orders_csv(context: Context, filters: Filters) -> Response:
    """The orders the filters select, for a spreadsheet (times in Cambodia)."""
    text = await asyncio.to_thread(_csv, context, filters)
    return Response(
        text.encode("utf-8-sig"),  # with a BOM: spreadsheets then read the file as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="orders.csv"'},
    )


# One order --------------------------------------------------------------------------------------


def _order_values(context: WebContext, order_id: int) -> dict[str, Any]:
    view = order_for_staff(context.app.database, order_id)
    return {
        "view": view,
        "order": view.details.order,
        "history": review_history(view.details),
        "bill_number": bill_number(order_id),
    }


def _back(order_id: int) -> str:
    return f"/admin/orders/{order_id}"


@router.get("/admin/orders/{order_id}")
async def order_page(request: Request, context: Context, user: Staff, order_id: int) -> Response:
    values = await asyncio.to_thread(_order_values, context, order_id)
    return page(request, "order.html", user, values, section="orders")


@router.get("/admin/orders/{order_id}/live")
async def order_live(request: Request, context: Context, user: Staff, order_id: int) -> Response:
    await asyncio.to_thread(order_for_staff, context.app.database, order_id)  # 404 if none
    return await live_region(
        request,
        context,
        lambda: fragment(
            request, "_order_live.html", {"user": user, **_order_values(context, order_id)}
        ),
        order_id=order_id,
    )


@router.get("/admin/orders/{order_id}/qrs/{payment_id}.svg")
async def qr_image(context: Context, order_id: int, payment_id: int) -> Response:
    view = await asyncio.to_thread(order_for_staff, context.app.database, order_id)
    payment = next((p for p in view.details.payments if p.id == payment_id), None)
    if payment is None:
        raise HTTPException(404, _("Not found"))
    return Response(
        qr_svg(payment.qr, scale=6),
        media_type="image/svg+xml",
        headers={"cache-control": "private, max-age=3600"},
    )


@router.post("/admin/orders/{order_id}/verify")
async def verify_instantly(
    request: Request, context: Context, user: Staff, order_id: int
) -> Response:
    """Verify Instantly: check this order's pending QRs with Bakong now; complete it if paid."""
    result = await context.bakong.staff.verify_instantly(order_id, actor=user.actor)
    view = VerifyView.of(result)
    summary = verify_summary(view)
    html = fragment(request, "_verify_result.html", {"view": view, "summary": summary})
    return done(request, back=_back(order_id), message=summary.text, html=html, result=view)


@router.post("/admin/orders/{order_id}/check")
async def check_status(request: Request, context: Context, order_id: int) -> Response:
    """Check Payment Status: what Bakong says now for each QR, and the recent attempts.
    Read-only."""
    view = PaymentStatusView.of(await context.bakong.staff.check_status(order_id))
    html = fragment(request, "_status_result.html", {"view": view})
    message = _("Bakong was asked about this order's QR codes. Nothing was changed.")
    return done(request, back=_back(order_id), message=message, html=html, result=view)


@router.post("/admin/orders/{order_id}/mark-paid")
async def mark_paid(
    *,
    request: Request,
    context: Context,
    user: Staff,
    order_id: int,
    reason: Reason = "",
    bakong_hash: Annotated[str, Form(alias="hash", max_length=100)] = "",
) -> Response:
    """Mark as Paid: with a reason, and optionally the Bakong hash or short hash from the
    customer's receipt (Bakong confirms it, amount and currency, before anything changes)."""
    try:
        result = await context.bakong.staff.mark_paid(
            order_id, reason=reason, bakong_hash=bakong_hash or None, actor=user.actor
        )
    except ActionRefused as exc:
        return refused(request, back=_back(order_id), message=str(exc))
    view = MarkPaidView.of(result)
    message = (
        _("Marked as paid: the order is now COMPLETED.")
        if view.status == OrderStatus.COMPLETED
        else _("Recorded, but the order needs review: {reason}").format(reason=view.reason or "")
    )
    html = fragment(request, "_mark_paid_result.html", {"view": view, "message": message})
    return done(request, back=_back(order_id), message=message, html=html, result=view)
