"""How the console answers: whole pages, fragments (what live regions and buttons swap in), and
the result of an action, as JSON for the page's script or as a redirect with a message for a plain
form post (the console works without JavaScript, only less live)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from khqrpay.accounts import StaffUser
from khqrpay.orders.model import MAX_REASON_LENGTH
from khqrpay.services.schemas import Schema
from khqrpay.web.admin import wording
from khqrpay.web.admin.access import flash, require_owner, require_staff, take_flashes
from khqrpay.web.app import api_error
from khqrpay.web.context import WebContext, web_context

_T = TypeVar("_T")
# What endpoints take: the app's parts, the signed-in account (any, or the owner), a reason.
Context = Annotated[WebContext, Depends(web_context)]
Staff = Annotated[StaffUser, Depends(require_staff)]
Owner = Annotated[StaffUser, Depends(require_owner)]
Reason = Annotated[str, Form(max_length=MAX_REASON_LENGTH)]


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def page(
    request: Request,
    name: str,
    user: StaffUser,
    values: dict[str, Any],
    *,
    section: str,
    status_code: int = 200,
) -> Response:
    """A console page (`templates/admin/<name>`) for `user`, `section` marked in the menu."""
    return web_context(request).page(
        request,
        f"admin/{name}",
        {
            **values,
            "user": user,
            "section": section,
            "flashes": take_flashes(request),
            "wording": wording,
        },
        status_code=status_code,
    )


def fragment(request: Request, name: str, values: dict[str, Any]) -> str:
    """A part of a page (`templates/admin/<name>`), as HTML."""
    template = web_context(request).templates.get_template(f"admin/{name}")
    return template.render({"request": request, "wording": wording, **values})


def done(
    request: Request, *, back: str, message: str, html: str = "", result: Schema | None = None
) -> Response:
    """An action that worked: its result for the script, else back to the page with `message`."""
    if wants_json(request):
        return JSONResponse(
            {
                "message": message,
                "html": html,
                "result": None if result is None else result.json_dict(),
            }
        )
    flash(request, "ok", message)
    return RedirectResponse(back, status_code=303)


def refused(request: Request, *, back: str, message: str, status_code: int = 409) -> Response:
    """An action refused (nothing changed): why, for the script or on the page it came from."""
    if wants_json(request):
        return api_error(status_code, "refused", message)
    flash(request, "bad", message)
    return RedirectResponse(back, status_code=303)


async def act(
    request: Request,
    work: Callable[[], _T],
    *,
    back: str,
    message: str,
    refusals: tuple[type[Exception], ...],
    result: Callable[[_T], Schema] | None = None,
) -> Response:
    """Run a use case (in a thread: it opens its own transaction); `done` with `message` and its
    `result`, or `refused` with the reason when it raises one of `refusals`."""
    try:
        value = await asyncio.to_thread(work)
    except refusals as exc:
        return refused(request, back=back, message=str(exc))
    return done(
        request, back=back, message=message, result=None if result is None else result(value)
    )
