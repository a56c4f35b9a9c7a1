"""`khqrpay admin ...`: staff accounts from the command line; JSON out (never a password hash),
`error: ...` and exit 2 for anything refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.console import fast_password_hashing
from khqrpay.cli.main import app
from khqrpay.clock import SystemClock
from khqrpay.db import Database
from khqrpay.services.accounts import log_in

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Admin:
    def __init__(self, database_url: str) -> None:
        self.runner = CliRunner()
        self.env = {"KHQRPAY_DATABASE_URL": database_url}

    def run(self, *args: str, stdin: str | None = None) -> Any:
        result = self.runner.invoke(app, ["admin", *args], env=self.env, input=stdin)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def error(self, *args: str, stdin: str | None = None) -> str:
        result = self.runner.invoke(app, ["admin", *args], env=self.env, input=stdin)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.startswith("error: ")
        return result.stderr


@pytest.fixture
def admin(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Admin:
    fast_password_hashing(monkeypatch)
    return Admin(database_url)


def test_an_owner_is_created_listed_and_can_log_in(admin: Admin, database: Database) -> None:
    created = admin.run(
        "create-user", "Olivia", "--role", "owner", "--password-stdin", stdin="a long secret 1\n"
    )
    assert (created["name"], created["role"], created["disabled"]) == ("olivia", "owner", False)
    admin.run("create-user", "sam", "--role", "staff", "--password-stdin", stdin="another secret\n")
    listed = admin.run("list-users")
    assert [(user["name"], user["role"]) for user in listed] == [
        ("olivia", "owner"),
        ("sam", "staff"),
    ]
    assert all("hash" not in key for user in listed for key in user)
    user = log_in(
        database, name="OLIVIA", password="a long secret 1", address="cli", clock=SystemClock()
    )
    assert user.name == "olivia"


def test_disabling_and_enabling_an_account(admin: Admin) -> None:
    admin.run(
        "create-user", "olivia", "--role", "owner", "--password-stdin", stdin="owner secret 1\n"
    )
    admin.run("create-user", "sam", "--role", "staff", "--password-stdin", stdin="staff secret 1\n")
    assert admin.run("disable-user", "sam")["disabled"] is True
    assert admin.run("enable-user", "sam")["disabled"] is False
    assert "only owner left" in admin.error("disable-user", "olivia")
    assert "no account is named nobody" in admin.error("disable-user", "nobody")


def test_refused_accounts_say_why(admin: Admin) -> None:
    admin.run("create-user", "sam", "--role", "staff", "--password-stdin", stdin="staff secret 1\n")
    assert "already an account named sam" in admin.error(
        "create-user", "SAM", "--role", "staff", "--password-stdin", stdin="staff secret 2\n"
    )
    assert "10 to 256 characters" in admin.error(
        "create-user", "vanna", "--role", "staff", "--password-stdin", stdin="short\n"
    )
    assert "a role is one of owner, staff" in admin.error(
        "create-user", "vanna", "--role", "boss", "--password-stdin", stdin="long enough 12\n"
    )
    assert "user name" in admin.error(
        "create-user", "no spaces", "--role", "staff", "--password-stdin", stdin="long enough 12\n"
    )
    assert "use --password-stdin" in admin.error("create-user", "vanna", "--role", "staff")


def test_a_new_password_from_stdin(admin: Admin, database: Database) -> None:
    admin.run("create-user", "sam", "--role", "staff", "--password-stdin", stdin="staff secret 1\n")
    admin.run("set-password", "sam", "--password-stdin", stdin="staff secret 2\n")
    user = log_in(
        database, name="sam", password="staff secret 2", address="cli", clock=SystemClock()
    )
    assert user.name == "sam"
