"""Logging in and out of the staff console: the only console routes open to anyone."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException

from khqrpay.accounts import MAX_PASSWORD_LENGTH
from khqrpay.services.accounts import (
    AccountDisabled,
    LoginRefused,
    LoginThrottled,
    log_in,
    signed_in_user,
)
from khqrpay.web.admin.access import (
    HOME_PATH,
    LOGIN_PATH,
    SESSION_KEY,
    StaffSession,
    safe_next,
    sign_in,
    sign_out,
    take_flashes,
)
from khqrpay.web.admin.pages import Context
from khqrpay.web.app import CSRF_COOKIE
from khqrpay.web.context import WebContext
from khqrpay.web.i18n import _

router = APIRouter()


def _login_page(
    request: Request,
    context: WebContext,
    *,
    next_path: str,
    name: str = "",
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    response = context.page(
        request,
        "admin/login.html",
        {"next": next_path, "name": name, "error": error, "flashes": take_flashes(request)},
        status_code=status_code,
    )
    response.headers.update(headers or {})
    return response


def _signed_in(request: Request, context: WebContext) -> bool:
    session = StaffSession.read(request.session.get(SESSION_KEY))
    return (
        session is not None
        and signed_in_user(context.app.database, session.user_id, signed_in_ms=session.signed_in_ms)
        is not None
    )


@router.get(LOGIN_PATH)
def login_page(request: Request, context: Context, next: str | None = None) -> Response:
    if _signed_in(request, context):
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, context, next_path=safe_next(next))


@router.post(LOGIN_PATH)
async def login(
    request: Request,
    context: Context,
    name: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
    next: Annotated[str, Form(max_length=2000)] = HOME_PATH,
) -> Response:
    # The CSRF middleware lets a post with no cookie at all through (nothing to forge with);
    # a login must still come from our own form (no logging a browser into our account).
    if CSRF_COOKIE not in request.cookies:
        raise HTTPException(403, _("This form has expired. Reload the page and try again."))
    target = safe_next(next)
    app = context.app
    address = request.client.host if request.client else "unknown"
    try:
        user = await asyncio.to_thread(
            log_in, app.database, name=name, password=password, address=address, clock=app.clock
        )
    except LoginThrottled as throttled:
        message = _("Too many failed logins. Wait a few minutes, then try again.")
        return _login_page(
            request,
            context,
            next_path=target,
            name=name,
            error=message,
            status_code=429,
            headers={"retry-after": str(throttled.retry_after_s)},
        )
    except LoginRefused as refused:
        message = (
            _("This account is disabled. Ask the owner.")
            if isinstance(refused, AccountDisabled)
            else _("Wrong user name or password.")
        )
        return _login_page(
            request, context, next_path=target, name=name, error=message, status_code=401
        )
    sign_in(request, user, now_ms=app.clock.now_ms())
    response = RedirectResponse(target, status_code=303)
    # A new CSRF token too: the next page the browser asks for sets a fresh one.
    response.delete_cookie(CSRF_COOKIE)
    return response


@router.post("/admin/logout")
def logout(request: Request) -> Response:
    sign_out(request)
    response = RedirectResponse(LOGIN_PATH, status_code=303)
    response.delete_cookie(CSRF_COOKIE)
    return response
