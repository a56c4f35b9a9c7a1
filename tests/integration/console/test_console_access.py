"""Who may use which console route, proven on every route the app has: a route added without a
guard, or given to staff without saying so here, fails these tests."""

from __future__ import annotations

import re

import pytest
from fastapi import routing
from fastapi.routing import APIRoute

from helpers.console import Console
from khqrpay.orders.notices import WebhookEventType
from khqrpay.services.webhooks import add_endpoint, list_deliveries

# Routes anyone may use.
PUBLIC = {("GET", "/admin/login"), ("POST", "/admin/login"), ("POST", "/admin/logout")}
# Routes staff may use (orders: see them and the three buttons); every other /admin route is the
# owner's alone.
STAFF = {
    ("GET", "/admin"),
    ("GET", "/admin/dashboard/live"),
    ("GET", "/admin/orders"),
    ("GET", "/admin/orders/live"),
    ("GET", "/admin/orders.csv"),
    ("GET", "/admin/orders/{order_id}"),
    ("GET", "/admin/orders/{order_id}/live"),
    ("GET", "/admin/orders/{order_id}/qrs/{payment_id}.svg"),
    ("POST", "/admin/orders/{order_id}/verify"),
    ("POST", "/admin/orders/{order_id}/check"),
    ("POST", "/admin/orders/{order_id}/mark-paid"),
}
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def admin_routes(console: Console) -> list[tuple[str, str]]:
    """Every (method, path) of the app under /admin, routers included in routers too."""
    app = console.client.app
    # FastAPI (0.16x) keeps included routers as they are; older ones copy their routes.
    contexts = (
        routing.iter_route_contexts(app.routes)  # type: ignore[attr-defined]
        if hasattr(routing, "iter_route_contexts")
        else app.routes  # type: ignore[attr-defined]
    )
    routes = []
    for route in contexts:
        path = route.path or ""
        if path != "/admin" and not path.startswith("/admin/"):
            continue
        original = getattr(route, "original_route", route)
        assert isinstance(original, APIRoute), f"{path} is not an endpoint the guards can cover"
        routes += [(method, path) for method in sorted(set(route.methods or ()) - {"HEAD"})]
    return routes


def concrete(console: Console, path: str) -> str:
    """The path with real values in it: an order with a QR, a product, an account, a webhook
    endpoint and a delivery to it."""
    endpoint = add_endpoint(
        console.app.database,
        url="http://127.0.0.1:9/hooks",
        event_types=[WebhookEventType.ORDER_CREATED],
        allow_private=True,
        clock=console.clock,
    )
    product = console.product()
    created = console.order((product, 1))
    (delivery,) = list_deliveries(console.app.database, endpoint_id=endpoint.id)
    values = {
        "order_id": created.order.id,
        "payment_id": created.payment.id,
        "sku": product.sku,
        "name": "sam",
        "endpoint_id": endpoint.id,
        "delivery_id": delivery.id,
    }
    unknown = set(re.findall(r"{(\w+)}", path)) - set(values)
    assert not unknown, f"give the route walk a value for {unknown} ({path})"
    return path.format(**values)


def request(console: Console, method: str, path: str) -> int:
    if method == "GET":
        return console.page(path).status_code
    return console.post(path, reason="walk").status_code


def test_the_walk_sees_the_routes_it_names(console: Console) -> None:
    routes = set(admin_routes(console))
    assert routes >= PUBLIC | STAFF
    assert routes - PUBLIC - STAFF, "the owner has routes of their own"


def test_every_console_route_refuses_an_anonymous_visitor(console: Console) -> None:
    for method, path in admin_routes(console):
        if (method, path) in PUBLIC:
            continue
        answer = (
            console.page(concrete(console, path))
            if method == "GET"
            else console.post(concrete(console, path), reason="walk")
        )
        if method == "GET" and answer.status_code == 303:
            assert answer.headers["location"].startswith("/admin/login?next="), path
        else:
            assert answer.status_code == 401, (method, path, answer.status_code)


def test_every_owner_route_refuses_staff(console: Console) -> None:
    console.as_staff()
    for method, path in admin_routes(console):
        if (method, path) in PUBLIC | STAFF:
            continue
        status = request(console, method, concrete(console, path))
        assert status == 403, (method, path, status)


def test_staff_reach_their_pages_and_the_owner_every_page(console: Console) -> None:
    pages = [(method, path) for method, path in admin_routes(console) if method == "GET"]
    console.as_staff()
    for method, path in pages:
        if (method, path) in STAFF:
            assert request(console, method, concrete(console, path)) == 200, path
    console.client.cookies.clear()
    console.as_owner()
    for method, path in pages:
        if (method, path) not in PUBLIC:
            assert request(console, method, concrete(console, path)) == 200, path


def test_a_new_route_without_a_guard_would_fail_the_walk(console: Console) -> None:
    """The walk's own check: a route left open answers an anonymous visitor, and is caught."""
    app = console.client.app

    @app.get("/admin/forgotten")  # type: ignore[attr-defined, misc]
    def forgotten() -> dict[str, str]:
        return {"open": "yes"}

    with pytest.raises(AssertionError, match="/admin/forgotten"):
        test_every_console_route_refuses_an_anonymous_visitor(console)
