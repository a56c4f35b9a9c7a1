"""Staff accounts: who may use the staff console, with which role, and when a login is throttled.
Pure: no I/O, no clock (time is an argument), no password hashing (a service does that).

Two roles: `staff` see orders and use the three buttons (Verify Instantly, Check Payment Status,
Mark as Paid); the `owner` may also change products and stock, cancel orders, decide reviews and
refunds, and manage the accounts.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field


class AccountError(ValueError):
    """An account input or request refused; the message says why, for people."""


class Role(enum.StrEnum):
    OWNER = "owner"
    STAFF = "staff"


USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,31}$")
MIN_PASSWORD_LENGTH = 10
# argon2 takes any length; the bound only keeps a request from making us hash megabytes.
MAX_PASSWORD_LENGTH = 256


def validate_user_name(name: str) -> str:
    """A user name as stored: lower case, 2 to 32 letters, digits, '.', '_' or '-', starting with
    a letter or digit (it becomes the audit trail's `staff:<name>`)."""
    cleaned = name.strip().lower()
    if not USER_NAME.match(cleaned):
        raise AccountError(
            "a user name is 2 to 32 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return cleaned


def validate_new_password(password: str, *, user_name: str) -> str:
    """A password good enough to set: 10 to 256 characters, not the user name, not one character
    repeated."""
    if not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_LENGTH:
        raise AccountError(
            f"a password is {MIN_PASSWORD_LENGTH} to {MAX_PASSWORD_LENGTH} characters long"
        )
    if password.strip().lower() == user_name.lower() or len(set(password)) == 1:
        raise AccountError("that password is too easy to guess: choose another")
    return password


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError:
        raise AccountError(f"a role is one of {', '.join(Role)}, not {text!r}") from None


@dataclass(frozen=True, slots=True)
class StaffUser:
    id: int
    name: str
    role: Role
    disabled: bool
    # Sessions started before this are no longer valid (a new password ends the old sessions).
    sessions_valid_from_ms: int
    created_ms: int
    updated_ms: int
    password_hash: str = field(repr=False)

    @property
    def actor(self) -> str:
        """Who did something, as the audit trail names them."""
        return f"staff:{self.name}"

    @property
    def is_owner(self) -> bool:
        return self.role is Role.OWNER


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """At most `per_name` failed logins for one user name, and `per_address` from one client
    address, within `window_ms`; beyond that, logins are refused until the oldest failure leaves
    the window. The address limit is higher: several staff may share one shop's address."""

    per_name: int = 5
    per_address: int = 20
    window_ms: int = 15 * 60 * 1000

    def retry_after_ms(
        self, *, name_failures: Sequence[int], address_failures: Sequence[int], now_ms: int
    ) -> int:
        """How long until a login may be tried (0: now), given the times of recent failures."""
        return max(
            self._wait_ms(name_failures, self.per_name, now_ms),
            self._wait_ms(address_failures, self.per_address, now_ms),
        )

    def _wait_ms(self, failures: Sequence[int], limit: int, now_ms: int) -> int:
        recent = sorted(at for at in failures if now_ms - at < self.window_ms)
        if len(recent) < limit:
            return 0
        # The failure that must leave the window before one more attempt is allowed.
        blocking = recent[len(recent) - limit]
        return blocking + self.window_ms - now_ms
