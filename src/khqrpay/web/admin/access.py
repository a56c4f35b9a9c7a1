"""Who may use the staff console: the staff part of the signed session cookie, and the guards.

The session cookie is the one the shop's cart uses; staff sign-in keeps the account id, when the
session signed in and when it was last used. A session ends after
`web_staff_session_idle_minutes` without a request, when the account is disabled, or when its
password changes. Background requests (a live page's stream or poll, paths ending `/live`) do not
count as use: a page left open does not keep a session alive.

The guards are FastAPI dependencies set on the routers (`endpoints.py`), never per endpoint:
`require_staff` refuses anyone not signed in (pages redirect to the login page, anything else
answers 401), `require_owner` also refuses staff (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard
from urllib.parse import quote

from fastapi import Request
from starlette.exceptions import HTTPException

from khqrpay.accounts import StaffUser
from khqrpay.services.accounts import signed_in_user
from khqrpay.web.context import web_context
from khqrpay.web.i18n import _

SESSION_KEY = "staff"
FLASH_KEY = "staff_flash"
LOGIN_PATH = "/admin/login"
HOME_PATH = "/admin"
LIVE_SUFFIX = "/live"


@dataclass(frozen=True, slots=True)
class StaffSession:
    user_id: int
    signed_in_ms: int
    seen_ms: int

    @classmethod
    def read(cls, data: Any) -> StaffSession | None:
        """The staff part of a session, None if absent or not in the shape this code writes."""
        if not isinstance(data, dict):
            return None
        user_id, since, seen = (data.get("id"), data.get("since"), data.get("seen"))
        if not (_whole(user_id) and _whole(since) and _whole(seen)):
            return None
        return cls(user_id, since, seen)

    def written(self) -> dict[str, int]:
        return {"id": self.user_id, "since": self.signed_in_ms, "seen": self.seen_ms}


def _whole(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def sign_in(request: Request, user: StaffUser, *, now_ms: int) -> None:
    """A fresh session for `user`: nothing from before the login carries over (no session
    fixation), the language cookie aside."""
    request.session.clear()
    request.session[SESSION_KEY] = StaffSession(user.id, now_ms, now_ms).written()


def sign_out(request: Request) -> None:
    request.session.clear()


def flash(request: Request, kind: str, text: str) -> None:
    """A message for the next page this browser shows (after a redirect)."""
    request.session[FLASH_KEY] = [*request.session.get(FLASH_KEY, []), [kind, text]]


def take_flashes(request: Request) -> list[tuple[str, str]]:
    return [(kind, text) for kind, text in request.session.pop(FLASH_KEY, [])]


def session_deadline_ms(request: Request) -> int:
    """When the current staff session ends if nothing else is asked (its live streams end then)."""
    session = StaffSession.read(request.session.get(SESSION_KEY))
    assert session is not None  # only called behind the guard
    return session.seen_ms + _idle_ms(request)


def _idle_ms(request: Request) -> int:
    return round(web_context(request).app.settings.web_staff_session_idle_minutes * 60_000)


def require_staff(request: Request) -> StaffUser:
    """The signed-in account; refuses anyone else (see the module's docstring)."""
    app = web_context(request).app
    now_ms = app.clock.now_ms()
    session = StaffSession.read(request.session.get(SESSION_KEY))
    expired = session is not None and now_ms - session.seen_ms > _idle_ms(request)
    user = None
    if session is not None and not expired:
        user = signed_in_user(app.database, session.user_id, signed_in_ms=session.signed_in_ms)
    if session is None or user is None:
        request.session.pop(SESSION_KEY, None)
        if session is not None:
            flash(request, "warn", _("Your session has ended. Please log in again."))
        raise _not_signed_in(request)
    assert session is not None
    if not request.url.path.endswith(LIVE_SUFFIX):
        request.session[SESSION_KEY] = StaffSession(user.id, session.signed_in_ms, now_ms).written()
    return user


def require_owner(request: Request) -> StaffUser:
    user = require_staff(request)
    if not user.is_owner:
        raise HTTPException(403, _("Only the owner can do this."))
    return user


def is_page_request(request: Request) -> bool:
    """A browser asking for a page (not a script, a stream or a form post)."""
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def _not_signed_in(request: Request) -> HTTPException:
    if is_page_request(request):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return HTTPException(303, headers={"location": f"{LOGIN_PATH}?next={quote(target)}"})
    return HTTPException(401, _("Please log in again."))


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a console path only, never another site."""
    if target and target.startswith(HOME_PATH) and not target.startswith("//"):
        return target
    return HOME_PATH
