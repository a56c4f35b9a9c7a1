"""My orders: the orders of this browser (their tokens kept in its signed session), live, and a
look-up by phone number and order link for orders made elsewhere.

A look-up needs both: the link (its token) proves the order is the customer's, the phone must be
the one given with it. The order then joins this browser's list; the phone's other orders are
shown with minimal facts only (date, amount, status), never their items, links or codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Header, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from khqrpay.orders.model import OrderNotFound
from khqrpay.services.checkout import bill_number
from khqrpay.services.customers import CustomerOrder, find_orders, orders_with_tokens
from khqrpay.services.event_log import last_event_id
from khqrpay.web.context import WebContext, web_context
from khqrpay.web.i18n import _
from khqrpay.web.ratelimit import Limit, client_address
from khqrpay.web.shop import session
from khqrpay.web.shop.pages import PRIVATE_HEADERS, render
from khqrpay.web.shop.payment import RECONNECT_MS, live, order_event, resume_from

router = APIRouter(prefix="/orders")
Context = Annotated[WebContext, Depends(web_context)]


def _mine(context: WebContext, request: Request) -> list[CustomerOrder]:
    return orders_with_tokens(context.app.database, session.remembered_orders(request))


def _list(context: WebContext, request: Request) -> dict[str, object]:
    return {"orders": _mine(context, request), "bill_number": bill_number}


@router.get("")
def my_orders(request: Request, context: Context) -> Response:
    data = _list(context, request) | {"after": last_event_id(context.app.database)}
    return render(context, request, "orders.html", data)


@router.get("/panel")
def my_orders_panel(request: Request, context: Context) -> Response:
    return render(context, request, "_orders_list.html", _list(context, request), fragment=True)


@router.get("/status")
def my_orders_status(request: Request, context: Context) -> JSONResponse:
    """The polling fallback: each order's number and status, newest first."""
    statuses = [
        [bill_number(mine.order.id), mine.order.status.value] for mine in _mine(context, request)
    ]
    return JSONResponse({"statuses": statuses}, headers=PRIVATE_HEADERS)


@router.get("/events")
async def my_orders_events(
    request: Request,
    context: Context,
    after: int | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    """Events of this browser's orders (the list redraws itself when one arrives)."""
    orders = await asyncio.to_thread(_mine, context, request)
    order_ids = frozenset(mine.order.id for mine in orders)
    return live(_orders_stream(context, order_ids, resume_from(last_event_id, after)))


async def _orders_stream(
    context: WebContext, order_ids: frozenset[int], after_id: int | None
) -> AsyncIterator[ServerSentEvent]:
    async with context.feed.subscribe(after_id=after_id) as events:
        yield ServerSentEvent(comment="following", retry=RECONNECT_MS)
        async for event in events:
            if event.order_id in order_ids:
                yield order_event(event)


@router.post("/find")
def find(
    request: Request,
    context: Context,
    phone: Annotated[str, Form(max_length=40)],
    link: Annotated[str, Form(max_length=500)],
) -> Response:
    """Look up by phone number and order link (both required)."""
    context.limits.hit(Limit.LOOKUP, client_address(request))
    token = session.token_in(link)
    try:
        if token is None:
            raise OrderNotFound("no token in the link")
        found = find_orders(context.app.database, phone=phone, token=token)
    except OrderNotFound:
        data = _list(context, request) | {
            "after": last_event_id(context.app.database),
            "lookup_error": _(
                "No order matches this phone number and link. Check both and try again."
            ),
            "typed": {"phone": phone, "link": link},
        }
        return render(context, request, "orders.html", data, status_code=404)
    session.remember_orders(request, found.order.public_token)
    data = _list(context, request) | {
        "after": last_event_id(context.app.database),
        "found": found.order,
        "others": found.others,
    }
    return render(context, request, "orders.html", data)
