"""`khqrpay db ...`: create and upgrade the database."""

from __future__ import annotations

import typer

from khqrpay.cli.common import open_app, print_json
from khqrpay.services.maintenance import upgrade_database

app = typer.Typer(help="Create and upgrade the database.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Create the tables or bring them to the latest schema (safe to run again)."""
    with open_app(migrated=False) as app:
        state = upgrade_database(app.database)
    print_json({"database": state.database, "revision": state.revision})
