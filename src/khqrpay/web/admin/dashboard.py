"""The dashboard ("Monitor pending orders"): orders by status, today's takings, pending payments
by age, detection latency, Bakong's health and payments per hour, live."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from khqrpay.services.console import PENDING_AGE_BANDS, dashboard
from khqrpay.web.admin.charts import hourly_chart
from khqrpay.web.admin.live import live_region
from khqrpay.web.admin.pages import Context, Staff, fragment, page
from khqrpay.web.context import WebContext

router = APIRouter()
# Ages and Bakong's last hour change with time alone: redraw at least this often.
REFRESH_S = 20.0


def _figures(context: WebContext) -> dict[str, Any]:
    app = context.app
    figures = dashboard(
        app.database,
        bakong=context.bakong.client,
        clock=app.clock,
        token_warn_days=app.settings.bakong_token_warn_days,
        budget=app.settings.call_budget(),
    )
    return {
        "figures": figures,
        "age_bands": [name for name, _ in PENDING_AGE_BANDS],
        "chart": hourly_chart(figures.payments_per_hour),
    }


@router.get("/admin")
async def dashboard_page(request: Request, context: Context, user: Staff) -> Response:
    values = await asyncio.to_thread(_figures, context)
    return page(request, "dashboard.html", user, values, section="dashboard")


@router.get("/admin/dashboard/live")
async def dashboard_live(request: Request, context: Context, user: Staff) -> Response:
    return await live_region(
        request,
        context,
        lambda: fragment(request, "_dashboard.html", {**_figures(context), "user": user}),
        refresh_s=REFRESH_S,
    )
