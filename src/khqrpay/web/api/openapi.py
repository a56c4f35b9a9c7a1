"""The JSON API's OpenAPI document: only `/api/v1`, with what a client needs to know up front.

The document is checked in (`docs/openapi.json`) and a test fails when it drifts from the code;
write it again with `python -m khqrpay.web.api.openapi docs/openapi.json`.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from fastapi.openapi.utils import get_openapi

TITLE = "khqrpay API"
VERSION = "1"
DESCRIPTION = """\
Take KHQR (Bakong) payments from your own software: make an order, show its KHQR (or send the
customer to its payment page), and learn when it is paid. khqrpay checks Bakong for you and
completes the order the moment the money arrives, whenever the customer pays.

**Keys.** Every request sends `Authorization: Bearer KEY`. A shop's staff make a key with
`khqrpay apikey create NAME` (shown once) and revoke it with `khqrpay apikey revoke NAME`. A key
sees only the orders its client made: any other order answers 404, like one that does not exist.

**Orders.** `POST /api/v1/orders` with `lines` (the shop's products; stock is checked now and
taken when the order is paid) or with an `amount`, its `currency` and your `reference` (you keep
your own stock). Send an `Idempotency-Key` header to retry safely: the same key and body give the
same order (200), the same key with another body is refused (409).

**Amounts** are strings with the currency's decimals (`"1.50"` USD, `"4000"` KHR), never numbers.
**Times** are ISO 8601 in UTC with milliseconds.

**Errors** are `{"error": {"code", "message", "field"}}` with a stable `code`: `invalid_input`
(422, `field` names the input), `unknown_sku` (422), `not_for_sale`, `insufficient_stock`,
`idempotency_key_reused` (409), `unauthorized` (401), `not_found` (404),
`rate_limited` (429, with `Retry-After`).

**Events.** `GET /api/v1/orders/{id}/events` is a Server-Sent Events stream of the order's
events; each has an `id`: reconnect with `Last-Event-ID` and nothing is missed.
"""


@cache
def api_document() -> dict[str, Any]:
    """The OpenAPI document of the routes under `/api/v1` (no database or settings needed)."""
    from khqrpay.web.api.endpoints import v1

    return get_openapi(title=TITLE, version=VERSION, description=DESCRIPTION, routes=v1.routes)


def rendered(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(rendered(api_document()), encoding="utf-8")
