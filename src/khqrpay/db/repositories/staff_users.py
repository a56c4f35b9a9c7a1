"""Staff accounts and failed logins: `staff_users`, `staff_login_failures`."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.exc import IntegrityError

from khqrpay.accounts import Role, StaffUser
from khqrpay.db import tables as t


class DuplicateUserName(RuntimeError):
    """A staff account with that name already exists."""


class StaffUserRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @staticmethod
    def _user(row: Row[Any]) -> StaffUser:
        return StaffUser(
            id=row.id,
            name=row.name,
            role=Role(row.role),
            disabled=row.disabled,
            sessions_valid_from_ms=row.sessions_valid_from_ms,
            created_ms=row.created_ms,
            updated_ms=row.updated_ms,
            password_hash=row.password_hash,
        )

    def add(self, *, name: str, role: Role, password_hash: str, now_ms: int) -> StaffUser:
        statement = (
            t.staff_users.insert()
            .values(
                name=name,
                role=role.value,
                password_hash=password_hash,
                disabled=False,
                sessions_valid_from_ms=now_ms,
                created_ms=now_ms,
                updated_ms=now_ms,
            )
            .returning(t.staff_users)
        )
        try:
            with self._connection.begin_nested():
                return self._user(self._connection.execute(statement).one())
        except IntegrityError as exc:
            if self.by_name(name) is not None:
                raise DuplicateUserName(name) from exc
            raise

    def get(self, user_id: int) -> StaffUser | None:
        return self._one(t.staff_users.c.id == user_id)

    def by_name(self, name: str) -> StaffUser | None:
        return self._one(t.staff_users.c.name == name)

    def _one(self, condition: sa.ColumnElement[bool]) -> StaffUser | None:
        row = self._connection.execute(sa.select(t.staff_users).where(condition)).one_or_none()
        return None if row is None else self._user(row)

    def list_all(self) -> list[StaffUser]:
        rows = self._connection.execute(sa.select(t.staff_users).order_by(t.staff_users.c.name))
        return [self._user(row) for row in rows]

    def lock(self, name: str) -> StaffUser | None:
        """The account, locked until the transaction ends (`FOR UPDATE` on PostgreSQL)."""
        row = self._connection.execute(
            sa.select(t.staff_users).where(t.staff_users.c.name == name).with_for_update()
        ).one_or_none()
        return None if row is None else self._user(row)

    def active_owner_ids(self) -> list[int]:
        users = t.staff_users.c
        return list(
            self._connection.execute(
                sa.select(users.id).where(
                    users.role == Role.OWNER.value, users.disabled.is_(sa.false())
                )
            ).scalars()
        )

    def update(self, user_id: int, *, now_ms: int, **columns: object) -> StaffUser:
        """Set `columns` (password_hash, disabled, role, sessions_valid_from_ms)."""
        row = self._connection.execute(
            t.staff_users.update()
            .where(t.staff_users.c.id == user_id)
            .values(updated_ms=now_ms, **columns)
            .returning(t.staff_users)
        ).one()
        return self._user(row)


class LoginFailureRepository:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def add(self, *, user_name: str, address: str, at_ms: int) -> None:
        self._connection.execute(
            t.staff_login_failures.insert().values(
                user_name=user_name[:64], address=address[:64], at_ms=at_ms
            )
        )

    def times(self, *, user_name: str, address: str, since_ms: int) -> tuple[list[int], list[int]]:
        """When logins failed since `since_ms`: for this user name, and from this address."""
        failures = t.staff_login_failures.c

        def times_where(condition: sa.ColumnElement[bool]) -> list[int]:
            query = sa.select(failures.at_ms).where(condition, failures.at_ms >= since_ms)
            return list(self._connection.execute(query).scalars())

        return (
            times_where(failures.user_name == user_name[:64]),
            times_where(failures.address == address[:64]),
        )

    def forget_name(self, user_name: str) -> None:
        """Delete the failures of one user name (they just logged in)."""
        self._connection.execute(
            t.staff_login_failures.delete().where(
                t.staff_login_failures.c.user_name == user_name[:64]
            )
        )

    def prune(self, *, up_to_ms: int) -> None:
        """Delete the failures at or before `up_to_ms` (too old to count any more)."""
        self._connection.execute(
            t.staff_login_failures.delete().where(t.staff_login_failures.c.at_ms <= up_to_ms)
        )
