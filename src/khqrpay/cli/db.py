"""`khqrpay db ...`: create and upgrade the database."""

from __future__ import annotations

import typer

from khqrpay.cli.common import open_database, print_json
from khqrpay.db import migrate, redacted

app = typer.Typer(help="Create and upgrade the database.", no_args_is_help=True)


@app.command()
def upgrade() -> None:
    """Create the tables or bring them to the latest schema (safe to run again)."""
    with open_database(migrated=False) as (database, _settings):
        migrate.upgrade(database)
        print_json(
            {
                "database": redacted(database.engine.url),
                "revision": migrate.current_revision(database),
            }
        )
