"""What an endpoint may use: the app's parts from the composition root, the Bakong services, the
event feed, the templates and the rate limits. Endpoints get it with `Depends(web_context)` and
call services."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from khqrpay.bootstrap import App, BakongServices
from khqrpay.services.customers import watch
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

    def watch(self, order_id: int) -> None:
        """Someone is looking at this order (its page, or a till asking through the API): while
        it is pending its codes are checked every watched interval for the hot window."""
        watch(self.app.database, order_id, policy=self.app.policy, clock=self.app.clock)

    async def keep_watching(self, order_id: int) -> None:
        """Watched now and for as long as this runs (an open event stream); cancel to stop.
        Renewed every third of the hot window: a watch with more than half of it left is not
        rewritten, so every other renewal writes, always with a third of the window to spare."""
        interval_s = max(30.0, self.app.settings.schedule_hot_window_s / 3)
        while True:
            await asyncio.to_thread(self.watch, order_id)
            await asyncio.sleep(interval_s)


def web_context(request: Request) -> WebContext:
    context: WebContext = request.app.state.khqrpay
    return context


def csrf_token(request: Request) -> str:
    """The token a form sends back (`asgi-csrf` sets its cookie on first use)."""
    token: str = request.scope["csrftoken"]()
    return token
