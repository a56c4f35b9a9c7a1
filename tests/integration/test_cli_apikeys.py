"""`khqrpay apikey create|list|revoke`: a key is printed once and stored only as its hash; one
active key per client; refusals are `error: ...` and exit 2."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from test_cli_orders import Cli

from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.orders.api_clients import hash_api_key
from khqrpay.services.api_clients import authenticate

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


def test_a_key_is_shown_once_and_stored_only_as_its_hash(cli: Cli, database: Database) -> None:
    made = cli.ok("apikey", "create", "pos-1")
    assert made["name"] == "pos-1"
    assert made["key"].startswith("khqr_")
    assert len(made["key"]) > 40
    with database.read() as uow:
        stored = uow.connection.execute(sa.select(t.api_keys)).one()
    assert stored.key_hash == hash_api_key(made["key"])
    assert made["key"] not in {str(value) for value in stored}
    assert authenticate(database, made["key"]).client == "pos-1"  # type: ignore[union-attr]
    (listed,) = cli.ok("apikey", "list")
    assert listed["name"] == "pos-1"
    assert listed["active"] is True
    assert listed["key"] == made["key"][:12] + "…"


def test_revoking_ends_a_key_and_the_client_may_get_a_new_one(cli: Cli, database: Database) -> None:
    first = cli.ok("apikey", "create", "pos-1")["key"]
    assert "error: API client pos-1 already has an active key" in cli.error(
        "apikey", "create", "pos-1"
    )
    revoked = cli.ok("apikey", "revoke", "pos-1")
    assert revoked["active"] is False
    assert revoked["revoked_at"] is not None
    assert authenticate(database, first) is None
    second = cli.ok("apikey", "create", "pos-1")["key"]
    assert authenticate(database, second) is not None
    assert [key["active"] for key in cli.ok("apikey", "list")] == [False, True]
    with database.read() as uow:
        actions = uow.connection.execute(sa.select(t.audit_log.c.action)).scalars().all()
    assert sorted(actions) == ["api_key_created", "api_key_created", "api_key_revoked"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("apikey", "revoke", "pos-9"), "error: API client pos-9 has no active key"),
        (("apikey", "create", "no spaces"), "error: an API client name is 1-48 characters"),
        (("apikey", "create", "x" * 49), "error: an API client name is 1-48 characters"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(
    cli: Cli, args: tuple[str, ...], message: str
) -> None:
    assert message in cli.error(*args)
