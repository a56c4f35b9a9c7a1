"""Live regions: a part of a page re-rendered on the server whenever the outbox says something
changed, sent over Server-Sent Events as `{"html": ...}` (the page's script swaps it in).

One address serves both ways: a stream for `Accept: text/event-stream` (EventSource), else one
JSON snapshot (the script's polling fallback). On (re)connecting the stream first sends the region
as it is now, so nothing changed while it was away is missed; each event's id is the outbox id.
A burst of events is rendered once. The stream ends when the staff session would expire (its
requests do not keep the session alive), so a page left open then finds itself signed out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse

from khqrpay.web.admin.access import session_deadline_ms
from khqrpay.web.context import WebContext

# Events closer together than this are rendered once.
COALESCE_S = 0.25
KEEPALIVE_S = 15
Render = Callable[[], str]


async def live_region(
    request: Request,
    context: WebContext,
    render: Render,
    *,
    order_id: int | None = None,
    refresh_s: float | None = None,
) -> Response:
    """The region `render` draws (it reads the database: it runs in a thread), live. Only
    `order_id`'s events when given; re-rendered every `refresh_s` anyway when given (figures that
    change with time alone)."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        html = await asyncio.to_thread(render)
        return JSONResponse({"html": html}, headers={"cache-control": "no-store"})
    deadline_ms = session_deadline_ms(request)
    now_ms = context.app.clock.now_ms

    async def events() -> AsyncIterator[dict[str, str]]:
        async with context.feed.subscribe(order_id=order_id) as stream:
            changed = asyncio.Event()
            last_id = 0

            async def listen() -> None:
                nonlocal last_id
                async for event in stream:
                    last_id = event.id
                    changed.set()

            listening = asyncio.create_task(listen())
            try:
                while True:
                    html = await asyncio.to_thread(render)
                    yield {"id": str(last_id), "data": json.dumps({"html": html})}
                    left_s = (deadline_ms - now_ms()) / 1000
                    wait_s = left_s if refresh_s is None else min(left_s, refresh_s)
                    if wait_s <= 0:
                        return
                    if await _changed(changed, listening, wait_s):
                        await asyncio.sleep(COALESCE_S)
                        changed.clear()
                    elif now_ms() >= deadline_ms or listening.done():
                        return
            finally:
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)

    return EventSourceResponse(events(), ping=KEEPALIVE_S, headers={"cache-control": "no-store"})


async def _changed(changed: asyncio.Event, listening: asyncio.Task[None], wait_s: float) -> bool:
    """Whether an event came within `wait_s` (False also when the feed dropped this reader)."""
    waiting = asyncio.create_task(changed.wait())
    try:
        done, _ = await asyncio.wait(
            {waiting, listening}, timeout=wait_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        # Also when the stream is cancelled (a server shutting down): a waiter left pending is
        # destroyed with its page ("Task was destroyed but it is pending!").
        waiting.cancel()
    return waiting in done
