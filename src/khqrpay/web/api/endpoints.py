"""Endpoints of this area: the JSON API under `/api/v1` (Bearer API keys), and its docs page.

Thin: each parses, calls a service and returns a schema of `services.schemas`. A client reaches
only its own orders; any other answers 404 like an order that does not exist.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from functools import partial
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sse_starlette import EventSourceResponse, ServerSentEvent

from khqrpay.clock import datetime_to_ms
from khqrpay.khqr.image import card_png, card_svg, qr_png, qr_svg
from khqrpay.orders.api_clients import ApiKey, IdempotencyConflict
from khqrpay.orders.model import (
    LineRefused,
    NotEnoughStock,
    Order,
    OrderError,
    OrderStatus,
    UnknownSku,
    current_code,
)
from khqrpay.services.api_clients import authenticate
from khqrpay.services.api_orders import client_order, client_orders, place_order
from khqrpay.services.customers import products_for_sale
from khqrpay.services.schemas import (
    ApiErrorView,
    ApiOrderPage,
    ApiOrderSummary,
    ApiOrderView,
    OrderLinks,
    PaymentStatusView,
    ProductView,
    VerifyView,
)
from khqrpay.web.api.models import OrderIn
from khqrpay.web.app import api_error
from khqrpay.web.context import WebContext, web_context
from khqrpay.web.ratelimit import Limit

v1 = APIRouter(prefix="/api/v1", tags=["orders"])
docs = APIRouter(prefix="/api/docs", include_in_schema=False)
Context = Annotated[WebContext, Depends(web_context)]
_bearer = HTTPBearer(auto_error=False, description="An API key from `khqrpay apikey create NAME`.")
PING_S = 15
RECONNECT_MS = 1000


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error answers an endpoint documents (422 too: FastAPI's own shape is not ours)."""
    return {status: {"model": ApiErrorView} for status in statuses}


def _client(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The client whose key the request carries; 401 otherwise; counts toward its rate limit."""
    challenge = {"www-authenticate": "Bearer"}
    if credentials is None:
        raise HTTPException(401, "send your API key: Authorization: Bearer KEY", challenge)
    key = authenticate(context.app.database, credentials.credentials)
    if key is None:
        raise HTTPException(401, "unknown or revoked API key", challenge)
    context.limits.hit(Limit.API_KEY, key.client)
    return key


Client = Annotated[ApiKey, Depends(_client)]


def _links(request: Request, context: WebContext, order: Order) -> OrderLinks:
    base = (context.app.settings.web_public_url or str(request.base_url)).rstrip("/")
    api = f"{base}/api/v1/orders/{order.id}"
    return OrderLinks(
        payment_page=f"{base}/pay/{order.public_token}",
        qr_png=f"{api}/qr.png",
        qr_svg=f"{api}/qr.svg",
        events=f"{api}/events",
    )


def _refused(exc: OrderError, body: OrderIn) -> JSONResponse:
    """A refused order as the API's error: a stable code, and the field when one is to blame."""
    if isinstance(exc, IdempotencyConflict):
        return api_error(409, "idempotency_key_reused", str(exc), field=None)
    if isinstance(exc, LineRefused):
        skus = [line.sku for line in body.lines or ()]
        field = f"lines.{skus.index(exc.sku)}" if exc.sku in skus else "lines"
        if isinstance(exc, UnknownSku):
            return api_error(422, "unknown_sku", str(exc), field=f"{field}.sku")
        code = "insufficient_stock" if isinstance(exc, NotEnoughStock) else "not_for_sale"
        return api_error(409, code, str(exc), field=field)
    return api_error(422, "invalid_input", str(exc), field=None)


@v1.post(
    "/orders",
    status_code=201,
    response_model=ApiOrderView,
    summary="Make an order and its KHQR",
    responses={
        200: {"model": ApiOrderView, "description": "The order this Idempotency-Key made before"},
        **_errors(401, 409, 422, 429),
    },
)
def create_order(
    body: OrderIn,
    request: Request,
    context: Context,
    client: Client,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description="Retry safely: the same key and body give the same order.",
        ),
    ] = None,
) -> Response:
    try:
        placed = place_order(
            context.app.database,
            client=client,
            request=body.request(),
            idempotency_key=idempotency_key,
            settings=context.app.settings,
            clock=context.app.clock,
        )
    except OrderError as exc:
        return _refused(exc, body)
    view = ApiOrderView.details(placed.details, _links(request, context, placed.details.order))
    return JSONResponse(view.json_dict(), status_code=201 if placed.created else 200)


