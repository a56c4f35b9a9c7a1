"""Staff accounts on both databases: unique names, the last owner kept, every change audited,
failed logins counted per name and address and forgotten when they no longer count."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from helpers.console import fast_password_hashing
from khqrpay.accounts import AccountError, LoginThrottle, Role
from khqrpay.clock import FakeClock
from khqrpay.db import Database
from khqrpay.db import tables as t
from khqrpay.services import accounts
from khqrpay.services.accounts import (
    LoginRefused,
    LoginThrottled,
    create_user,
    log_in,
    set_disabled,
    signed_in_user,
)

MINUTE_MS = 60_000


@pytest.fixture(autouse=True)
def _fast_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_password_hashing(monkeypatch)


def owner(database: Database, clock: FakeClock, name: str = "olivia") -> None:
    create_user(
        database, name=name, role=Role.OWNER, password="owner secret 1", clock=clock, actor="cli"
    )


def failures(database: Database) -> int:
    with database.read() as uow:
        rows = uow.connection.execute(t.staff_login_failures.select()).all()
    return len(rows)


def test_names_are_unique_whatever_their_case(database: Database, clock: FakeClock) -> None:
    owner(database, clock)
    with pytest.raises(AccountError, match="already an account named olivia"):
        owner(database, clock, name="OLIVIA")


def test_the_last_enabled_owner_cannot_be_disabled(database: Database, clock: FakeClock) -> None:
    owner(database, clock)
    with pytest.raises(AccountError, match="only owner left"):
        set_disabled(database, "olivia", disabled=True, clock=clock, actor="cli")
    owner(database, clock, name="bopha")
    assert set_disabled(database, "olivia", disabled=True, clock=clock, actor="cli").disabled
    with database.read() as uow:
        entries = uow.audit.latest(["staff_user_created", "staff_user_disabled"], limit=10)
    actions = [entry.action for entry in entries]
    assert actions == ["staff_user_disabled", "staff_user_created", "staff_user_created"]


def test_failed_logins_count_until_the_window_passes(database: Database, clock: FakeClock) -> None:
    owner(database, clock)
    throttle = LoginThrottle(per_name=2, per_address=3, window_ms=10 * MINUTE_MS)

    def attempt(name: str, password: str, address: str = "10.0.0.1") -> None:
        log_in(
            database, name=name, password=password, address=address, clock=clock, throttle=throttle
        )

    for _ in range(2):
        with pytest.raises(LoginRefused):
            attempt("olivia", "wrong")
    with pytest.raises(LoginThrottled):
        attempt("olivia", "owner secret 1")
    with pytest.raises(LoginRefused):
        attempt("nobody", "wrong")  # a third failure from the address
    with pytest.raises(LoginThrottled):
        attempt("other", "wrong")
    clock.advance(ms=10 * MINUTE_MS)
    attempt("olivia", "owner secret 1")
    assert failures(database) == 0  # the old ones pruned, olivia's forgotten


def test_a_hash_made_with_older_parameters_is_redone_at_login(
    database: Database, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner(database, clock)
    with database.read() as uow:
        before = uow.staff_users.by_name("olivia")
    assert before is not None
    # The parameters change (a stronger hasher than the cheapest the fixture set).
    monkeypatch.setattr(
        accounts, "HASHER", PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    )
    user = log_in(database, name="olivia", password="owner secret 1", address="a", clock=clock)
    with database.read() as uow:
        after = uow.staff_users.by_name("olivia")
    assert after is not None
    assert after.password_hash != before.password_hash
    assert not accounts.HASHER.check_needs_rehash(after.password_hash)
    assert signed_in_user(database, user.id, signed_in_ms=clock.now_ms()) is not None
