"""`khqrpay apikey ...`: the keys other shops' software uses to call the JSON API."""

from __future__ import annotations

from typing import Annotated

import typer

from khqrpay.cli.common import open_app, print_json
from khqrpay.services.api_clients import create_api_key, list_api_keys, revoke_api_key
from khqrpay.services.schemas import ApiKeyView, IssuedKeyView

app = typer.Typer(help="Make, list and revoke JSON API keys.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="The API client's name (e.g. pos-1).")]


@app.command()
def create(name: Name) -> None:
    """Make a key for NAME and print it once (only its hash is kept)."""
    with open_app() as app_parts:
        issued = create_api_key(app_parts.database, name, clock=app_parts.clock, actor="cli")
    print_json(IssuedKeyView(name=issued.key.client, key=issued.secret).json_dict())


@app.command("list")
def list_command() -> None:
    """Every key ever made (its first characters only), by name."""
    with open_app() as app_parts:
        keys = list_api_keys(app_parts.database)
    print_json([ApiKeyView.of(key).json_dict() for key in keys])


@app.command()
def revoke(name: Name) -> None:
    """Revoke NAME's key: its requests are refused from now on; its orders stay NAME's."""
    with open_app() as app_parts:
        key = revoke_api_key(app_parts.database, name, clock=app_parts.clock, actor="cli")
    print_json(ApiKeyView.of(key).json_dict())
