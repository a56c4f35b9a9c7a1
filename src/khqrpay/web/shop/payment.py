"""The payment page of an order, reached only by its token: the KHQR card, Download QR, Open in
banking app, I have paid, Pay later, and the live status that turns the page into a receipt.

Live status: the page follows `/pay/{token}/events` (Server-Sent Events from the outbox feed,
each event's id its outbox id) and redraws its panel (`/pay/{token}/panel`) when one arrives.
The page carries the feed's position when it was drawn (`after`), and a reconnecting browser
sends Last-Event-ID, so an event between the page and its stream, or during a dropped stream, is
replayed, never lost. Where streams cannot be kept (a buffering proxy), the script polls
`/pay/{token}/status`. While the stream is open the order stays watched (checked often).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from khqrpay.khqr.image import card_png, qr_svg
from khqrpay.orders.events import Topic
from khqrpay.orders.model import (
    AttemptOutcome,
    Order,
    OrderError,
    OrderNotFound,
    OrderStatus,
    OutboxEvent,
    current_code,
)
from khqrpay.services.checkout import bill_number
from khqrpay.services.customers import (
    banking_app_link,
    customer_has_paid,
    customer_order,
    order_again,
)
from khqrpay.services.event_log import last_event_id
from khqrpay.services.orders import OrderDetails
from khqrpay.services.schemas import CustomerStatusView
from khqrpay.web.context import WebContext, web_context
from khqrpay.web.i18n import _
from khqrpay.web.ratelimit import Limit, RateLimited, client_address
from khqrpay.web.shop import session
from khqrpay.web.shop.pages import PRIVATE_HEADERS, answer, render

router = APIRouter(prefix="/pay/{token}")
Context = Annotated[WebContext, Depends(web_context)]
# How long a browser waits before reconnecting a dropped stream.
RECONNECT_MS = 1000
# How long Bakong gets to make a banking-app link before the customer is sent back.
BANKING_APP_WAIT_S = 5.0
# Pings keep proxies from closing a quiet stream.
PING_S = 15


def _order(context: WebContext, token: str) -> OrderDetails:
    if not session.TOKEN.match(token):
        raise OrderNotFound("no order has that token")
    return customer_order(context.app.database, token)


def _panel(context: WebContext, details: OrderDetails) -> dict[str, object]:
    """What the order's panel shows (its status decides which part)."""
    order = details.order
    payment = current_code(details.payments)
    matched = [recorded for recorded in details.evidence if recorded.matched]
    shown = matched or list(details.evidence)
    return {
        "order": order,
        "token": order.public_token,
        "number": bill_number(order.id),
        "lines": details.lines,
        "payment": payment,
        # As the card prints it: `4.50` and `USD` beside it, `12,000` and `KHR`.
        "card_amount": f"{order.total.amount:,.{order.currency.exponent}f}",
        "merchant": context.app.settings.merchant_name,
        "now_ms": context.app.clock.now_ms(),
        # The Bakong payment behind the receipt (None: staff marked it paid without one).
        "receipt": shown[0] if shown else None,
        "can_order_again": bool(details.lines)
        and order.status in (OrderStatus.EXPIRED, OrderStatus.CANCELLED),
    }


@router.get("")
def payment_page(token: str, request: Request, context: Context) -> Response:
    """The order's page; opening it puts the order in this browser's My orders and, while it is
    pending, has its codes checked often."""
    details = _order(context, token)
    context.watch(details.order.id)
    session.remember_orders(request, token)
    data = _panel(context, details) | {"after": last_event_id(context.app.database)}
    return render(context, request, "pay.html", data)


@router.get("/panel")
def payment_panel(token: str, request: Request, context: Context) -> Response:
    """The page's live part alone, redrawn by the script when the order changes."""
    data = _panel(context, _order(context, token))
    return render(context, request, "_order_panel.html", data, fragment=True)


@router.get("/status")
def payment_status(token: str, context: Context) -> JSONResponse:
    """The polling fallback: the order's status now."""
    view = CustomerStatusView.of(_order(context, token).order)
    return JSONResponse(view.json_dict(), headers=PRIVATE_HEADERS)


def resume_from(last_event: str | None, after: int | None) -> int | None:
    """Where a stream starts: after the browser's Last-Event-ID when it reconnects, else after
    the feed's position when the page was drawn."""
    if last_event is not None and last_event.strip().isdigit():
        return int(last_event)
    return after


