"""The owner's webhooks and Telegram pages: endpoints (add one, its secret shown once; remove one),
each endpoint's delivery log with a replay button, and the Telegram alerts set up and sent. The
same use cases the CLI calls (`khqrpay webhooks ...`)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from khqrpay.accounts import StaffUser
from khqrpay.orders.notices import DeliveryStatus, WebhookEventType
from khqrpay.services.alerts import masked_chat_id, recent_alerts
from khqrpay.services.webhooks import (
    PrivateAddressError,
    WebhookError,
    add_endpoint,
    endpoint_summaries,
    list_deliveries,
    list_endpoints,
    remove_endpoint,
    replay_delivery,
)
from khqrpay.web.admin.pages import Context, Owner, act, page
from khqrpay.web.context import WebContext
from khqrpay.web.i18n import _

router = APIRouter()
BACK = "/admin/webhooks"
LOG = "/admin/webhooks/deliveries"
PAGE_SIZE = 25
RECENT_ALERTS = 50
# Longer than any URL the service takes (it says why a long one is refused).
MAX_URL_FIELD = 4_000


def _endpoints_page(
    request: Request, context: WebContext, user: StaffUser, *, form: dict[str, Any] | None = None
) -> Response:
    """The endpoints and the add form (`form`: what was typed, and why it was refused)."""
    summaries = endpoint_summaries(context.app.database)
    values = {
        "summaries": summaries,
        "event_types": list(WebhookEventType),
        "form": form or {"url": "", "events": [], "allow_private": False, "error": None},
    }
    status_code = 200 if form is None else 400
    return page(request, "webhooks.html", user, values, section="webhooks", status_code=status_code)


@router.get("/admin/webhooks")
async def webhooks_page(request: Request, context: Context, user: Owner) -> Response:
    return await asyncio.to_thread(_endpoints_page, request, context, user)


@router.post("/admin/webhooks")
async def add(
    *,
    request: Request,
    context: Context,
    user: Owner,
    url: Annotated[str, Form(max_length=MAX_URL_FIELD)],
    events: Annotated[list[str] | None, Form()] = None,
    allow_private: Annotated[Literal["1"] | None, Form()] = None,
) -> Response:
    """Add an endpoint and show its signing secret, this once (the answer is not cached, and
    the secret goes nowhere else: not in the session, not in a log)."""
    app = context.app
    chosen = [e for e in WebhookEventType if e.value in (events or [])]
    private = allow_private == "1"
    if not chosen:
        form = {"url": url, "events": chosen, "allow_private": private}
        form["error"] = _("Choose at least one event.")
        return await asyncio.to_thread(_endpoints_page, request, context, user, form=form)
    try:
        endpoint = await asyncio.to_thread(
            lambda: add_endpoint(
                app.database,
                url=url.strip(),
                event_types=chosen,
                allow_private=private,
                clock=app.clock,
                actor=user.actor,
            )
        )
    except WebhookError as exc:
        form = {"url": url, "events": chosen, "allow_private": private, "error": _refusal(exc)}
        return await asyncio.to_thread(_endpoints_page, request, context, user, form=form)
    answer = page(
        request,
        "webhook_added.html",
        user,
        {"endpoint": endpoint, "secret": endpoint.secret.reveal()},
        section="webhooks",
    )
    answer.headers["cache-control"] = "no-store"
    return answer


def _refusal(exc: WebhookError) -> str:
    if isinstance(exc, PrivateAddressError):
        return _(
            "{host} is this computer or a private network. Webhooks go there only if you tick "
            "“Allow private addresses”."
        ).format(host=exc.host)
    return _("This URL cannot take webhooks: {why}").format(why=exc)


@router.post("/admin/webhooks/{endpoint_id}/remove")
async def remove(request: Request, context: Context, user: Owner, endpoint_id: int) -> Response:
    app = context.app
    return await act(
        request,
        lambda: remove_endpoint(app.database, endpoint_id, clock=app.clock, actor=user.actor),
        back=BACK,
        message=_("Endpoint removed. Nothing more is sent to it; its log stays."),
        refusals=(WebhookError,),
    )


def log_path(endpoint_id: int | None, status: str | None = None, before: int | None = None) -> str:
    """The delivery log's address with its filters (and page)."""
    query = {"endpoint": endpoint_id, "status": status, "before": before}
    given = {key: value for key, value in query.items() if value is not None}
    return f"{LOG}?{urlencode(given)}" if given else LOG


def _log_values(
    context: WebContext, endpoint_id: int | None, status: DeliveryStatus | None, before: int | None
) -> dict[str, Any]:
    database = context.app.database
    try:
        found = list_deliveries(
            database, endpoint_id=endpoint_id, status=status, before=before, limit=PAGE_SIZE + 1
        )
    except WebhookError as exc:
        raise HTTPException(404, str(exc)) from None
    endpoints = {e.id: e for e in list_endpoints(database, include_removed=True)}
    shown = found[:PAGE_SIZE]
    return {
        "deliveries": shown,
        "endpoints": endpoints,
        "endpoint": None if endpoint_id is None else endpoints[endpoint_id],
        "status": None if status is None else status.value,
        "statuses": [s.value for s in DeliveryStatus],
        "first_page": before is None,
        "older": log_path(endpoint_id, status and status.value, shown[-1].id)
        if len(found) > PAGE_SIZE
        else None,
        "log_path": log_path,
        "now_ms": context.app.clock.now_ms(),
    }


@router.get("/admin/webhooks/deliveries")
async def deliveries_page(
    *,
    request: Request,
    context: Context,
    user: Owner,
    endpoint: Annotated[int | None, Query(ge=1)] = None,
    status: Annotated[DeliveryStatus | None, Query()] = None,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    values = await asyncio.to_thread(_log_values, context, endpoint, status, before)
    return page(request, "webhook_deliveries.html", user, values, section="webhooks")


@router.post("/admin/webhooks/deliveries/{delivery_id}/replay")
async def replay(
    *,
    request: Request,
    context: Context,
    user: Owner,
    delivery_id: int,
    endpoint: Annotated[int | None, Form(ge=1)] = None,
) -> Response:
    """Send a delivery again from now (same webhook-id and body); back to the log it was on."""
    app = context.app
    return await act(
        request,
        lambda: replay_delivery(app.database, delivery_id, clock=app.clock, actor=user.actor),
        back=log_path(endpoint),
        message=_("Delivery {id} will be sent again in a moment.").format(id=delivery_id),
        refusals=(WebhookError,),
    )


@router.get("/admin/telegram")
async def telegram_page(request: Request, context: Context, user: Owner) -> Response:
    """What Telegram alerts are set up (never the bot's token) and the latest sent."""
    settings = context.app.settings
    sent = await asyncio.to_thread(recent_alerts, context.app.database, limit=RECENT_ALERTS)
    values = {
        "chats": [(masked_chat_id(c.id), c.language) for c in settings.telegram_chat_list()],
        "token_set": bool(settings.telegram_bot_token.get_secret_value().strip()),
        "enabled": settings.telegram_enabled,
        "public_url": settings.web_public_url,
        "sent": sent,
        "masked_chat_id": masked_chat_id,
    }
    return page(request, "telegram.html", user, values, section="telegram")
