"""The web app: one ASGI app with three areas, `shop/` (customers), `admin/` (staff, under
`/admin`) and `api/` (other software, under `/api/v1`), and the assets they share.

Endpoints stay thin: they parse, call services and render the services' schemas. The lifespan
opens what a process needs once: the Bakong client and its services, the event bus, the outbox
feed that drives every live page, and (when asked, e.g. on SQLite) the verifier worker itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import httpx
import jinja2
from asgi_csrf import asgi_csrf
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sse_starlette.sse import AppStatus
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import Scope, Send

from khqrpay.bootstrap import App, BakongServices
from khqrpay.events import EventBus
from khqrpay.khqr.image import KHMER_FONT_FILE, LATIN_FONT_FILE
from khqrpay.logging import get_logger
from khqrpay.orders.model import OrderError, OrderNotFound
from khqrpay.settings import Settings
from khqrpay.web import i18n
from khqrpay.web.context import WebContext, csrf_token
from khqrpay.web.feed import EventFeed
from khqrpay.web.ratelimit import RateLimited, RateLimits
from khqrpay.web.security import BodyLimit, RequestLanguage, SecurityHeaders

API_PREFIX = "/api/"
SESSION_COOKIE = "khqrpay_session"
CSRF_COOKIE = "khqrpay_csrf"
FONTS = {"NotoSans.ttf": LATIN_FONT_FILE, "NotoSansKhmer.ttf": KHMER_FONT_FILE}
# Fonts and other assets change only with a release: let browsers keep them a day.
ASSET_CACHE = "public, max-age=86400"

_log = get_logger(__name__)


# Work a process hosting the web app runs beside it until `stop` is set (e.g. the worker).
BackgroundJob = Callable[[App, BakongServices, EventBus, asyncio.Event], Coroutine[Any, Any, None]]


def create_web_app(
    app: App,
    *,
    background: Sequence[BackgroundJob] = (),
    bakong_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The web app on `app`'s parts, running `background` jobs beside it on the same Bakong
    client and event bus (one process can host web + worker + relay)."""
    settings = app.settings
    secret = settings.web_secret_key.get_secret_value()
    if not secret:
        secret = secrets.token_urlsafe(32)
        _log.warning(
            "KHQRPAY_WEB_SECRET_KEY is not set: sessions last only as long as this process"
        )
    templates = _templates(settings)

    @contextlib.asynccontextmanager
    async def lifespan(web: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        bus = app.event_bus()
        feed = EventFeed(app.database)
        tasks: list[asyncio.Task[None]] = []
        try:
            async with app.bakong(transport=bakong_transport) as bakong:
                web.state.khqrpay = WebContext(app, bakong, feed, templates, RateLimits(settings))
                tasks.append(asyncio.create_task(feed.run(stop, bell=bus), name="event-feed"))
                tasks += [asyncio.create_task(job(app, bakong, bus, stop)) for job in background]
                yield
                stop.set()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await bus.aclose()

    web = FastAPI(
        title="khqrpay",
        version="1",
        lifespan=lifespan,
        # The API area serves its docs page itself, from packaged assets (no CDN, no inline script).
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )
    web.mount("/static", StaticFiles(packages=[("khqrpay.web", "static")]), name="static")
    _add_shared_routes(web)
    for area in _areas():
        web.include_router(area)
    _document_the_api_only(web)
    _add_error_handlers(web, templates)
    # Innermost first: the session, CSRF, the language, the size limit, the headers.
    web.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=round(settings.web_customer_session_days * 86_400),
        same_site="lax",
        https_only=settings.web_secure_cookies,
    )
    web.add_middleware(
        asgi_csrf,
        signing_secret=secret,
        cookie_name=CSRF_COOKIE,
        cookie_secure=settings.web_secure_cookies,
        cookie_samesite="Strict",
        skip_if_scope=_is_api,
        send_csrf_failed=_csrf_failed,
    )
    web.add_middleware(RequestLanguage)
    web.add_middleware(BodyLimit, max_bytes=settings.web_max_body_bytes)
    web.add_middleware(SecurityHeaders, hsts=settings.web_secure_cookies)
    return web


def end_live_streams() -> None:
    """End every open event stream of this process (they close within half a second), for a
    server stopping in a thread: sse-starlette learns of a shutdown from uvicorn's signal
    handler, which a server off the main thread does not install. Process-wide and final."""
    AppStatus.should_exit = True


def _areas() -> list[Any]:
    """The routers of the shop, the staff console and the API."""
    from khqrpay.web.admin.endpoints import router as admin
    from khqrpay.web.api.endpoints import router as api
    from khqrpay.web.shop.endpoints import router as shop

    return [shop, admin, api]


