"""The database adapter: tables, engine, units of work, repositories and migrations.

The repositories' names are imported on first use (see `khqrpay.db.repositories`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from khqrpay.db.engine import Database, DatabaseError, create_engine, redacted
from khqrpay.db.uow import UnitOfWork
from khqrpay.lazy import on_first_use

if TYPE_CHECKING:
    from khqrpay.db.repositories import (
        ActiveKeyExists,
        CheckRound,
        DuplicateHash,
        DuplicateSku,
        DuplicateUserName,
        NewEvidence,
        OrderQuery,
        OrderSearch,
    )

__all__ = [
    "ActiveKeyExists",
    "CheckRound",
    "Database",
    "DatabaseError",
    "DuplicateHash",
    "DuplicateSku",
    "DuplicateUserName",
    "NewEvidence",
    "OrderQuery",
    "OrderSearch",
    "UnitOfWork",
    "create_engine",
    "redacted",
]


# The repositories' names of `__all__`; the others are defined above.
__getattr__ = on_first_use(
    __name__, {name: "repositories" for name in __all__ if name not in globals()}
)