StatusFilter = Literal["PENDING", "COMPLETED", "NEEDS_REVIEW", "EXPIRED", "CANCELLED", "REFUNDED"]


def _cursor(after_id: int) -> str:
    return base64.urlsafe_b64encode(f"after:{after_id}".encode()).decode().rstrip("=")


def _after_id(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    prefix, _, number = text.partition(":")
    if prefix != "after" or not number.isdigit():
        raise ValueError("not a cursor this API gave")
    return int(number)


@v1.get(
    "/orders",
    response_model=ApiOrderPage,
    summary="List your orders, oldest first",
    responses=_errors(401, 422, 429),
)
def list_orders(
    context: Context,
    client: Client,
    *,
    status: Annotated[StatusFilter | None, Query(description="Only orders with it.")] = None,
    since: Annotated[
        datetime | None,
        Query(description="Only orders changed at or after it (ISO 8601 with a time zone)."),
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=64, description="`next_cursor` of the page before.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    if since is not None and since.tzinfo is None:
        return api_error(422, "invalid_input", "since: give a time zone (e.g. Z)", field="since")
    try:
        after_id = 0 if cursor is None else _after_id(cursor)
    except ValueError as exc:
        return api_error(422, "invalid_input", f"cursor: {exc}", field="cursor")
    orders = client_orders(
        context.app.database,
        client,
        status=None if status is None else OrderStatus(status),
        updated_since_ms=None if since is None else datetime_to_ms(since),
        after_id=after_id,
        limit=limit,
    )
    page = ApiOrderPage(
        orders=[ApiOrderSummary.of(order) for order in orders],
        next_cursor=_cursor(orders[-1].id) if len(orders) == limit else None,
    )
    return JSONResponse(page.json_dict())


@v1.get(
    "/orders/{order_id}",
    response_model=ApiOrderView,
    summary="One of your orders",
    responses=_errors(401, 404, 422, 429),
)
def get_order(order_id: int, request: Request, context: Context, client: Client) -> Response:
    """Asking about a pending order watches it, as its page does: a till polling while the
    customer pays sees the payment within about a second."""
    details = client_order(context.app.database, client, order_id)
    context.watch(order_id)
    view = ApiOrderView.details(details, _links(request, context, details.order))
    return JSONResponse(view.json_dict())


async def _may_ask_bakong(context: WebContext, client: ApiKey, order_id: int) -> None:
    """The client's own order (404 otherwise, costing nothing), within its Bakong-call limit."""
    await asyncio.to_thread(client_order, context.app.database, client, order_id)
    context.limits.hit(Limit.API_BAKONG, client.client)


@v1.post(
    "/orders/{order_id}/verify",
    response_model=VerifyView,
    summary="Verify Instantly: check the order's codes with Bakong now",
    responses=_errors(401, 404, 422, 429),
)
async def verify_order(order_id: int, context: Context, client: Client) -> Response:
    await _may_ask_bakong(context, client, order_id)
    result = await context.bakong.staff.verify_instantly(order_id, actor=client.actor)
    return JSONResponse(VerifyView.of(result).json_dict())


@v1.get(
    "/orders/{order_id}/check",
    response_model=PaymentStatusView,
    summary="Check Payment Status: what Bakong says now (changes nothing)",
    responses=_errors(401, 404, 422, 429),
)
async def check_order(order_id: int, context: Context, client: Client) -> Response:
    await _may_ask_bakong(context, client, order_id)
    report = await context.bakong.staff.check_status(order_id)
    return JSONResponse(PaymentStatusView.of(report).json_dict())


@v1.get(
    "/orders/{order_id}/events",
    summary="The order's events, as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Each event: `id` (send it back as Last-Event-ID when you "
            "reconnect) and `data`, a JSON object with the `topic` and the event's fields.",
        },
        **_errors(401, 404, 422, 429),
    },
)
async def order_events(
    order_id: int,
    context: Context,
    client: Client,
    last_event_id: Annotated[str | None, Header()] = None,
) -> EventSourceResponse:
    await asyncio.to_thread(client_order, context.app.database, client, order_id)
    # Without Last-Event-ID the stream starts with everything the order has been through.
    after = int(last_event_id) if last_event_id and last_event_id.strip().isdigit() else 0
    return EventSourceResponse(_events(context, order_id, after), ping=PING_S)


async def _events(context: WebContext, order_id: int, after: int) -> AsyncIterator[ServerSentEvent]:
    # While a client follows the order, it is watched (checked every watched interval).
    keep_watching = asyncio.create_task(context.keep_watching(order_id))
    try:
        async with context.feed.subscribe(after_id=after, order_id=order_id) as events:
            yield ServerSentEvent(comment="following", retry=RECONNECT_MS)
            async for event in events:
                data = {"topic": event.topic, **event.payload}
                yield ServerSentEvent(data=json.dumps(data), id=str(event.id))
    finally:
        keep_watching.cancel()


QrStyle = Annotated[
    Literal["card", "code"],
    Query(description="`card`: the KHQR payment card (default); `code`: the bare code."),
]


def _current_qr(context: WebContext, client: ApiKey, order_id: int) -> str:
    """The code to show; showing it means a customer is about to pay: the order is watched."""
    details = client_order(context.app.database, client, order_id)
    context.watch(order_id)
    return current_code(details.payments).qr


# The current code as an image: the payment card (default) or the bare code, PNG or SVG.
_IMAGES: dict[str, tuple[str, dict[str, Callable[[str], bytes]]]] = {
    "png": ("image/png", {"card": partial(card_png, scale=3), "code": qr_png}),
    "svg": ("image/svg+xml", {"card": card_svg, "code": qr_svg}),
}


def _add_image_route(kind: str) -> None:
    media, drawers = _IMAGES[kind]

    @v1.get(
        f"/orders/{{order_id}}/qr.{kind}",
        name=f"order_qr_{kind}",
        summary=f"The order's current code as {kind.upper()}",
        response_class=Response,
        responses={200: {"content": {media: {}}}, **_errors(401, 404, 422, 429)},
    )
    def order_qr(
        order_id: int, context: Context, client: Client, style: QrStyle = "card"
    ) -> Response:
        return Response(drawers[style](_current_qr(context, client, order_id)), media_type=media)


for _kind in _IMAGES:
    _add_image_route(_kind)


@v1.get(
    "/products",
    response_model=list[ProductView],
    tags=["products"],
    summary="The products on sale (for orders by lines)",
    responses=_errors(401, 429),
)
def list_products(context: Context, client: Client) -> Response:
    del client  # any client may read the catalogue
    products = products_for_sale(context.app.database)
    return JSONResponse([ProductView.of(product).json_dict() for product in products])


# The docs page: Swagger UI from the fastapi-offline package (no CDN), started by our own script
# (the CSP allows no inline script).
_SWAGGER = resources.files("fastapi_offline") / "static"
_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>khqrpay API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/api/docs/swagger-ui.css"></head>
<body><div id="swagger-ui" data-openapi-url="/api/v1/openapi.json"></div>
<script src="/api/docs/swagger-ui-bundle.js"></script>
<script src="/static/js/api-docs.js"></script></body></html>
"""


@docs.get("")
def docs_page() -> HTMLResponse:
    return HTMLResponse(_DOCS_PAGE)


@docs.get("/{asset}")
def docs_asset(asset: Literal["swagger-ui.css", "swagger-ui-bundle.js"]) -> FileResponse:
    path = _SWAGGER / asset
    media = "text/css" if asset.endswith(".css") else "text/javascript"
    return FileResponse(
        str(path), media_type=media, headers={"cache-control": "public, max-age=86400"}
    )


router = APIRouter()
router.include_router(v1)
router.include_router(docs)
