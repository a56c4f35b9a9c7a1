"""The database adapter: tables, engine, units of work, repositories and migrations.

The repositories' names are imported on first use (see `khqrpay.db.repositories`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from khqrpay.db import repositories
from khqrpay.db.engine import Database, DatabaseError, create_engine, redacted
from khqrpay.db.uow import UnitOfWork

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


def __getattr__(name: str) -> Any:
    # Called only for names not defined above: the repositories' ones.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(repositories, name)
