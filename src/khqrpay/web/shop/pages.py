"""What every shop page shares: rendering with the cart count and the one-time notice, answers
that a script (fetch) or a plain form can read, and the order a token names."""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from khqrpay.web.context import WebContext
from khqrpay.web.shop import session

# Order pages hold a customer's order: never kept by a shared cache, never indexed.
PRIVATE_HEADERS = {"cache-control": "no-store", "x-robots-tag": "noindex"}


def render(
    context: WebContext,
    request: Request,
    name: str,
    data: dict[str, Any],
    *,
    status_code: int = 200,
    fragment: bool = False,
) -> Response:
    """A shop page (`templates/shop/<name>`), with what its layout needs. A `fragment` (a part
    a script redraws) leaves the one-time notice for the next whole page."""
    quantities = session.cart(request)
    shared = {
        "cart_count": sum(quantities.values()),
        "notice": None if fragment else session.take_notice(request),
        "page": name.removesuffix(".html"),
        "tile_color": tile_color,
    }
    response = context.page(request, f"shop/{name}", shared | data, status_code=status_code)
    response.headers.update(PRIVATE_HEADERS)
    return response


TILE_COLORS = 6


def tile_color(sku: str) -> int:
    """A product's tile colour, the same on every page and every day."""
    return zlib.crc32(sku.encode("utf-8")) % TILE_COLORS


def wants_json(request: Request) -> bool:
    """A script sent the form (fetch, `Accept: application/json`), not the browser itself."""
    return "application/json" in request.headers.get("accept", "")


def answer(
    request: Request,
    *,
    back: str,
    kind: str,
    message: str,
    data: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """To a script: JSON with the message; to a plain form: the message on the page it goes
    back to (post, redirect, get)."""
    if wants_json(request):
        body: dict[str, Any] = {"kind": kind, "message": message, **(data or {})}
        if status_code >= 400:  # the shape app.js's `send` reads an error from
            body = {"error": {"code": kind, "message": message}}
        return JSONResponse(body, status_code=status_code, headers=PRIVATE_HEADERS)
    session.notify(request, kind, message)
    return RedirectResponse(back, status_code=303)


def local_path(candidate: str | None, default: str) -> str:
    """A path of this site to go back to, never another site (no open redirect)."""
    if candidate and candidate.startswith("/") and not candidate.startswith("//"):
        return candidate
    return default
