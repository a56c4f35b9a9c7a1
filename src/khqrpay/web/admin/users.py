"""The owner's accounts page: who can log in, with which role; add an account, disable or enable
one, give one a new password (its sessions end)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from khqrpay.accounts import MAX_PASSWORD_LENGTH, AccountError, Role, StaffUser
from khqrpay.services.accounts import create_user, list_users, set_disabled, set_password
from khqrpay.web.admin.pages import Context, Owner, act, page, refused
from khqrpay.web.i18n import _

router = APIRouter()
Password = Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)]
BACK = "/admin/users"


@router.get("/admin/users")
async def users_page(request: Request, context: Context, user: Owner) -> Response:
    users = await asyncio.to_thread(list_users, context.app.database)
    values = {"users": users, "roles": list(Role)}
    return page(request, "users.html", user, values, section="users")


async def _change(request: Request, change: Callable[[], StaffUser], message: str) -> Response:
    return await act(request, change, back=BACK, message=message, refusals=(AccountError,))


@router.post("/admin/users")
async def create(
    *,
    request: Request,
    context: Context,
    user: Owner,
    name: Annotated[str, Form(max_length=64)],
    role: Annotated[Role, Form()],
    password: Password,
) -> Response:
    app = context.app
    return await _change(
        request,
        lambda: create_user(
            app.database,
            name=name,
            role=role,
            password=password,
            clock=app.clock,
            actor=user.actor,
        ),
        _("Account added."),
    )


@router.post("/admin/users/{name}/access")
async def set_access(
    request: Request,
    context: Context,
    user: Owner,
    name: str,
    disabled: Annotated[Literal["0", "1"], Form()],
) -> Response:
    app = context.app
    if disabled == "1" and name == user.name:
        return refused(request, back=BACK, message=_("You cannot disable your own account."))
    return await _change(
        request,
        lambda: set_disabled(
            app.database, name, disabled=disabled == "1", clock=app.clock, actor=user.actor
        ),
        _("Account disabled.") if disabled == "1" else _("Account enabled."),
    )


@router.post("/admin/users/{name}/password")
async def new_password(
    request: Request, context: Context, user: Owner, name: str, password: Password
) -> Response:
    app = context.app
    return await _change(
        request,
        lambda: set_password(
            app.database, name, password=password, clock=app.clock, actor=user.actor
        ),
        _("Password changed. That account's sessions have ended."),
    )
