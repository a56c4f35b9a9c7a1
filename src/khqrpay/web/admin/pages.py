"""How the console answers: whole pages, fragments (what live regions and buttons swap in), and
the result of an action, as JSON for the page's script or as a redirect with a message for a plain
form post (the console works without JavaScript, only less live)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from khqrpay.accounts import StaffUser
from khqrpay.services.schemas import Schema
from khqrpay.web.admin import wording
from khqrpay.web.admin.access import flash, take_flashes
from khqrpay.web.app import api_error
from khqrpay.web.context import web_context


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