@router.get("/events")
async def payment_events(
    token: str,
    context: Context,
    after: int | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    details = await asyncio.to_thread(_order, context, token)
    return live(_order_stream(context, details.order, resume_from(last_event_id, after)))


def live(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    """A page's event stream: pinged so proxies keep it, never buffered or cached."""
    return EventSourceResponse(
        events, ping=PING_S, headers={**PRIVATE_HEADERS, "x-accel-buffering": "no"}
    )


async def _order_stream(
    context: WebContext, order: Order, after_id: int | None
) -> AsyncIterator[ServerSentEvent]:
    keep_watching = asyncio.create_task(context.keep_watching(order.id))
    try:
        async with context.feed.subscribe(after_id=after_id, order_id=order.id) as events:
            yield ServerSentEvent(comment="following", retry=RECONNECT_MS)
            async for event in events:
                yield order_event(event)
    finally:
        keep_watching.cancel()


def order_event(event: OutboxEvent) -> ServerSentEvent:
    """One order event for a customer's page: its topic and the status it moved to (if any)."""
    status = event.payload.get("to") if event.topic == Topic.ORDER_STATUS_CHANGED else None
    return ServerSentEvent(
        data=json.dumps({"topic": event.topic, "status": status}), id=str(event.id)
    )


@router.get("/qr.svg")
def payment_qr(token: str, context: Context) -> Response:
    """The current code, bare, for the card on the page."""
    payment = current_code(_order(context, token).payments)
    return Response(
        qr_svg(payment.qr, scale=4),
        media_type="image/svg+xml",
        headers={**PRIVATE_HEADERS, "cache-control": "private, max-age=3600"},
    )


@router.get("/khqr.png")
def download_qr(token: str, context: Context) -> Response:
    """Download QR: the KHQR payment card as a PNG, to pay later from any banking app."""
    details = _order(context, token)
    payment = current_code(details.payments)
    filename = f"KHQR-{bill_number(details.order.id)}.png"
    return Response(
        card_png(payment.qr, scale=3),
        media_type="image/png",
        headers={**PRIVATE_HEADERS, "content-disposition": f'attachment; filename="{filename}"'},
    )


@router.get("/app")
async def open_banking_app(token: str, request: Request, context: Context) -> Response:
    """Open in banking app: Bakong's deep link for the code. When Bakong cannot make one, back
    to the page, which still works (scan, download)."""
    context.limits.hit(Limit.BANKING_APP, client_address(request))
    details = await asyncio.to_thread(_order, context, token)
    back = f"/pay/{token}"
    if details.order.status is not OrderStatus.PENDING:
        return RedirectResponse(back, status_code=303)
    link = await banking_app_link(
        context.bakong.client, current_code(details.payments).qr, within_s=BANKING_APP_WAIT_S
    )
    if link is None:
        session.notify(
            request,
            "warn",
            _(
                "Your banking app could not be opened from here just now. "
                "Scan the code, or download it and open it in your banking app."
            ),
        )
        return RedirectResponse(back, status_code=303)
    return RedirectResponse(link, status_code=303)


@router.post("/paid")
async def customer_paid(token: str, request: Request, context: Context) -> Response:
    """I have paid: check with Bakong now (and keep checking often); rate-limited per order and
    per client, as each press is a Bakong call."""
    details = await asyncio.to_thread(_order, context, token)
    back = f"/pay/{token}"
    try:
        context.limits.hit(Limit.PAID_PER_CLIENT, client_address(request))
        context.limits.hit(Limit.PAID_PER_ORDER, token)
    except RateLimited as limited:
        message = _("Please wait %(seconds)s seconds before asking again.") % {
            "seconds": limited.retry_after_s
        }
        refused = answer(request, back=back, kind="warn", message=message, status_code=429)
        refused.headers["retry-after"] = str(limited.retry_after_s)
        return refused
    result = await customer_has_paid(
        context.app.database,
        context.bakong.staff,
        details.order,
        policy=context.app.policy,
        clock=context.app.clock,
    )
    if result is None or result.status is OrderStatus.COMPLETED:
        status = details.order.status if result is None else result.status
        return answer(request, back=back, kind="ok", message=_paid_message(status), data={})
    outcomes = {check.outcome for check in result.checks}
    if result.deferred and not result.checks:
        # The shop's Bakong budget is spent for this minute: the press made the order watched,
        # and the verifier checks watched orders first.
        message = _(
            "Many payments are being checked right now. Yours is next in line: "
            "this page changes by itself as soon as your payment arrives."
        )
    elif outcomes <= {AttemptOutcome.NOT_FOUND, AttemptOutcome.PAID}:
        message = _(
            "We have not seen your payment yet. If you have just paid, it can take a minute: "
            "this page changes by itself as soon as it arrives."
        )
    else:
        message = _(
            "We could not ask Bakong just now. If you have paid, your payment is safe: "
            "we keep checking, and this page changes by itself."
        )
    return answer(request, back=back, kind="warn", message=message, data={})


def _paid_message(status: OrderStatus) -> str:
    if status is OrderStatus.COMPLETED:
        return _("Payment received. Thank you!")
    return _("This order is no longer waiting for a payment.")


@router.get("/later")
def pay_later(token: str, request: Request, context: Context) -> Response:
    """Cancel / pay later: the order stays pending (and is still found when paid later)."""
    details = _order(context, token)
    session.remember_orders(request, token)
    return render(context, request, "later.html", _panel(context, details))


@router.post("/again")
def again(token: str, request: Request, context: Context) -> Response:
    """A new order with the same items, for an order that can no longer be paid."""
    context.limits.hit(Limit.CHECKOUT, client_address(request))
    _order(context, token)
    try:
        created = order_again(
            context.app.database, token, settings=context.app.settings, clock=context.app.clock
        )
    except OrderError:
        session.notify(
            request,
            "bad",
            _("Some of these items are no longer available. Please choose again in the shop."),
        )
        return RedirectResponse(f"/pay/{token}", status_code=303)
    session.remember_orders(request, created.order.public_token)
    return RedirectResponse(f"/pay/{created.order.public_token}", status_code=303)
