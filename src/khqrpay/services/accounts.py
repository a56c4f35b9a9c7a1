"""Staff accounts: creating them, their passwords (argon2id), logging in with throttling by user
name and by client address, disabling them. Every change to an account is audited.

A password is checked outside any transaction (hashing takes a while on purpose); the throttle
is read before and the failure written after, so parallel guesses may overshoot the limit by the
few in flight, never more.
"""

from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from khqrpay.accounts import (
    AccountError,
    LoginThrottle,
    Role,
    StaffUser,
    validate_new_password,
    validate_user_name,
)
from khqrpay.clock import Clock
from khqrpay.db import Database, DuplicateUserName, UnitOfWork
from khqrpay.orders.model import validate_actor

# argon2-cffi's defaults: argon2id with RFC 9106's low-memory parameters (64 MiB, 3 passes).
# Tests swap in a cheaper one; a hash stored with other parameters is redone at the next login.
HASHER = PasswordHasher()


class LoginRefused(AccountError):
    """Wrong user name or password, or a disabled account; the message does not say which of
    the first two."""


class AccountDisabled(LoginRefused):
    """The right password for an account the owner disabled."""


class LoginThrottled(AccountError):
    """Too many failed logins lately for this user name or from this address."""

    def __init__(self, retry_after_ms: int) -> None:
        minutes = max(1, -(-retry_after_ms // 60_000))
        super().__init__(f"too many failed logins: try again in {minutes} min")
        self.retry_after_s = -(-retry_after_ms // 1000)


@cache
def decoy_hash() -> str:
    """A hash to check unknown user names against, so they take as long as known ones."""
    return HASHER.hash("a password nobody has")


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def _audit(uow: UnitOfWork, user: StaffUser, *, action: str, actor: str, now_ms: int) -> None:
    uow.audit.append(
        order_id=None,
        at_ms=now_ms,
        actor=actor,
        action=action,
        details={"user": user.name, "role": user.role.value, "disabled": user.disabled},
    )


def create_user(
    database: Database, *, name: str, role: Role, password: str, clock: Clock, actor: str
) -> StaffUser:
    """A new, enabled account; refuses a taken name or a weak password."""
    validate_actor(actor)
    cleaned = validate_user_name(name)
    password_hash = HASHER.hash(validate_new_password(password, user_name=cleaned))
    with database.write() as uow:
        now_ms = clock.now_ms()
        try:
            user = uow.staff_users.add(
                name=cleaned, role=role, password_hash=password_hash, now_ms=now_ms
            )
        except DuplicateUserName:
            raise AccountError(f"there is already an account named {cleaned}") from None
        _audit(uow, user, action="staff_user_created", actor=actor, now_ms=now_ms)
        return user


def list_users(database: Database) -> list[StaffUser]:
    with database.read() as uow:
        return uow.staff_users.list_all()


def _locked(uow: UnitOfWork, name: str) -> StaffUser:
    user = uow.staff_users.lock(validate_user_name(name))
    if user is None:
        raise AccountError(f"no account is named {name.strip().lower()}")
    return user


def set_disabled(
    database: Database, name: str, *, disabled: bool, clock: Clock, actor: str
) -> StaffUser:
    """Disable an account (its sessions end at their next request) or enable it again. The last
    enabled owner cannot be disabled: someone must be able to manage the shop. Already so:
    nothing is written."""
    validate_actor(actor)
    with database.write() as uow:
        user = _locked(uow, name)
        if user.disabled is disabled:
            return user
        if disabled and user.is_owner and uow.staff_users.active_owner_ids() == [user.id]:
            raise AccountError(f"{user.name} is the only owner left: add another owner first")
        now_ms = clock.now_ms()
        updated = uow.staff_users.update(user.id, now_ms=now_ms, disabled=disabled)
        action = "staff_user_disabled" if disabled else "staff_user_enabled"
        _audit(uow, updated, action=action, actor=actor, now_ms=now_ms)
        return updated


def set_password(
    database: Database, name: str, *, password: str, clock: Clock, actor: str
) -> StaffUser:
    """A new password; every session of the account started before it ends."""
    validate_actor(actor)
    cleaned = validate_user_name(name)
    password_hash = HASHER.hash(validate_new_password(password, user_name=cleaned))
    with database.write() as uow:
        user = _locked(uow, cleaned)
        now_ms = clock.now_ms()
        updated = uow.staff_users.update(
            user.id, now_ms=now_ms, password_hash=password_hash, sessions_valid_from_ms=now_ms
        )
        _audit(uow, updated, action="staff_password_set", actor=actor, now_ms=now_ms)
        return updated


def log_in(
    database: Database,
    *,
    name: str,
    password: str,
    address: str,
    clock: Clock,
    throttle: LoginThrottle | None = None,
) -> StaffUser:
    """The account, if the name and password are right and it is enabled. Refused
    (`LoginThrottled`) without checking the password after too many failures for the name or
    from the address; a wrong name, password or a disabled account is `LoginRefused`."""
    throttle = throttle or LoginThrottle()
    typed = name.strip().lower()[:64]
    with database.read() as uow:
        name_failures, address_failures = uow.login_failures.times(
            user_name=typed, address=address, since_ms=clock.now_ms() - throttle.window_ms
        )
        user = uow.staff_users.by_name(typed)
    wait_ms = throttle.retry_after_ms(
        name_failures=name_failures, address_failures=address_failures, now_ms=clock.now_ms()
    )
    if wait_ms > 0:
        raise LoginThrottled(wait_ms)
    matches = _password_matches(decoy_hash() if user is None else user.password_hash, password)
    accepted = user is not None and matches and not user.disabled
    # Hashed with older parameters: store it as today's parameters would.
    rehashed = (
        HASHER.hash(password)
        if accepted and user is not None and HASHER.check_needs_rehash(user.password_hash)
        else None
    )
    with database.write() as uow:
        now_ms = clock.now_ms()
        # A failure counts while younger than the window (`LoginThrottle`): older ones go.
        uow.login_failures.prune(up_to_ms=now_ms - throttle.window_ms)
        if user is None or not matches:
            uow.login_failures.add(user_name=typed, address=address, at_ms=now_ms)
        elif accepted:
            uow.login_failures.forget_name(typed)
            if rehashed is not None:
                uow.staff_users.update(user.id, now_ms=user.updated_ms, password_hash=rehashed)
    if user is None or not matches:
        raise LoginRefused("wrong user name or password")
    if user.disabled:
        raise AccountDisabled("this account is disabled: ask the owner")
    return user


def signed_in_user(database: Database, user_id: int, *, signed_in_ms: int) -> StaffUser | None:
    """The account a session signed in at `signed_in_ms` is for, while it may still be used:
    not disabled since, its password not changed since."""
    with database.read() as uow:
        user = uow.staff_users.get(user_id)
    if user is None or user.disabled or signed_in_ms < user.sessions_valid_from_ms:
        return None
    return user