def _document_the_api_only(web: FastAPI) -> None:
    """The OpenAPI document describes `/api/v1` (checked in as docs/openapi.json), not pages."""
    from khqrpay.web.api.openapi import api_document

    web.openapi = api_document  # type: ignore[method-assign]


def _templates(settings: Settings) -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("khqrpay.web", "templates"),
        autoescape=True,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_callables(  # type: ignore[attr-defined]
        i18n._, i18n.ngettext, newstyle=True
    )
    env.globals |= {
        "csrf_token": _template_csrf_token,
        "current_language": i18n.current_language,
        "languages": i18n.LANGUAGES,
        "settings": settings,
    }
    env.filters |= {
        "money": i18n.money,
        "local_time": i18n.local_time,
        "local_name": i18n.local_name,
    }
    return Jinja2Templates(env=env)


@jinja2.pass_context
def _template_csrf_token(template: jinja2.runtime.Context, request: Request | None = None) -> str:
    """`{{ csrf_token() }}` in a template: the token of the request it renders."""
    return csrf_token(request or template["request"])


def _add_shared_routes(web: FastAPI) -> None:
    @web.get("/fonts/{name}", include_in_schema=False)
    def font(name: str) -> FileResponse:
        path = FONTS.get(name)
        if path is None:
            raise StarletteHTTPException(404)
        return FileResponse(path, media_type="font/ttf", headers={"cache-control": ASSET_CACHE})

    @web.get("/language/{code}", include_in_schema=False)
    def choose_language(code: str, request: Request, back: str = "/") -> Response:
        """Remember the reader's language (a cookie) and go back to the page they were on."""
        if code not in i18n.LANGUAGES:
            raise StarletteHTTPException(404)
        # Only a path of this site: never an open redirect.
        target = back if back.startswith("/") and not back.startswith("//") else "/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            i18n.LANGUAGE_COOKIE,
            code,
            max_age=365 * 86_400,
            samesite="lax",
            secure=request.app.state.khqrpay.app.settings.web_secure_cookies,
        )
        return response

    @web.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}


def _is_api(scope: Scope) -> bool:
    path: str = scope.get("path", "")
    return path.startswith(API_PREFIX)


async def _csrf_failed(scope: Scope, send: Send, message_id: Any) -> None:
    del scope, message_id
    body = (
        b"<!doctype html><meta charset=utf-8><title>Form expired</title>"
        b"<p>This form has expired. Go back, reload the page and try again.</p>"
    )
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"text/html; charset=utf-8")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def api_error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """The API's error shape: a stable `code` and a message for people."""
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "rate_limited",
}


def _add_error_handlers(web: FastAPI, templates: Jinja2Templates) -> None:
    def respond(request: Request, status: int, message: str, code: str | None = None) -> Response:
        if request.url.path.startswith(API_PREFIX):
            return api_error(status, code or _HTTP_CODES.get(status, "error"), message)
        return templates.TemplateResponse(
            request, "error.html", {"status": status, "message": message}, status_code=status
        )

    @web.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = respond(request, exc.status_code, str(exc.detail))
        # What the status needs kept: a redirect's Location, a 429's Retry-After, a 405's Allow,
        # a 401's WWW-Authenticate.
        response.headers.update(exc.headers or {})
        return response

    @web.exception_handler(RateLimited)
    async def rate_limited(request: Request, exc: RateLimited) -> Response:
        message = i18n._("Too many requests. Please wait a moment and try again.")
        response = respond(request, 429, message, "rate_limited")
        response.headers["retry-after"] = str(exc.retry_after_s)
        return response

    @web.exception_handler(RequestValidationError)
    async def invalid_input(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid input"}
        field = ".".join(str(part) for part in first["loc"] if part not in ("body", "query"))
        message = f"{field}: {first['msg']}" if field else str(first["msg"])
        if request.url.path.startswith(API_PREFIX):
            return api_error(422, "invalid_input", message, field=field or None)
        return respond(request, 422, message)

    @web.exception_handler(OrderNotFound)
    async def not_found(request: Request, exc: OrderNotFound) -> Response:
        del exc  # its text may name what was asked for; say only that it is not there
        return respond(request, 404, i18n._("Not found"), "not_found")

    @web.exception_handler(OrderError)
    async def refused(request: Request, exc: OrderError) -> Response:
        # An endpoint that knows better (a state conflict: 409) catches it itself.
        return respond(request, 400, str(exc), "refused")
