"""`khqrpay webhooks ...`: endpoints that hear of orders, and the log of what was sent to them."""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli.common import fail, open_app, print_json
from khqrpay.orders.notices import DeliveryStatus, parse_event_types
from khqrpay.services.schemas import WebhookDeliveryView, WebhookEndpointView
from khqrpay.services.webhooks import (
    MAX_LISTED,
    add_endpoint,
    list_deliveries,
    list_endpoints,
    remove_endpoint,
    replay_delivery,
)

app = typer.Typer(
    help="Signed webhooks (Standard Webhooks) to other software: add, list, remove, the "
    "delivery log, replay.",
    no_args_is_help=True,
)
EndpointId = Annotated[int, typer.Argument(min=1, help="The endpoint's id.")]


@app.command()
def add(
    url: Annotated[str, typer.Argument(help="Where to POST the events (http or https).")],
    events: Annotated[
        str,
        typer.Option(
            help="Comma-separated: order.created, order.completed, order.needs_review, "
            "order.expired, order.cancelled, order.refund_flagged."
        ),
    ],
    allow_private: Annotated[
        bool,
        typer.Option(
            "--allow-private",
            help="Allow loopback, private and link-local addresses (a receiver on this "
            "machine or the shop's network).",
        ),
    ] = False,
) -> None:
    """Add an endpoint; prints its signing secret, which is shown this once."""
    try:
        event_types = parse_event_types(events)
    except ValueError as exc:
        fail(str(exc))
    with open_app() as app:
        endpoint = add_endpoint(
            app.database,
            url=url,
            event_types=event_types,
            allow_private=allow_private,
            clock=app.clock,
        )
    print_json(WebhookEndpointView.of(endpoint).json_dict() | {"secret": endpoint.secret.reveal()})


@app.command("list")
def list_command(
    all_endpoints: Annotated[bool, typer.Option("--all", help="Removed endpoints too.")] = False,
) -> None:
    """The endpoints (never their secrets)."""
    with open_app() as app:
        endpoints = list_endpoints(app.database, include_removed=all_endpoints)
    print_json([WebhookEndpointView.of(endpoint).json_dict() for endpoint in endpoints])


@app.command()
def remove(endpoint_id: EndpointId) -> None:
    """Stop delivering to an endpoint (its pending deliveries are given up; its log stays)."""
    with open_app() as app:
        endpoint = remove_endpoint(app.database, endpoint_id, clock=app.clock)
    print_json(WebhookEndpointView.of(endpoint).json_dict())


@app.command()
def deliveries(
    endpoint: Annotated[
        int | None, typer.Option(min=1, help="Only this endpoint's deliveries.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help="Only PENDING, DELIVERED or DEAD deliveries.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LISTED, help="How many, newest first.")] = 50,
) -> None:
    """The delivery log, newest first: each delivery's status and every try (code, time)."""
    wanted = None
    if status is not None:
        try:
            wanted = DeliveryStatus(status.strip().upper())
        except ValueError:
            fail(f"unknown status {status!r}: use PENDING, DELIVERED or DEAD")
    with open_app() as app:
        found = list_deliveries(app.database, endpoint_id=endpoint, status=wanted, limit=limit)
    print_json([WebhookDeliveryView.of(delivery).json_dict() for delivery in found])


@app.command()
def replay(
    delivery_id: Annotated[int, typer.Argument(min=1, help="The delivery's id.")],
) -> None:
    """Send a delivery again from now (same webhook-id and body, a new retry window)."""
    with open_app() as app:
        delivery = replay_delivery(app.database, delivery_id, clock=app.clock)
    print_json(WebhookDeliveryView.of(delivery).json_dict())
