"""What an endpoint may use: the app's parts from the composition root, the Bakong services, the
event feed, the templates and the rate limits. Endpoints get it with `Depends(web_context)` and
call services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from khqrpay.bootstrap import App, BakongServices
from khqrpay.web.feed import EventFeed
from khqrpay.web.ratelimit import RateLimits


@dataclass(frozen=True, slots=True)
class WebContext:
    app: App
    bakong: BakongServices
    feed: EventFeed
    templates: Jinja2Templates
    limits: RateLimits

    def page(
        self, request: Request, name: str, context: dict[str, Any], *, status_code: int = 200
    ) -> Response:
        """A server-rendered page; templates get `csrf_token()` and the request's language."""
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)


def web_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.khqrpay
    return context


def csrf_token(request: Request) -> str:
    """The token a form sends back (`asgi-csrf` sets its cookie on first use)."""
    token: str = request.scope["csrftoken"]()
    return token
